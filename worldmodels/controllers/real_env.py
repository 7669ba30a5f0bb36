"""Running V + M + C in a REAL vectorised env (evaluation, and the paper's CarRacing setup of training C there).

Per env step, for every sub-env (Ha & Schmidhuber 2018, Fig. 8 / Sec. 3.3)::

    obs_t --V--> z_t (posterior mean)      h_t = M's state before (z_t, a_t)  (zeroed at is_first)
    a_t = C([z_t, h_t])  --> env.step(a_t)
    M reads (z_t, a_t) --> h_{t+1}

That loop is :class:`~worldmodels.policies.ModelPolicy` over :class:`~worldmodels.models.vm_world_model.VMWorldModel`
with a :class:`~worldmodels.policies.ControllerHead`, played by :func:`worldmodels.evaluation.run_episodes`
(episode ``j`` resets with ``seed + j``, in waves of ``num_envs``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from worldmodels.controllers.linear import PopulationController
from worldmodels.core import Policy
from worldmodels.evaluation import run_episodes
from worldmodels.models.mdnrnn import MDNRNN
from worldmodels.models.vae import ConvVAE
from worldmodels.models.vm_world_model import VMWorldModel
from worldmodels.policies import ControllerHead, ModelPolicy


def world_model_policy_factory(vae: ConvVAE, mdnrnn: MDNRNN, controller: PopulationController, params: torch.Tensor,
                               *, repeats: int = 1) -> Callable[[np.ndarray], Policy]:
    """``make(job_ids (E,)) -> Policy`` for one wave: job ``j`` runs candidate ``j // repeats`` of ``params (P, N)``."""
    # V's posterior mean, not a sample, in the real env: the choice this evaluation always made (lower noise
    # than z ~ q(z|x); M's dreams still sample).
    world_model = VMWorldModel(vae, mdnrnn, controller.action_spec, sample_latent=False)

    def make(jobs: Sequence[int]) -> Policy:
        index = torch.as_tensor(np.asarray(jobs) // repeats, device=params.device)
        return ModelPolicy(world_model, ControllerHead(controller, params[index]))  # one candidate per sub-env
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
