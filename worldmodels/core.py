"""The protocols every family, policy, planner, evaluator, callback and server is written against.

Three roles (DreamerV3 ``embodied`` agent/driver split; torchrl ``ModelBasedEnvBase``)::

    WorldModel   filters real observations into latent states and rolls latent states forward
    Policy       maps real observations to actions, carrying its own recurrent state
    Planner      picks an action sequence by searching inside a WorldModel (usable as a Policy)

Conventions shared by all of them (DESIGN.md has the full row convention):

- Frames are uint8 ``(..., H, W, C)``; actions are float ``(..., A)`` in MODEL encoding
  (one-hot for discrete spaces, the Box vector for continuous ones, already inside the bounds).
- A latent :data:`State` is a dict of tensors with a leading batch axis ``(B, ...)``, or
  ``(B, T, ...)`` for a sequence. Besides the family's own keys it always holds ``"action"``:
  the action taken AT that state (zeros while unknown), which the next filtering step consumes.
- Time alignment of one latent step, for every family::

      s_t = belief after obs[0..t] and action[0..t-1]      feature f_t = feature(s_t)     (B, F)
      a_t taken at s_t  ->  s_{t+1}                        r_{t+1}, c_{t+1} predicted on arriving at s_{t+1}

      imagine(s_0, policy, H):
          k:        0        1        2     ...     H
          state:    s_0 ---> s_1 ---> s_2   ...  -> s_H
          action:   a_0      a_1      a_2          (none)
          reward:            r_1      r_2          r_H
          cont:              c_1      c_2          c_H        (probability s_k is not terminal)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Protocol, Union, runtime_checkable

import torch

from worldmodels.envs.spaces import ActionSpec

State = dict[str, torch.Tensor]
"""A family's latent state: ``(B, ...)`` tensors keyed by name, always including ``"action" (B, A)``."""

PolicyState = Any
"""Whatever a :class:`Policy` carries between steps (``None`` before the first step)."""


@dataclass
class Trajectory:
    """An imagined rollout of ``H`` steps from ``B`` start states (see the module diagram).

    ``feature (B, H+1, F)``  f_0 .. f_H, or ``None`` when the rollout was asked not to keep it
    ``action  (B, H, A)``    a_0 .. a_{H-1} (model encoding)
    ``reward  (B, H)``       r_1 .. r_H, predicted on arriving at s_1 .. s_H
    ``cont    (B, H)``       c_1 .. c_H, probability that s_1 .. s_H is not terminal
    ``states``               the family's states s_0 .. s_H as ``(B, H+1, ...)``, or ``None``
                             (built from ``state_steps``, one dict per step, on first read)
    """

    action: torch.Tensor
    reward: torch.Tensor
    cont: torch.Tensor
    feature: torch.Tensor | None = None
    state_steps: list[State] | None = field(default=None, repr=False)

    @property
    def horizon(self) -> int:
        return self.reward.shape[1]

    @functools.cached_property
    def states(self) -> State | None:
        # Stacked lazily: Dreamer's actor-critic reads only features, actions, rewards and continues, and
        # stacking every key of every step costs ~170 MB of copies per DreamerV3 S update. Grad mode on:
        # the stack has a graph exactly when the steps do, as if stacked inside the rollout.
        steps, self.state_steps = self.state_steps, None
        if steps is None:
            return None
        with torch.enable_grad():
            return {key: torch.stack([s[key] for s in steps], 1) for key in steps[0]}


@runtime_checkable
class LatentPolicy(Protocol):
    """Acts on model features instead of frames: what a world model's :meth:`WorldModel.imagine` calls."""

    def act_latent(self, feature: torch.Tensor) -> torch.Tensor:
        """``feature (B, F)`` -> model actions ``(B, A)``."""


@runtime_checkable
class WorldModel(Protocol):
    """A learned latent dynamics model: filter real data, imagine forward, decode and predict.

    Implemented by :class:`worldmodels.families.vm.VMWorldModel` (World Models V + M) and
    :class:`worldmodels.models.world_model.DreamerWorldModel` (the RSSM of DreamerV3).
    """

    obs_shape: tuple[int, ...]  # (H, W, C) frames; (D,) for vector-observation families (PETS)
    action_spec: ActionSpec
    feature_dim: int

    def initial(self, batch_size: int) -> State:
        """The state before any observation, ``(B, ...)``."""

    def observe(self, obs: torch.Tensor, action: torch.Tensor | None, is_first: torch.Tensor,
                state: State | None = None) -> tuple[State, State]:
        """Filter a chunk: ``obs (B, T, H, W, C)`` uint8, ``action (B, T, A)`` (row convention: action[t]
        taken at obs[t]; ``None`` when not chosen yet, e.g. while acting), ``is_first (B, T)`` bool.

        Step t consumes the action taken at the previous state (``state["action"]`` at t = 0). Where
        ``is_first`` the state restarts from :meth:`initial`. Returns ``(states (B, T, ...), last (B, ...))``.
        """

    def imagine(self, start: State, policy_or_actions: Union[LatentPolicy, torch.Tensor], horizon: int, *,
                keep_states: bool = True) -> Trajectory:
        """Roll ``start (B, ...)`` forward ``horizon`` steps under a :class:`LatentPolicy` or actions ``(B, H, A)``.

        ``keep_states=False`` keeps only actions, rewards and continues (long CMA-ES dreams).
        No gradient is stopped here: callers that do not need one wrap the call in ``torch.no_grad()``.
        """

    def feature(self, states: State) -> torch.Tensor:
        """``(..., F)`` features the policies and value functions read."""

    def decode(self, states: State) -> torch.Tensor:
        """Predicted frames, uint8 ``(..., H, W, C)`` (float ``(..., D)`` observations for vector families). A
        value-equivalent model without a decoder (TD-MPC) sets ``decodes = False`` and raises a one-line ValueError."""

    def predict_reward(self, states: State) -> torch.Tensor:
        """Predicted reward on arriving at each state, ``(...)``."""

    def predict_cont(self, states: State) -> torch.Tensor:
        """Predicted probability that each state is not terminal, ``(...)``."""

    # Optional (not every family has one; callers look it up with ``getattr(model, "disagreement", None)``):
    #   disagreement(start (B, ...), actions (B, H, A)) -> (B, H)
    # the model's own uncertainty about step k -> k + 1 along ``actions`` (PETS: the ensemble's spread), which
    # worldmodels.kpis logs next to the open-loop error as ``kpi/open_loop_disagreement_h<k>``.


@runtime_checkable
class Policy(Protocol):
    """Anything that acts in a real (vector) env: random, sticky random, V+M+C, the Dreamer actor, a planner.

    ``obs (B, H, W, C)`` uint8 and ``is_first (B,)`` bool come from the env driver; the returned action
    ``(B, A)`` is in model encoding and inside the action space, so what the driver records is what the env
    executes. ``state`` is the policy's own carry, ``None`` on the first call.
    """

    action_spec: ActionSpec

    def initial(self, batch_size: int) -> PolicyState:
        """The carry before the first step."""

    def act(self, obs: torch.Tensor, is_first: torch.Tensor, state: PolicyState) -> tuple[torch.Tensor, PolicyState]:
        """One step for ``B`` envs -> ``(action (B, A), new state)``."""


@runtime_checkable
class Planner(Protocol):
    """Model-predictive control: search action sequences inside a world model at decision time.

    ``plan`` returns the action sequence ``(B, H, A)`` it would take from ``state (B, ...)``; wrapped in
    :class:`worldmodels.policies.PlannerPolicy` it acts as a :class:`Policy` (first action of each plan).
    """

    horizon: int

    def plan(self, world_model: WorldModel, state: State) -> torch.Tensor:
        """``state (B, ...)`` -> actions ``(B, H, A)``."""


def rollout(world_model: WorldModel, step: Any, start: State, policy_or_actions: Union[LatentPolicy, torch.Tensor],
            horizon: int, *, keep_states: bool = True) -> Trajectory:
    """THE latent loop every family's :meth:`WorldModel.imagine` runs; written once, here.

    ``step(state, action) -> (next_state, reward (B,), cont (B,))`` is the family's one-step prior;
    ``world_model.feature`` gives the policy's input. See the module diagram for the alignment.
    """
    actions_given = isinstance(policy_or_actions, torch.Tensor)
    if actions_given:
        assert policy_or_actions.dim() == 3 and policy_or_actions.shape[1] >= horizon, (
            f"imagine: actions {tuple(policy_or_actions.shape)}, want (B, H >= {horizon}, A)")
    state = start
    features, states, actions, rewards, conts = [], [], [], [], []
    for k in range(horizon + 1):
        feature = world_model.feature(state) if (keep_states or not actions_given) else None  # (B, F)
        if keep_states:
            features.append(feature)
        if k == horizon:
            if keep_states:
                states.append(state)
            break
        action = policy_or_actions[:, k] if actions_given else policy_or_actions.act_latent(feature)  # (B, A)
        if keep_states:
            states.append({**state, "action": action})
        state, reward, cont = step(state, action)
        actions.append(action)
        rewards.append(reward)
        conts.append(cont)
    stack = lambda seq: torch.stack(seq, 1)  # noqa: E731
    device = start["action"].device
    empty = torch.zeros(start["action"].shape[0], 0, device=device)
    return Trajectory(
        action=stack(actions) if actions else torch.zeros(*start["action"].shape[:1], 0, start["action"].shape[-1],
                                                           device=device),
        reward=stack(rewards) if rewards else empty,
        cont=stack(conts) if conts else empty,
        feature=stack(features) if keep_states else None,
        state_steps=states if keep_states else None,
    )


def index_state(states: State, index: Any) -> State:
    """Apply the same index to every tensor of a state, e.g. ``index_state(states, (slice(None), -1))``."""
    return {key: value[index] for key, value in states.items()}


def flatten_start(states: State) -> State:
    """Filtered states ``(B, T, ...)`` -> detached start states ``(B*T, ...)``: every one starts an imagination."""
    return {key: value.detach().flatten(0, 1) for key, value in states.items()}


def state_device(state: State) -> torch.device:
    return state["action"].device
