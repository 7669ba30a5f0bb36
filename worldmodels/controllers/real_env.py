"""Running V + M + C in a REAL vectorised env (evaluation, and the paper's CarRacing setup of training C there).

Per env step, for every sub-env (Ha & Schmidhuber 2018, Fig. 8 / Sec. 3.3)::

    obs_t --V--> z_t (posterior mean)      h_t = M's state before (z_t, a_t)  (zeroed at is_first)
    a_t = C([z_t, h_t])  --> env.step(a_t)
    M reads (z_t, a_t) --> h_{t+1}

``run_episodes`` plays exactly ``episodes`` episodes on a gymnasium ``VectorEnv`` with
NEXT_STEP autoreset, in waves of ``num_envs``; episode ``j`` is reset with seed
``seed + j``, so two policies run with the same ``seed`` face the same starts.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from worldmodels.controllers.linear import PopulationController
from worldmodels.models.conv import to_float_image
from worldmodels.models.mdnrnn import MDNRNN
from worldmodels.models.vae import ConvVAE

EnvPolicy = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``policy(obs (E, H, W, C) uint8, is_first (E,) bool) -> env actions (E,) or (E, A)`` (as in data/collect.py)."""


class WorldModelPolicy:
    """V + M + C acting in E envs at once; ``params (E, N)`` gives each env its own controller weights."""

    def __init__(self, vae: ConvVAE, mdnrnn: MDNRNN, controller: PopulationController, params: torch.Tensor) -> None:
        self.vae, self.mdnrnn, self.controller, self.params = vae, mdnrnn, controller, params
        self.device = params.device
        self.state = mdnrnn.initial_state(params.shape[0], self.device)  # (E, H) x2

    @torch.no_grad()
    def __call__(self, obs: np.ndarray, is_first: np.ndarray) -> np.ndarray:
        E = obs.shape[0]
        frames = torch.as_tensor(np.asarray(obs), device=self.device)  # (E, H, W, C) uint8
        z, _ = self.vae.encode(to_float_image(frames))  # (E, Z) posterior mean: lower-noise than a sample
        keep = (~torch.as_tensor(np.asarray(is_first), device=self.device)).float().unsqueeze(-1)  # (E, 1)
        h, c = self.state[0] * keep, self.state[1] * keep  # reset M where an episode starts
        features = torch.cat([z, h], dim=-1).unsqueeze(1)  # (E, 1, Z + H)
        action = self.controller(self.params, features).squeeze(1)  # (E, A) model-side
        _, self.state = self.mdnrnn.step(z, action, (h, c))
        assert action.shape[0] == E
        return self.controller.action_spec.to_env(action)


def run_episodes(vec_env, make_policy: Callable[[np.ndarray], EnvPolicy], *, episodes: int, seed: int,
                 max_steps: int | None = None) -> np.ndarray:
    """Returns ``(episodes,)`` undiscounted returns. ``make_policy(job_ids (E,))`` builds the policy for one wave.

    In the last wave, sub-envs beyond ``episodes`` replay the last job and their results are dropped.
    """
    num_envs = vec_env.num_envs
    returns = np.zeros(episodes, dtype=np.float64)
    for wave_start in range(0, episodes, num_envs):
        jobs = np.minimum(np.arange(wave_start, wave_start + num_envs), episodes - 1)  # (E,)
        policy = make_policy(jobs)
        obs, _ = vec_env.reset(seed=seed + wave_start)  # sub-env i -> seed + wave_start + i
        done = np.zeros(num_envs, dtype=bool)
        total = np.zeros(num_envs, dtype=np.float64)
        is_first = np.ones(num_envs, dtype=bool)
        steps = 0
        while not done.all() and (max_steps is None or steps < max_steps):
            actions = policy(obs, is_first)
            obs, reward, terminated, truncated, _ = vec_env.step(actions)
            total += np.where(done, 0.0, np.asarray(reward, dtype=np.float64))
            done |= np.asarray(terminated) | np.asarray(truncated)  # NEXT_STEP autoreset: later steps ignored
            is_first = np.zeros(num_envs, dtype=bool)
            steps += 1
        count = min(num_envs, episodes - wave_start)
        returns[wave_start:wave_start + count] = total[:count]
    return returns


def random_policy_factory(vec_env, seed: int) -> Callable[[np.ndarray], EnvPolicy]:
    """Uniform random actions from the vector action space, seeded once."""
    vec_env.action_space.seed(seed)
    return lambda jobs: (lambda obs, is_first: vec_env.action_space.sample())


def world_model_policy_factory(vae: ConvVAE, mdnrnn: MDNRNN, controller: PopulationController, params: torch.Tensor,
                               *, repeats: int = 1) -> Callable[[np.ndarray], EnvPolicy]:
    """Job ``j`` runs candidate ``j // repeats`` of ``params (P, N)``."""
    def make(jobs: Sequence[int]) -> EnvPolicy:
        index = torch.as_tensor(np.asarray(jobs) // repeats, device=params.device)
        return WorldModelPolicy(vae, mdnrnn, controller, params[index])
    return make


def real_fitness(vec_env, vae: ConvVAE, mdnrnn: MDNRNN, controller: PopulationController, *, repeats: int, seed: int,
                 max_steps: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """CMA-ES fitness = mean REAL return of each candidate over ``repeats`` episodes (new seeds every call)."""
    calls = [0]

    def fitness(params: torch.Tensor, repeats: int = repeats) -> torch.Tensor:
        P = params.shape[0]
        call_seed = seed + calls[0] * P * repeats
        calls[0] += 1
        returns = run_episodes(vec_env, world_model_policy_factory(vae, mdnrnn, controller, params, repeats=repeats),
                               episodes=P * repeats, seed=call_seed, max_steps=max_steps)
        return torch.as_tensor(returns.reshape(P, repeats).mean(1), dtype=torch.float32)
    return fitness
