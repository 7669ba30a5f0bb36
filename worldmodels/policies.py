"""Every acting thing behind one :class:`worldmodels.core.Policy` signature, ``act(obs, is_first, state)``.

- :class:`RandomPolicy`, :class:`StickyRandomPolicy`, :class:`HoldRandomPolicy`: no model; also
  :class:`~worldmodels.core.LatentPolicy`, so they can act inside a dream too.
- :class:`ModelPolicy`: any :class:`~worldmodels.core.WorldModel` filters the frames, a latent head acts
  on its feature. The heads are :class:`ActorHead` (Dreamer's actor) and :class:`ControllerHead`
  (World Models' C, one or a whole CMA-ES population of flat parameter vectors).
- :class:`PlannerPolicy`: a :class:`~worldmodels.core.Planner` acting through a world model.

Actions are model-encoded ``(B, A)`` and inside the action space: one-hot for discrete spaces, clipped to
the Box for continuous ones, so the env executes exactly what the driver records.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from worldmodels.core import LatentPolicy, Planner, PolicyState, State, WorldModel
from worldmodels.envs.spaces import ActionSpec


def box_bounds(spec: ActionSpec, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)`` of a continuous spec as ``(A,)`` tensors; unbounded dimensions become ``[-1, 1]``."""
    low = torch.tensor(spec.low or (-1.0,) * spec.dim, dtype=torch.float32, device=device)
    high = torch.tensor(spec.high or (1.0,) * spec.dim, dtype=torch.float32, device=device)
    finite = torch.isfinite(low) & torch.isfinite(high)
    return torch.where(finite, low, -torch.ones_like(low)), torch.where(finite, high, torch.ones_like(high))


def clip_to_space(spec: ActionSpec, action: torch.Tensor) -> torch.Tensor:
    """Model actions ``(..., A)`` -> the same inside the space (continuous: clipped to the Box; discrete: as is)."""
    if spec.discrete:
        return action
    low, high = box_bounds(spec, action.device)
    return torch.maximum(torch.minimum(action, high), low)


class RowStreams:
    """One numpy stream per batch row, read in blocks of ``CHUNK`` uniforms, so a step's draws are one gather.

    What row ``b`` gets depends only on its seed and on how many values it has drawn (a row refills its block
    when its own block runs out), never on the other rows. One gather per draw, not a Generator call per row:
    the hold policy acts for 8 rows in ~50 us.
    """

    CHUNK = 256

    def __init__(self) -> None:
        self.generators: list[np.random.Generator | None] = []
        self.block = np.zeros((0, self.CHUNK))  # (rows, CHUNK) float64 uniforms in [0, 1)
        self.position = np.zeros(0, np.int64)  # (rows,) next unread value of each row's block
        self.seeded = False
        self._rows = np.zeros(0, np.int64)

    def reseed(self, rows: Sequence[int], seeds: Sequence[int]) -> None:
        for row, seed in zip(rows, seeds, strict=True):
            row = int(row)
            if row >= len(self.generators):
                grow = row + 1 - len(self.generators)
                self.generators.extend([None] * grow)
                self.block = np.concatenate([self.block, np.zeros((grow, self.CHUNK))])
                self.position = np.concatenate([self.position, np.full(grow, self.CHUNK, np.int64)])
            self.generators[row] = np.random.default_rng(int(seed))
            self._refill(row)
        self.seeded = all(g is not None for g in self.generators)
        self._rows = np.arange(len(self.generators))

    def _refill(self, row: int) -> None:
        self.block[row] = self.generators[row].random(self.CHUNK)  # type: ignore[union-attr]
        self.position[row] = 0

    def uniform(self, batch_size: int, count: int) -> np.ndarray:
        """The next ``count`` values of every row, ``(B, count)``."""
        if len(self.generators) != batch_size or not self.seeded:
            seeded = [b for b, g in enumerate(self.generators) if g is not None]
            raise ValueError(f"per-row random streams are seeded for rows {seeded}, but the batch has "
                             f"{batch_size} rows; call reseed_rows for every row 0..{batch_size - 1}")
        assert 0 < count <= self.CHUNK, f"{count} values per row at once; at most {self.CHUNK}"
        if (self.position + count > self.CHUNK).any():
            for row in np.flatnonzero(self.position + count > self.CHUNK):
                self._refill(int(row))
        values = self.block[self._rows[:, None], self.position[:, None] + np.arange(count)]  # (B, count)
        self.position += count
        return values


class BatchStream:
    """One numpy stream for the whole batch (fast collection), read as :class:`RowStreams` is."""

    def __init__(self, seed: int) -> None:
        self.generator = np.random.default_rng(int(seed))

    def uniform(self, batch_size: int, count: int) -> np.ndarray:
        return self.generator.random((batch_size, count))


class RandomPolicy:
    """Uniform random actions: one-hot uniform classes, or uniform inside the Box bounds.

    Draws come from one torch stream shared by the batch rows, or, after :meth:`reseed_rows`, from one
    numpy stream per row, so that what row ``b`` does depends only on its own seed and step count
    (collection's episode-indexed seeding, :mod:`worldmodels.data.collect`), or, after :meth:`use_batch_stream`,
    from one numpy stream for the batch. All modes draw from the same distributions, not the same values.

    With numpy streams the policy acts in numpy (:meth:`act_env`, env actions, which the driver calls directly):
    a torch round trip (one-hot, argmax) was about 0.1 ms of an 8-env step, a twentieth of a Pong step.
    """

    def __init__(self, action_spec: ActionSpec, seed: int | None = None, device: torch.device | str = "cpu") -> None:
        self.action_spec, self.device = action_spec, torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(0 if seed is None else int(seed))
        self.row_streams: RowStreams | BatchStream | None = None  # numpy streams once reseed_rows / use_batch_stream ran
        self._np_bounds: tuple[np.ndarray, ...] | None = None

    def reseed_rows(self, rows: Sequence[int], seeds: Sequence[int]) -> None:
        """Switch to (or stay in) per-row streams and restart row ``rows[k]``'s stream from ``seeds[k]``."""
        if not isinstance(self.row_streams, RowStreams):
            self.row_streams = RowStreams()
        self.row_streams.reseed(rows, seeds)

    def use_batch_stream(self, seed: int) -> None:
        """Draw from one numpy stream for the whole batch, seeded ``seed`` (``wm collect --collect-mode fast``)."""
        self.row_streams = BatchStream(seed)

    @property
    def acts_in_numpy(self) -> bool:
        """Draws come from numpy streams: :meth:`act_env` gives the env actions with no torch call."""
        return self.row_streams is not None

    def _np_integers(self, low: int, high: int, batch_size: int) -> np.ndarray:
        """``(B,)`` int64 uniform in ``[low, high)`` from the numpy streams (as :meth:`_integers` draws them)."""
        return low + np.floor(self.row_streams.uniform(batch_size, 1)[:, 0] * (high - low)).astype(np.int64)

    def sample_env(self, batch_size: int) -> np.ndarray:
        """Fresh uniform env actions from the numpy streams: ``(B,)`` indices or ``(B, A)`` float32 in the Box."""
        spec = self.action_spec
        if spec.discrete:
            return self._np_integers(0, spec.dim, batch_size)
        if self._np_bounds is None:  # (low, high) of the draw, then the clip of ActionSpec.to_env, as float32
            self._np_bounds = (*(bound.numpy() for bound in box_bounds(spec)),
                               np.asarray(spec.low, np.float32), np.asarray(spec.high, np.float32))
        low, high, clip_low, clip_high = self._np_bounds
        values = self.row_streams.uniform(batch_size, spec.dim).astype(np.float32)  # type: ignore[union-attr]
        # The values ActionSpec.to_env makes of the model action low + (high - low) * u, computed in float32 as there.
        return np.clip(low + (high - low) * values, clip_low, clip_high)

    def act_env(self, is_first: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """Env actions for ``is_first`` ``(B,)`` bool, from the numpy streams (:attr:`acts_in_numpy`)."""
        return self.sample_env(len(is_first)), state

    def _act_via_numpy(self, is_first: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        action, state = self.act_env(is_first.cpu().numpy().astype(bool), state)
        return self.action_spec.to_model(action).to(self.device), state

    def _uniform(self, batch_size: int, *rest: int) -> torch.Tensor:
        """``(B, *rest)`` float32 uniform in ``[0, 1)``."""
        if self.row_streams is None:
            return torch.rand(batch_size, *rest, generator=self.generator, device=self.device)
        values = self.row_streams.uniform(batch_size, int(np.prod(rest, dtype=np.int64)))  # (B, prod(rest))
        return torch.from_numpy(values.astype(np.float32).reshape(batch_size, *rest)).to(self.device)

    def _integers(self, low: int, high: int, batch_size: int) -> torch.Tensor:
        """``(B,)`` int64 uniform in ``[low, high)``."""
        if self.row_streams is None:
            return torch.randint(low, high, (batch_size,), generator=self.generator, device=self.device)
        values = low + np.floor(self.row_streams.uniform(batch_size, 1)[:, 0] * (high - low)).astype(np.int64)
        return torch.from_numpy(values).to(self.device)

    def initial(self, batch_size: int) -> PolicyState:
        return None

    def sample(self, batch_size: int) -> torch.Tensor:
        """Fresh uniform model actions ``(B, A)``."""
        spec = self.action_spec
        if spec.discrete:
            return F.one_hot(self._integers(0, spec.dim, batch_size), spec.dim).float()
        low, high = box_bounds(spec, self.device)
        return low + (high - low) * self._uniform(batch_size, spec.dim)

    def act(self, obs: torch.Tensor, is_first: torch.Tensor, state: PolicyState) -> tuple[torch.Tensor, PolicyState]:
        if self.acts_in_numpy:
            return self._act_via_numpy(is_first, state)
        return self.sample(obs.shape[0]), state

    def act_latent(self, feature: torch.Tensor) -> torch.Tensor:
        return self.sample(feature.shape[0]).to(feature.device)


class StickyRandomPolicy(RandomPolicy):
    """Random actions that persist: each env keeps its previous action with probability ``repeat_prob``.

    Uniform random actions average out in continuous control (CarRacing's car barely moves when gas
    and brake are drawn every frame); correlated actions reach more of the state space.
    """

    def __init__(self, action_spec: ActionSpec, seed: int | None = None, device: torch.device | str = "cpu", *,
                 repeat_prob: float = 0.9) -> None:
        super().__init__(action_spec, seed, device)
        if not 0.0 <= repeat_prob < 1.0:
            raise ValueError(f"repeat_prob must be in [0, 1), got {repeat_prob}")
        self.repeat_prob = repeat_prob

    def act(self, obs: torch.Tensor, is_first: torch.Tensor, state: PolicyState) -> tuple[torch.Tensor, PolicyState]:
        if self.acts_in_numpy:
            return self._act_via_numpy(is_first, state)
        fresh = self.sample(obs.shape[0])  # (B, A)
        if state is None:
            return fresh, fresh
        keep = (self._uniform(obs.shape[0]) < self.repeat_prob) & ~is_first.to(self.device).bool()  # (B,)
        action = torch.where(keep.unsqueeze(-1), state, fresh)
        return action, action

    def act_env(self, is_first: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        fresh = self.sample_env(len(is_first))
        # Numpy streams draw the same every step, so a row's draws never depend on when the carry began.
        draw = self.row_streams.uniform(len(is_first), 1)[:, 0].astype(np.float32)  # type: ignore[union-attr]
        keep = (draw < self.repeat_prob) & ~is_first  # (B,)
        action = fresh if state is None else np.where(keep.reshape(-1, *[1] * (fresh.ndim - 1)), state, fresh)
        return action, action


class HoldRandomPolicy(RandomPolicy):
    """The World Models paper's random policy: draw an action, hold it for ``U{min_hold..max_hold}`` steps.

    (Ha & Schmidhuber 2018 collect VizDoom rollouts by repeating each random action for 1-10 frames.)
    State: ``(action (B, A), steps_left (B,))``.
    """

    def __init__(self, action_spec: ActionSpec, seed: int | None = None, device: torch.device | str = "cpu", *,
                 min_hold: int = 1, max_hold: int = 10) -> None:
        super().__init__(action_spec, seed, device)
        if not 1 <= min_hold <= max_hold:
            raise ValueError(f"hold lengths must satisfy 1 <= min_hold <= max_hold, got {min_hold}, {max_hold}")
        self.min_hold, self.max_hold = min_hold, max_hold

    def act(self, obs: torch.Tensor, is_first: torch.Tensor, state: PolicyState) -> tuple[torch.Tensor, PolicyState]:
        if self.acts_in_numpy:
            return self._act_via_numpy(is_first, state)
        B = obs.shape[0]
        fresh = self.sample(B)
        hold = self._integers(self.min_hold, self.max_hold + 1, B)
        if state is None:
            return fresh, (fresh, hold - 1)
        previous, left = state
        redraw = (left <= 0) | is_first.to(self.device).bool()  # (B,)
        action = torch.where(redraw.unsqueeze(-1), fresh, previous)
        left = torch.where(redraw, hold - 1, left - 1)
        return action, (action, left)

    def act_env(self, is_first: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        fresh = self.sample_env(len(is_first))
        hold = self._np_integers(self.min_hold, self.max_hold + 1, len(is_first))
        if state is None:
            return fresh, (fresh, hold - 1)
        previous, left = state
        redraw = (left <= 0) | is_first  # (B,)
        action = np.where(redraw.reshape(-1, *[1] * (fresh.ndim - 1)), fresh, previous)
        return action, (action, np.where(redraw, hold - 1, left - 1))


RANDOM_POLICIES: dict[str, type[RandomPolicy]] = {"random": RandomPolicy, "sticky": StickyRandomPolicy,
                                                  "hold": HoldRandomPolicy}


def make_random_policy(name: str, action_spec: ActionSpec, seed: int | None = None) -> RandomPolicy:
    if name not in RANDOM_POLICIES:
        raise ValueError(f"unknown random policy {name!r}; choose one of {sorted(RANDOM_POLICIES)}")
    return RANDOM_POLICIES[name](action_spec, seed)


class ActorHead:
    """Dreamer's actor as a latent policy: ``feature (B, F) -> a ~ π(.|s)`` (or its mode), inside the space."""

    def __init__(self, actor: torch.nn.Module, action_spec: ActionSpec, *, sample: bool = True) -> None:
        self.actor, self.action_spec, self.sample = actor, action_spec, sample

    def act_latent(self, feature: torch.Tensor) -> torch.Tensor:
        dist = self.actor(feature)
        action = (dist.sample() if self.sample else dist.mode()).detach()  # acting: no straight-through gradient
        if self.action_spec.discrete:  # exactly one-hot (the straight-through sample carries float round-off)
            return F.one_hot(action.argmax(-1), self.action_spec.dim).to(action.dtype)
        return clip_to_space(self.action_spec, action)


class ControllerHead:
    """World Models' C as a latent policy; ``params (P, N)`` are P candidates, each acting on ``B / P`` rows.

    Rows are grouped by candidate: rows ``p * R .. (p + 1) * R - 1`` use candidate ``p`` (``R = B / P``).
    """

    def __init__(self, controller: torch.nn.Module, params: torch.Tensor) -> None:
        self.controller = controller
        self.params = params.reshape(-1, controller.num_params) if params.dim() == 1 else params  # (P, N)
        self.action_spec: ActionSpec = controller.action_spec

    def act_latent(self, feature: torch.Tensor) -> torch.Tensor:
        B, F_ = feature.shape
        P = self.params.shape[0]
        assert B % P == 0, f"controller: {B} rows do not split over {P} candidates"
        action = self.controller(self.params.to(feature.device), feature.reshape(P, B // P, F_))  # (P, R, A)
        return action.reshape(B, -1)


class ModelPolicy:
    """A :class:`WorldModel` filters each frame, ``head`` acts on its feature (the paper's V -> M -> C loop).

    State: the world model's :data:`~worldmodels.core.State` (its ``"action"`` holds the last action).
    """

    def __init__(self, world_model: WorldModel, head: LatentPolicy, *, device: torch.device | str | None = None) -> None:
        self.world_model, self.head = world_model, head
        self.action_spec = world_model.action_spec
        self._device = torch.device(device) if device is not None else None

    @property
    def device(self) -> torch.device:
        """``device``, else wherever the world model's weights are NOW (a Trainer may move them after this is built)."""
        return self._device if self._device is not None else _module_device(self.world_model)

    def initial(self, batch_size: int) -> PolicyState:
        return None

    @torch.no_grad()
    def act(self, obs: torch.Tensor, is_first: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        obs, is_first = obs.to(self.device), is_first.to(self.device).bool()
        _, last = self.world_model.observe(obs.unsqueeze(1), None, is_first.unsqueeze(1), state)  # (B, ...)
        action = self.head.act_latent(self.world_model.feature(last))  # (B, A)
        return action, {**last, "action": action}


class PlannerPolicy(ModelPolicy):
    """Model-predictive control: filter with the world model, plan, execute the plan's first action.

    State: ``(model state, plan (B, H, A))``. The plan is kept per env in its own slot (a family's
    ``observe`` reads only its own keys) and handed back to planners that warm-start, i.e. whose ``plan``
    takes ``previous=`` and ``is_first=`` (those of :mod:`worldmodels.planning`); they drop it where
    ``is_first``.
    """

    def __init__(self, world_model: WorldModel, planner: Planner, *, device: torch.device | str | None = None) -> None:
        super().__init__(world_model, head=None, device=device)  # type: ignore[arg-type]
        self.planner = planner
        self.warm_start = "previous" in inspect.signature(planner.plan).parameters

    @torch.no_grad()
    def act(self, obs: torch.Tensor, is_first: torch.Tensor,
            state: tuple[State, torch.Tensor] | None) -> tuple[torch.Tensor, tuple[State, torch.Tensor]]:
        obs, is_first = obs.to(self.device), is_first.to(self.device).bool()
        model_state, previous = (None, None) if state is None else state
        _, last = self.world_model.observe(obs.unsqueeze(1), None, is_first.unsqueeze(1), model_state)
        if self.warm_start and previous is not None:
            plan = self.planner.plan(self.world_model, last, previous=previous, is_first=is_first)
        else:
            plan = self.planner.plan(self.world_model, last)  # (B, H, A)
        action = clip_to_space(self.action_spec, plan[:, 0])  # (B, A)
        return action, ({**last, "action": action}, plan)


def _module_device(module: Any) -> torch.device:
    try:
        return next(module.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")
