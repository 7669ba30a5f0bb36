"""Fakes for the decision-fidelity tests: a world model and a real env whose returns are known in closed form.

Action ``a`` earns ``DREAM_VALUES[a]`` per imagined step in :class:`CounterWorldModel` and ``REAL_VALUES[a]`` per
real step in :class:`BanditEnv`, so a policy that always plays ``a`` returns ``end * DREAM_VALUES[a]`` in a dream
the model ends after ``end`` steps, and ``EPISODE_STEPS * REAL_VALUES[a]`` in the env.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from worldmodels.core import State, Trajectory, rollout
from worldmodels.envs.spaces import ActionSpec

DREAM_VALUES = (0.0, 1.0, 2.0, 3.0)
EPISODE_STEPS = 4
SIDE = 8


class CounterWorldModel:
    """State: the imagined step count ``t`` (B,); arriving at step ``t`` pays ``DREAM_VALUES[a]``.

    ``end``: the continue probability is 0 on arriving at step ``end`` (1 before), or ``cont`` everywhere when given.
    ``decode`` draws ``t`` into every pixel, so a frame policy can read where the dream is.
    """

    def __init__(self, *, end: int = 5, cont: float | None = None) -> None:
        self.obs_shape, self.action_spec = (SIDE, SIDE, 3), ActionSpec("discrete", len(DREAM_VALUES))
        self.feature_dim, self.end, self.cont = 1, end, cont
        self.calls: list[str] = []

    def initial(self, batch_size: int) -> State:
        return {"t": torch.zeros(batch_size), "action": torch.zeros(batch_size, self.action_spec.dim)}

    def observe(self, obs, action, is_first, state=None):
        B, T = obs.shape[:2]
        states = {"t": torch.zeros(B, T), "action": torch.zeros(B, T, self.action_spec.dim)}
        return states, {k: v[:, -1] for k, v in states.items()}

    def _cont(self, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(t, self.cont) if self.cont is not None else (t != self.end).float()

    def step(self, state: State, action: torch.Tensor):
        t = state["t"] + 1
        reward = (action * torch.tensor(DREAM_VALUES)).sum(-1)  # (B,) the value of the one-hot action
        return {"t": t, "action": torch.zeros_like(action)}, reward, self._cont(t)

    def imagine(self, start, policy_or_actions, horizon, *, keep_states=True) -> Trajectory:
        self.calls.append("imagine:actions" if isinstance(policy_or_actions, torch.Tensor) else "imagine:policy")
        return rollout(self, self.step, start, policy_or_actions, horizon, keep_states=keep_states)

    def feature(self, states: State) -> torch.Tensor:
        return states["t"].unsqueeze(-1)

    def decode(self, states: State) -> torch.Tensor:
        return states["t"].clamp(0, 255).to(torch.uint8).reshape(*states["t"].shape, 1, 1, 1).expand(
            *states["t"].shape, SIDE, SIDE, 3)

    def predict_reward(self, states: State) -> torch.Tensor:
        return torch.zeros_like(states["t"])

    def predict_cont(self, states: State) -> torch.Tensor:
        return self._cont(states["t"])


class ConstantHead:
    """A latent policy that always plays ``action``."""

    def __init__(self, action: int, dim: int = len(DREAM_VALUES)) -> None:
        self.action, self.dim = action, dim

    def act_latent(self, feature: torch.Tensor) -> torch.Tensor:
        return F.one_hot(torch.full((feature.shape[0],), self.action), self.dim).float()


class ConstantFramePolicy:
    """A frame policy (no latent form) that always plays ``action``; records the frames' first pixel it saw."""

    def __init__(self, action: int) -> None:
        self.action, self.action_spec, self.seen = action, ActionSpec("discrete", len(DREAM_VALUES)), []

    def initial(self, batch_size: int):
        return None

    def act(self, obs, is_first, state):
        self.seen.append(int(obs[0, 0, 0, 0]))
        return F.one_hot(torch.full((obs.shape[0],), self.action), len(DREAM_VALUES)).float(), state


class BanditEnv(gym.Env):
    """``EPISODE_STEPS`` steps of blank frames; action ``a`` pays ``values[a]``; the first frame shows the seed mod 7."""

    def __init__(self, values=(0.0, 2.0, 1.0, 3.0)) -> None:
        self.values = tuple(values)
        self.action_space = gym.spaces.Discrete(len(self.values))
        self.observation_space = gym.spaces.Box(0, 255, (SIDE, SIDE, 3), np.uint8)
        self._t, self._mark = 0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t, self._mark = 0, int(self.np_random.integers(7))
        return np.full((SIDE, SIDE, 3), self._mark, np.uint8), {}

    def step(self, action):
        self._t += 1
        return np.zeros((SIDE, SIDE, 3), np.uint8), float(self.values[int(action)]), self._t >= EPISODE_STEPS, False, {}


def bandit_factory(values=(0.0, 2.0, 1.0, 3.0)):
    """``make_env(num_envs)`` of :class:`BanditEnv` vector envs (gymnasium's NEXT_STEP autoreset)."""
    return lambda num_envs: gym.vector.SyncVectorEnv([lambda: BanditEnv(values) for _ in range(num_envs)])
