"""What every planner shares: the one batched scoring call, the discounted return, warm starts, the policy prior.

A planner searches action sequences ``(B, N, H, A)`` (env x candidate x step x action, model encoding) for
``B`` start states. Scoring rolls every env x candidate x particle out in ONE ``world_model.imagine`` call::

    start  (B, ...)        --repeat_interleave(N * P)-->  (B*N*P, ...)    rows b*N*P + n*P + p
    actions (B, N, H, A)   --repeat each candidate P-->   (B*N*P, H, A)
    imagine(start, actions, H)  ->  reward, cont (B*N*P, H)  ->  return (B*N*P,)  ->  mean over P  ->  (B, N)

Particles are independent samples of a stochastic model (World Models' MDN, Dreamer's categorical prior),
so their mean return estimates the expected return of a candidate (PETS' "TS-inf" with one model).

The return of a candidate (reward[:, t] = r_{t+1}, cont[:, t] = c_{t+1}; see :mod:`worldmodels.core`)::

    R = sum_{t=0}^{H-1} gamma^t  (c_1 ... c_t)  r_{t+1}   +   gamma^H  (c_1 ... c_H)  V(s_H)

``r_{t+1}`` counts while every state before ``s_{t+1}`` was not terminal; the terminal value ``V(s_H)`` (the
TD-MPC / Dreamer bootstrap) is optional and needs the feature of ``s_H``, so only then are states kept.

Warm start (every planner): the previous plan is shifted one step left and its last step refilled with the
planner's neutral action, except where ``is_first`` says the env began a new episode::

    previous  a_0  a_1  ...  a_{H-1}      (a_0 was executed)
    shifted   a_1  a_2  ...  a_{H-1}  fill
"""

from __future__ import annotations

import abc
import time
from typing import Callable

import torch
import torch.nn.functional as F

from worldmodels.core import LatentPolicy, State, WorldModel, state_device
from worldmodels.envs.spaces import ActionSpec
from worldmodels.policies import box_bounds

Value = Callable[[torch.Tensor], torch.Tensor]
"""A terminal value ``V``: features ``(R, F)`` -> values ``(R,)`` (e.g. Dreamer's critic mean)."""


def repeat_start(start: State, times: int) -> State:
    """``(B, ...)`` -> ``(B * times, ...)``, each row repeated ``times`` times in place (rows of one env adjacent)."""
    return {key: value.repeat_interleave(times, 0) for key, value in start.items()}


def discounted_return(reward: torch.Tensor, cont: torch.Tensor, *, gamma: float,
                      terminal_value: torch.Tensor | None = None) -> torch.Tensor:
    """``reward``, ``cont (R, H)`` (+ ``terminal_value (R,)``) -> the module docstring's ``R`` ``(R,)``."""
    R, H = reward.shape
    survive = torch.cumprod(cont, 1)  # (R, H): c_1 ... c_{t+1}
    alive = torch.cat([torch.ones_like(survive[:, :1]), survive[:, :-1]], 1)  # (R, H): c_1 ... c_t
    discount = gamma ** torch.arange(H, device=reward.device, dtype=reward.dtype)  # (H,)
    total = (discount * alive * reward).sum(1)
    if terminal_value is not None:
        total = total + gamma ** H * survive[:, -1] * terminal_value
    return total


@torch.no_grad()
def score_candidates(world_model: WorldModel, start: State, actions: torch.Tensor, *, particles: int = 1,
                     gamma: float = 1.0, value: Value | None = None) -> torch.Tensor:
    """``start (B, ...)``, ``actions (B, N, H, A)`` -> mean return over ``particles`` ``(B, N)``: ONE imagine call."""
    B, N, H, A = actions.shape
    P = particles
    assert start["action"].shape[0] == B, f"score: start has {start['action'].shape[0]} rows, actions {tuple(actions.shape)}"
    flat = actions.unsqueeze(2).expand(B, N, P, H, A).reshape(B * N * P, H, A)
    trajectory = world_model.imagine(repeat_start(start, N * P), flat, H, keep_states=value is not None)
    terminal = value(trajectory.feature[:, -1]) if value is not None else None  # (B*N*P,) from f_H
    returns = discounted_return(trajectory.reward, trajectory.cont, gamma=gamma, terminal_value=terminal)
    return returns.view(B, N, P).mean(-1)


def shift_plan(previous: torch.Tensor, neutral: torch.Tensor, is_first: torch.Tensor | None = None) -> torch.Tensor:
    """Warm start: ``previous (B, H, A)`` one step on, its last step from ``neutral (B, H, A)``.

    Rows where ``is_first (B,)`` (a new episode) take ``neutral`` whole.
    """
    shifted = torch.cat([previous[:, 1:], neutral[:, -1:]], 1)
    if is_first is None:
        return shifted
    return torch.where(is_first.to(shifted.device).bool().view(-1, 1, 1), neutral, shifted)


class SamplingPlanner(abc.ABC):
    """The loop of every sampling planner: warm start, iterations of sample -> score -> refit, the final plan.

    Subclasses set the search distribution (:meth:`init`), draw candidates from it (:meth:`sample`), refit it
    from scored candidates (:meth:`refit`) and read the plan off it (:meth:`result`). ``prior`` (a latent
    policy, e.g. Dreamer's actor or World Models' C) adds ``prior_candidates`` sequences of its own to every
    iteration's candidates (TD-MPC2's policy prior); they come from one extra imagine call per plan.
    ``seconds``, ``calls`` and ``actions`` count the planning time for the ms-per-action KPI.
    """

    def __init__(self, action_spec: ActionSpec, *, horizon: int, candidates: int, iterations: int = 1,
                 particles: int = 1, gamma: float = 1.0, value: Value | None = None, prior: LatentPolicy | None = None,
                 prior_candidates: int = 0, seed: int = 0) -> None:
        for name, number in (("horizon", horizon), ("candidates", candidates), ("iterations", iterations),
                             ("particles", particles)):
            if number < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be >= 1, got {number}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"{type(self).__name__}: gamma must be in (0, 1], got {gamma}")
        if prior_candidates < 0 or (prior_candidates > 0 and prior is None):
            raise ValueError(f"{type(self).__name__}: prior_candidates={prior_candidates} needs a prior policy and >= 0")
        self.action_spec, self.horizon, self.candidates, self.iterations = action_spec, horizon, candidates, iterations
        self.particles, self.gamma, self.value = particles, gamma, value
        self.prior, self.prior_candidates = prior, prior_candidates if prior is not None else 0
        self.generator: torch.Generator | None = None
        self.seed = seed
        self.seconds, self.calls, self.actions = 0.0, 0, 0

    # ------------------------------------------------------------------ worldmodels.core.Planner

    @torch.no_grad()
    def plan(self, world_model: WorldModel, state: State, *, previous: torch.Tensor | None = None,
             is_first: torch.Tensor | None = None) -> torch.Tensor:
        """``state (B, ...)`` -> actions ``(B, H, A)``; ``previous (B, H, A)`` is the last plan (warm start)."""
        began = time.perf_counter()
        device = state_device(state)
        B, H = state["action"].shape[0], self.horizon
        if self.generator is None or self.generator.device != device:
            self.generator = torch.Generator(device=device).manual_seed(self.seed)
        neutral = self.neutral(B, device)  # (B, H, A)
        warm = neutral if previous is None else shift_plan(previous.to(device), neutral, is_first)
        search = self.init(warm)
        prior = self.prior_actions(world_model, state)  # (B, M, H, A) or None
        best_actions, best_return = warm, torch.full((B,), -float("inf"), device=device)
        for iteration in range(self.iterations):
            candidates = self.sample(search, iteration, warm)  # (B, N_i, H, A)
            if prior is not None:
                candidates = torch.cat([candidates, prior], 1)
            returns = score_candidates(world_model, state, candidates, particles=self.particles, gamma=self.gamma,
                                       value=self.value)  # (B, N_i)
            top, index = returns.max(1)
            better = top > best_return
            best_return = torch.where(better, top, best_return)
            best_actions = torch.where(better.view(B, 1, 1), candidates[torch.arange(B, device=device), index],
                                       best_actions)
            search = self.refit(search, candidates, returns, iteration)
        plan = self.result(search, best_actions)
        want = (B, H, self.action_spec.dim)
        assert plan.shape == want, f"plan: got {tuple(plan.shape)}, want {want}"
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the clock must include the queued kernels
        self.seconds += time.perf_counter() - began
        self.calls, self.actions = self.calls + 1, self.actions + B
        return plan

    # ------------------------------------------------------------------ what each planner defines

    def init(self, warm: torch.Tensor) -> object:
        """The search distribution centred on the warm start ``(B, H, A)``."""
        return warm

    @abc.abstractmethod
    def sample(self, search: object, iteration: int, warm: torch.Tensor) -> torch.Tensor:
        """Candidates ``(B, N, H, A)`` of this iteration."""

    def refit(self, search: object, candidates: torch.Tensor, returns: torch.Tensor, iteration: int) -> object:
        """The search distribution after scoring ``candidates (B, N, H, A)`` with ``returns (B, N)``."""
        return search

    def result(self, search: object, best: torch.Tensor) -> torch.Tensor:
        """The plan ``(B, H, A)`` from the final distribution or the best candidate seen ``best (B, H, A)``."""
        return best

    # ------------------------------------------------------------------ shared helpers

    def neutral(self, batch_size: int, device: torch.device) -> torch.Tensor:
        """The plan without information ``(B, H, A)``: the Box centre, or uniform class probabilities."""
        spec, shape = self.action_spec, (batch_size, self.horizon, self.action_spec.dim)
        if spec.discrete:
            return torch.full(shape, 1.0 / spec.dim, device=device)
        low, high = box_bounds(spec, device)
        return ((low + high) / 2).expand(shape).clone()

    def uniform(self, batch_size: int, count: int, device: torch.device) -> torch.Tensor:
        """Uniform random sequences ``(B, N, H, A)``: one-hot classes or uniform inside the Box."""
        spec, H = self.action_spec, self.horizon
        if spec.discrete:
            index = torch.randint(spec.dim, (batch_size, count, H), generator=self.generator, device=device)
            return F.one_hot(index, spec.dim).float()
        low, high = box_bounds(spec, device)
        return low + (high - low) * torch.rand(batch_size, count, H, spec.dim, generator=self.generator, device=device)

    def bounds(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return box_bounds(self.action_spec, device)

    @torch.no_grad()
    def prior_actions(self, world_model: WorldModel, state: State) -> torch.Tensor | None:
        """``prior_candidates`` action sequences of the prior policy, ``(B, M, H, A)`` (one imagine call)."""
        M = self.prior_candidates
        if M == 0:
            return None
        B = state["action"].shape[0]
        trajectory = world_model.imagine(repeat_start(state, M), self.prior, self.horizon, keep_states=False)
        return trajectory.action.reshape(B, M, self.horizon, -1)

    def require_continuous(self) -> None:
        if self.action_spec.discrete:
            raise ValueError(f"{type(self).__name__} searches continuous (Box) actions; for discrete({self.action_spec.dim}) "
                             f"actions use the cem planner (categorical) or shooting")
