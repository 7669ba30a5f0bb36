"""The policies decision fidelity ranks (issue 28), built from one trained model without a saved history.

Shipped models keep only their final weights, so the weaker policies of the set are made, reproducibly from a seed:

- :class:`EpsilonRandomPolicy`: the trained policy, its action replaced by a uniform random one w.p. epsilon.
- :func:`perturbed_controller` / :func:`perturbed_actor`: Gaussian noise on the weights, per tensor
  ``w + scale * rms(w) * N(0, 1)`` (relative, so one scale means the same for a large and a small tensor).
- :func:`cmaes_checkpoints` (World Models): C trained again from zero by CMA-ES in THIS model's dream for fewer
  generations than the shipped C (the paper's procedure, cut short: ``worldmodels.controllers.cmaes``), the dream
  starting from the first frames of real episodes on seeds no evaluation uses.

(Dreamer's intermediate actors need the actor-critic learner of ``trainers/``: ``trainers.runs.fidelity_checkpoints``.)
"""

from __future__ import annotations

import copy
import tempfile
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from worldmodels.controllers.cmaes import train_cmaes
from worldmodels.controllers.linear import PopulationController
from worldmodels.core import LatentPolicy, PolicyState, WorldModel
from worldmodels.fidelity import latent_head
from worldmodels.fidelity_real import start_frames
from worldmodels.imagination.cmaes_dream import dream_fitness
from worldmodels.models.conv import to_float_image
from worldmodels.models.vm_world_model import VMWorldModel
from worldmodels.policies import ActorHead, ControllerHead, ModelPolicy, RandomPolicy


class _EpsilonHead:
    """The latent form of :class:`EpsilonRandomPolicy`: the base head's action, randomised w.p. epsilon."""

    def __init__(self, owner: EpsilonRandomPolicy, head: LatentPolicy) -> None:
        self.owner, self.head = owner, head

    def act_latent(self, feature: torch.Tensor) -> torch.Tensor:
        return self.owner.mix(self.head.act_latent(feature))


class EpsilonRandomPolicy:
    """``base`` acting, each step's action replaced by a uniform random one with probability ``epsilon`` per env.

    The base still sees every frame, and a world-model policy's filter is told the action executed (its
    ``state["action"]``), not the one it chose. In a dream it acts on latents where ``base`` does.
    """

    def __init__(self, base: Any, epsilon: float, *, seed: int = 0) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.base, self.epsilon, self.action_spec = base, float(epsilon), base.action_spec
        self.random = RandomPolicy(base.action_spec, seed=seed)
        self.generator = torch.Generator().manual_seed(int(seed) + 1)

    def mix(self, action: torch.Tensor) -> torch.Tensor:
        """``action (B, A)`` with each row replaced by a uniform one w.p. epsilon."""
        B = action.shape[0]
        swap = (torch.rand(B, generator=self.generator) < self.epsilon).to(action.device).unsqueeze(-1)  # (B, 1)
        return torch.where(swap, self.random.sample(B).to(action.device, action.dtype), action)

    def initial(self, batch_size: int) -> PolicyState:
        return self.base.initial(batch_size)

    def act(self, obs: torch.Tensor, is_first: torch.Tensor, state: PolicyState) -> tuple[torch.Tensor, PolicyState]:
        action, state = self.base.act(obs, is_first, state)
        action = self.mix(action)
        if isinstance(state, dict) and "action" in state:  # the next filtering step consumes the EXECUTED action
            state = {**state, "action": action}
        return action, state

    def latent_head(self, world_model: WorldModel) -> LatentPolicy | None:
        head = latent_head(self.base, world_model)
        return None if head is None else _EpsilonHead(self, head)


def _noise_like(tensor: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    rms = tensor.detach().float().pow(2).mean().sqrt()
    noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
    return (scale * rms * noise).to(tensor.device, tensor.dtype)


def perturbed_controller(world_model: WorldModel, head: ControllerHead, scale: float, *, seed: int) -> ModelPolicy:
    """C with Gaussian noise on its flat parameters ``(1, N)``: ``scale * rms(params)`` standard deviation."""
    generator = torch.Generator().manual_seed(int(seed))
    params = head.params + _noise_like(head.params, scale, generator)
    return ModelPolicy(world_model, ControllerHead(head.controller, params))


@torch.no_grad()
def perturbed_actor(world_model: WorldModel, head: ActorHead, scale: float, *, seed: int) -> ModelPolicy:
    """A copy of Dreamer's actor, every weight tensor plus noise of ``scale * rms(tensor)`` standard deviation."""
    generator = torch.Generator().manual_seed(int(seed))
    actor: nn.Module = copy.deepcopy(head.actor)
    for parameter in actor.parameters():
        parameter.add_(_noise_like(parameter, scale, generator))
    return ModelPolicy(world_model, ActorHead(actor, head.action_spec, sample=head.sample))


@torch.no_grad()
def _start_latents(world_model: VMWorldModel, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """V's posterior ``mu, logvar (S, Z)`` of real first frames ``(S, H, W, C)`` uint8: the dream's starts."""
    device = next(world_model.mdnrnn.parameters()).device
    return world_model.vae.encode(to_float_image(frames.to(device)))


def cmaes_checkpoints(world_model: VMWorldModel, controller: PopulationController, env: Any, *,
                      generations: Sequence[int], seed: int, horizon: int, population: int = 16, repeats: int = 4,
                      starts: int = 16, sample_done: bool = False) -> dict[int, torch.Tensor]:
    """C's best candidate ``(1, N)`` after each of ``generations`` CMA-ES generations in ``world_model``'s dream.

    One run, from zero parameters (the trainer's start) with the trainer's step size 0.1: each count after the
    first resumes the previous one from its ``es_state`` (a replay, so the run is exactly one uninterrupted run).
    The dream starts from V's posterior of the first frames of ``starts`` real episodes on seeds
    ``seed .. seed + starts - 1`` (``env``: a vector env of the model's), ends on M's done (thresholded at 0.5,
    or sampled with ``sample_done``) or at ``horizon`` steps; fitness: the mean of ``repeats`` dreams.
    """
    counts = sorted(set(int(g) for g in generations))
    if not counts or counts[0] < 1:
        raise ValueError(f"generations must be positive counts, got {list(generations)}")
    device = next(world_model.mdnrnn.parameters()).device
    start_mu, start_logvar = _start_latents(world_model, start_frames(env, episodes=starts, seed=seed))
    controller = controller.to(device)

    def fitness(params: torch.Tensor) -> torch.Tensor:
        return dream_fitness(world_model, controller, params, start_mu, start_logvar, repeats=repeats,
                             horizon=horizon, sample_done=sample_done)

    out: dict[int, torch.Tensor] = {}
    with tempfile.TemporaryDirectory() as state_dir, torch.random.fork_rng(devices=[]):
        np_state = np.random.get_state()  # cma samples from numpy's global stream, reseeded per generation
        try:
            for count in counts:
                result = train_cmaes(fitness, controller.num_params, generations=count, population=population,
                                     sigma0=0.1, seed=seed, checkpoint_dir=state_dir, device=device)
                out[count] = torch.as_tensor(result["best_params"], dtype=torch.float32).reshape(1, -1)
        finally:
            np.random.set_state(np_state)
    return out
