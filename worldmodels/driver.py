"""THE env loop: one :class:`Driver` steps a gymnasium vector env with any :class:`~worldmodels.core.Policy`.

Collection into the episode store, Dreamer's online replay and every evaluation are hooks of this one
loop (DreamerV3 ``embodied.Driver``), so what is recorded is what the env executed.

Rows follow DESIGN.md. With NEXT_STEP autoreset, one vector step appends one row per env::

    current:  obs[t], reward[t], terminated[t], truncated[t], is_first[t]    (from the previous step)
    act:      a = policy(obs[t], is_first[t])                                 model encoding, inside the space
    execute:  env_action = spec.to_env(a)   (zeros / index 0 when obs[t] ends the episode: the env ignores it)
    record:   row t = (obs[t], action[t] = env_action, reward[t], terminated[t], truncated[t], is_first[t])
    step:     -> obs[t+1], reward[t+1], ...;   is_first[t+1] = terminated[t] or truncated[t]

Collection starts its seeded episodes itself: :meth:`Driver.reset_envs` resets the ended envs (a masked,
seeded reset) before the policy acts, so the vector env's own autoreset does not fire for them.

Rows carry the action in the store's encoding (int64 index, or the clipped float vector), the ONE
encoding every consumer converts with :meth:`ActionSpec.to_model`.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol, Sequence

import gymnasium as gym
import numpy as np
import torch

from worldmodels.core import Policy
from worldmodels.envs.spaces import ActionSpec

ROW_FIELDS = ("obs", "action", "reward", "terminated", "truncated", "is_first")


class DriverHook(Protocol):
    """Receives what the driver records. Both methods are optional (see :class:`Driver`)."""

    def on_row(self, env_index: int, row: dict[str, np.ndarray]) -> None:
        """One row of env ``env_index``; arrays per :data:`ROW_FIELDS`."""

    def on_episode(self, env_index: int, episode: dict[str, np.ndarray], complete: bool) -> None:
        """A finished episode as ``(L, ...)`` arrays; ``complete`` is False when it began before the driver did."""


def episode_arrays(rows: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Rows -> ``(L, ...)`` arrays in store dtypes (``is_first`` dropped: it is ``t == 0``)."""
    return {"obs": np.stack([r["obs"] for r in rows]), "action": np.stack([r["action"] for r in rows]),
            "reward": np.asarray([r["reward"] for r in rows], np.float32),
            "terminated": np.asarray([r["terminated"] for r in rows], bool),
            "truncated": np.asarray([r["truncated"] for r in rows], bool)}


class Driver:
    """Steps ``env`` (a gymnasium ``VectorEnv`` with NEXT_STEP autoreset) with ``policy`` and feeds ``hooks``.

    ``policy`` may be swapped between steps (``driver.policy = ...``, e.g. after a random prefill); its
    carry restarts then. ``device`` is where observations are sent for the policy.
    """

    def __init__(self, env: gym.vector.VectorEnv, policy: Policy, *, hooks: Sequence[Any] = (),
                 device: torch.device | str = "cpu") -> None:
        self.env, self.hooks, self.device = env, list(hooks), torch.device(device)
        self.num_envs = env.num_envs
        self.action_spec = ActionSpec.from_space(env.single_action_space)
        self._policy = policy
        self.policy_state: Any = None
        self._fresh_carry = True  # the policy's next call starts its carry (reset, or a new policy)
        self.steps = 0  # env (agent) steps taken, summed over envs
        self.episodes = 0
        self.current: dict[str, np.ndarray] | None = None
        self._wants_episodes = any(hasattr(h, "on_episode") for h in self.hooks)
        self._zero_action = np.zeros_like(self.action_spec.to_env(torch.zeros(1, self.action_spec.dim))[0])
        self._blocks = RowBlocks(self.num_envs, keep=self._wants_episodes)

    @property
    def policy(self) -> Policy:
        return self._policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        self._policy = policy
        self.clear_carry()

    def clear_carry(self) -> None:
        """Forget the policy's recurrent state: its next step starts from ``policy.initial`` in every env."""
        self.policy_state, self._fresh_carry = None, True

    def reset(self, seed: int | Sequence[int] | None = None) -> None:
        """Reset every env (sub-env ``i`` gets ``seed + i``, or ``seed[i]``); running episodes are dropped."""
        if isinstance(seed, (list, tuple, np.ndarray)):
            seed = vector_seeds(self.env, np.ones(self.num_envs, bool), seed)
        obs, _ = self.env.reset(seed=seed)
        self.current = self._blocks.begin(np.asarray(obs), self._zero_action)
        self.clear_carry()

    @property
    def done(self) -> np.ndarray:
        """``(E,)`` bool: the current row of env ``i`` ends its episode."""
        assert self.current is not None, "Driver.done before the first reset"
        return self.current["terminated"] | self.current["truncated"]

    def reset_envs(self, mask: np.ndarray, seeds: Sequence[int | None]) -> None:
        """Start a new episode in every env where ``mask`` ``(E,)`` is True, seeded ``seeds`` (one per True, in order;
        None: unseeded, the env's own random stream goes on).

        A terminal current row is recorded first (with the zero action, as :meth:`step` records it) and its
        episode finished; a running episode is dropped. Envs not in ``mask`` keep their current rows. A masked
        reset also clears the vector env's pending autoreset, so resetting every :attr:`done` env before each
        :meth:`step` means the vector env never autoresets (checked for ale-py 0.12 and gymnasium 1.4; gymnasium's
        ``AsyncVectorEnv`` only with ``shared_memory=True``, its default: without, its worker keeps the pending one).
        """
        assert self.current is not None, "Driver.reset_envs before the first reset"
        mask = np.asarray(mask, bool)
        finishing = np.flatnonzero(mask & self.done)
        if len(finishing):
            rows = {**self.current, "action": self._blocks.set_action(self._zero_action)}  # only `finishing` are read
            self._record(self._copied(rows), finishing, finishing)
        obs, _ = self.env.reset(seed=vector_seeds(self.env, mask, seeds), options={"reset_mask": mask})
        self._blocks.restart(mask, np.asarray(obs))  # in place: the rows recorded above were copied or gathered

    def _actions(self) -> np.ndarray:
        """Env actions ``(E,)`` or ``(E, A)`` for the current rows."""
        cur = self.current
        if getattr(self._policy, "acts_in_numpy", False):  # a random policy on numpy streams: no torch round trip
            is_first = np.ones(self.num_envs, bool) if self._fresh_carry else np.array(cur["is_first"])
            self._fresh_carry = False
            env_action, self.policy_state = self._policy.act_env(is_first, self.policy_state)  # type: ignore[attr-defined]
            env_action = np.array(env_action)  # a copy: the policy may keep the same array as its carry
        else:
            obs = torch.as_tensor(cur["obs"], device=self.device)
            is_first = torch.as_tensor(cur["is_first"], device=self.device)
            if self._fresh_carry:  # a fresh carry must not read state from before it existed
                is_first, self._fresh_carry = torch.ones_like(is_first), False
            action, self.policy_state = self._policy.act(obs, is_first, self.policy_state)
            env_action = np.asarray(self.action_spec.to_env(action.detach()))
        env_action[self.done] = 0  # the env ignores it (NEXT_STEP autoreset); row convention: last row zeros
        return env_action

    def step(self) -> dict[str, np.ndarray]:
        """One vector step; returns the recorded rows as ``(E, ...)`` arrays.

        They are views of the driver's row blocks (:class:`RowBlocks`), valid until the next step returns: copy what
        you keep.
        """
        if self.current is None:
            self.reset()
        env_action = self._actions()
        rows = {**self.current, "action": self._blocks.set_action(env_action)}
        self._record(rows, range(self.num_envs), np.flatnonzero(self.done))
        obs, reward, terminated, truncated, _ = self.env.step(env_action)
        self.current = self._blocks.advance(np.asarray(obs), reward, terminated, truncated)
        self.steps += self.num_envs
        return rows

    @staticmethod
    def _copied(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.array(rows[k]) for k in ROW_FIELDS}

    def _record(self, rows: dict[str, np.ndarray], envs: Sequence[int], finishing: np.ndarray) -> None:
        """Hand the rows ``(E, ...)`` of ``envs`` to the row hooks and finish the episodes of the envs ``finishing``."""
        row_hooks = [h for h in self.hooks if hasattr(h, "on_row")]
        if not row_hooks:
            for i in finishing:
                self._finish(int(i))
            return
        batch, ending = self._copied(rows), set(finishing.tolist())  # one copy: never written to after
        for i in envs:  # env by env, each row before its episode ends, as hooks with both methods expect
            row = {k: batch[k][i] for k in ROW_FIELDS}
            for hook in row_hooks:
                hook.on_row(i, row)
            if i in ending:
                self._finish(int(i))

    def _finish(self, i: int) -> None:
        self.episodes += 1
        episode, complete = self._blocks.finish(i)
        if episode is not None:
            for hook in self.hooks:
                if hasattr(hook, "on_episode"):
                    hook.on_episode(i, episode, complete)

    def run(self, *, steps: int | None = None, episodes: int | None = None) -> None:
        """Step until ``steps`` more env steps were taken or ``episodes`` more episodes finished."""
        if steps is None and episodes is None:
            raise ValueError("Driver.run needs steps= or episodes=")
        stop_steps = None if steps is None else self.steps + steps
        stop_episodes = None if episodes is None else self.episodes + episodes
        while (stop_steps is None or self.steps < stop_steps) and (stop_episodes is None or self.episodes < stop_episodes):
            self.step()


class Recycled:
    """Arrays ``(L, ...)`` cut from reused buffers: a buffer is reused once no array made from it is alive (its
    reference count: every view and view of a view refers to the buffer itself), so an episode handed to a hook
    keeps its memory for as long as anyone holds any part of it.

    Why: memory the process has not touched yet costs a page fault per 4 KB page, 37 ms for a 12 MB Pong episode
    on the 2-core VM against 1.5 ms for a copy into touched memory, and a collection's writer holds a few episodes
    at a time, so each new one used to land in fresh memory. Buffers past ``POOL_BYTES`` in all are not kept.
    """

    POOL_BYTES = 512 * 2**20
    _UNUSED = 3  # references to a pooled buffer nobody else holds: the pool's list, the loop variable, getrefcount's

    def __init__(self) -> None:
        self.pool: list[np.ndarray] = []

    def take(self, rows: int, row_shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        for base in self.pool:
            if len(base) >= rows and base.shape[1:] == row_shape and base.dtype == dtype \
                    and sys.getrefcount(base) <= self._UNUSED:
                return base[:rows]
        base = np.empty((1 << max(6, (rows - 1).bit_length()), *row_shape), dtype)  # a power of two: few sizes
        if sum(b.nbytes for b in self.pool) + base.nbytes <= self.POOL_BYTES:
            self.pool.append(base)
        return base[:rows]


class RowBlocks:
    """The rows of every env's running episode, in blocks of ``block`` rows: row ``t`` (counted from :meth:`begin`) of
    all ``E`` envs is row ``t % block`` of block ``t // block``, arrays ``(block, E, ...)``; env ``i``'s running
    episode is rows ``start[i] .. t``.

    One write per field per vector step for all envs (the one batch copy a step needs anyway) and a few slices per
    finished episode: per-env row lists cost a dict per env per step and a stack of ``L`` views per episode, about a
    sixth of an 8-env Pong step. A block no running episode reaches is reused, so a long collection touches no new
    memory. ``keep``: episodes are wanted (blocks of 64); else only the current rows are (blocks of 4).
    """

    def __init__(self, num_envs: int, *, keep: bool) -> None:
        self.num_envs, self.keep = num_envs, keep
        self.block = 64 if keep else 4
        self.blocks: dict[int, dict[str, np.ndarray]] = {}
        self.spare: list[dict[str, np.ndarray]] = []  # released blocks, reused before any is allocated
        self.layout: tuple = ()
        self.t = 0
        self.start = np.zeros(num_envs, np.int64)
        self.recycled = Recycled()

    def begin(self, obs: np.ndarray, zero_action: np.ndarray) -> dict[str, np.ndarray]:
        """Every env starts an episode at row 0, observing ``obs`` ``(E, ...)``; returns row 0's views."""
        layout = (obs.shape, obs.dtype, zero_action.shape, zero_action.dtype)
        self.spare = [*self.spare, *self.blocks.values()] if layout == self.layout else []
        self.layout, self.blocks, self.t = layout, {}, 0
        self.start[:] = 0
        self._open(0)
        rows = self.rows()
        rows["obs"][:], rows["reward"][:], rows["terminated"][:], rows["truncated"][:] = obs, 0, False, False
        rows["is_first"][:] = True
        return rows

    def _open(self, index: int) -> None:
        if self.spare:
            self.blocks[index] = self.spare.pop()
            return
        (obs_shape, obs_dtype, action_shape, action_dtype), n = self.layout, (self.block, self.num_envs)
        self.blocks[index] = {"obs": np.empty((self.block, *obs_shape), obs_dtype),
                              "action": np.empty((*n, *action_shape), action_dtype), "reward": np.empty(n, np.float32),
                              "terminated": np.empty(n, bool), "truncated": np.empty(n, bool),
                              "is_first": np.empty(n, bool)}

    def _slot(self) -> tuple[dict[str, np.ndarray], int]:
        return self.blocks[self.t // self.block], self.t % self.block

    def rows(self) -> dict[str, np.ndarray]:
        """Views of row ``t`` of every env, without ``action`` (:meth:`set_action` writes it)."""
        arrays, slot = self._slot()
        return {k: v[slot] for k, v in arrays.items() if k != "action"}

    def set_action(self, action: np.ndarray) -> np.ndarray:
        """Row ``t``'s actions ``(E, ...)`` (a row or a broadcast one); returns their view."""
        arrays, slot = self._slot()
        view = arrays["action"][slot]
        view[:] = action
        return view

    def advance(self, obs: np.ndarray, reward: Any, terminated: Any, truncated: Any) -> dict[str, np.ndarray]:
        """Row ``t + 1`` from a step's results (an env whose row ``t`` ended its episode starts one there)."""
        last = self.rows()
        is_first = last["terminated"] | last["truncated"]
        self.t += 1
        if self.t % self.block == 0:
            # Rows before `low` are read no more: a running episode's first row, or (keep=False) the last row.
            low = int(self.start.min()) if self.keep else self.t - 1
            for index in [b for b in self.blocks if b < low // self.block]:
                self.spare.append(self.blocks.pop(index))
            self._open(self.t // self.block)
        rows = self.rows()
        rows["obs"][:], rows["reward"][:], rows["is_first"][:] = obs, reward, is_first
        rows["terminated"][:], rows["truncated"][:] = terminated, truncated
        return rows

    def restart(self, mask: np.ndarray, obs: np.ndarray) -> None:
        """The envs in ``mask`` start an episode at row ``t``, observing their rows of ``obs``; the others keep theirs."""
        rows = self.rows()
        rows["obs"][mask], rows["reward"][mask], rows["is_first"][mask] = obs[mask], 0, True
        rows["terminated"][mask], rows["truncated"][mask] = False, False
        self.start[mask] = self.t

    def finish(self, i: int) -> tuple[dict[str, np.ndarray] | None, bool]:
        """Env ``i``'s episode, rows ``start[i] .. t`` as ``(L, ...)`` arrays (None unless ``keep``), and whether it
        began with ``is_first``; its next episode starts at row ``t + 1``."""
        first, self.start[i] = int(self.start[i]), self.t + 1
        if not self.keep:
            return None, False
        B, pieces = self.block, []  # (block arrays, first row, end row) per block the episode spans
        for index in range(first // B, self.t // B + 1):
            pieces.append((self.blocks[index], max(first - index * B, 0), min(self.t + 1 - index * B, B)))
        obs = self.recycled.take(sum(hi - lo for _, lo, hi in pieces), self.layout[0][1:], self.layout[1])
        episode = {k: np.concatenate([a[k][lo:hi, i] for a, lo, hi in pieces], out=obs if k == "obs" else None)
                   for k in ("obs", "action", "reward", "terminated", "truncated")}
        return episode, bool(pieces[0][0]["is_first"][pieces[0][1], i])


def vector_seeds(env: gym.vector.VectorEnv, mask: np.ndarray, seeds: Sequence[int | None]) -> Any:
    """``seeds`` (one per True in ``mask`` ``(E,)``; None: the env's own stream goes on) as ``env.reset(seed=...)``
    takes them with a ``reset_mask``.

    gymnasium's vector envs want one entry per env (ignored where the mask is False); ale-py's
    ``AtariVectorEnv`` one int32 per env being reset, -1 for none.
    """
    seeds = [None if s is None else int(s) for s in seeds]
    if len(seeds) != int(np.count_nonzero(mask)):
        raise ValueError(f"reset seeds: got {len(seeds)} seeds for {int(np.count_nonzero(mask))} envs being reset")
    if isinstance(env.unwrapped, (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv)):
        full: list[int | None] = [None] * len(mask)
        for i, s in zip(np.flatnonzero(mask), seeds):
            full[i] = s
        return full
    return np.asarray([-1 if s is None else s for s in seeds], np.int32)


class _FirstEnvRows:
    """Keeps the rows of sub-env 0 (the hook :func:`record_episode` runs)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, np.ndarray]] = []

    def on_row(self, env_index: int, row: dict[str, np.ndarray]) -> None:
        if env_index == 0:
            self.rows.append({k: np.array(v) for k, v in row.items()})


def record_episode(env: gym.vector.VectorEnv, policy: Policy, *, max_rows: int, seed: int | None = None,
                   device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """Sub-env 0's first episode after ``reset(seed)`` as ``(L, ...)`` store-encoded arrays, ``L <= max_rows``.

    An episode cut at ``max_rows`` gets a zero action on its last row, as every stored last row has.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    keep = _FirstEnvRows()
    driver = Driver(env, policy, hooks=[keep], device=device)
    driver.reset(seed=seed)
    while len(keep.rows) < max_rows and not (keep.rows and (keep.rows[-1]["terminated"] or keep.rows[-1]["truncated"])):
        driver.step()
    keep.rows[-1]["action"] = np.zeros_like(keep.rows[-1]["action"])
    return episode_arrays(keep.rows)
