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
        self._rows: list[list[dict[str, np.ndarray]]] = [[] for _ in range(self.num_envs)]
        self._wants_episodes = any(hasattr(h, "on_episode") for h in self.hooks)
        self._zero_action = np.zeros_like(self.action_spec.to_env(torch.zeros(1, self.action_spec.dim))[0])

    @property
    def policy(self) -> Policy:
        return self._policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        self._policy, self.policy_state, self._fresh_carry = policy, None, True

    def reset(self, seed: int | Sequence[int] | None = None) -> None:
        """Reset every env (sub-env ``i`` gets ``seed + i``, or ``seed[i]``); running episodes are dropped."""
        if isinstance(seed, (list, tuple, np.ndarray)):
            seed = vector_seeds(self.env, np.ones(self.num_envs, bool), seed)
        obs, _ = self.env.reset(seed=seed)
        n = self.num_envs
        self.current = {"obs": np.array(obs), "reward": np.zeros(n, np.float32), "terminated": np.zeros(n, bool),
                        "truncated": np.zeros(n, bool), "is_first": np.ones(n, bool)}
        self._rows = [[] for _ in range(n)]
        self.policy_state, self._fresh_carry = None, True

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
        cur, done = self.current, self.done
        indices = np.flatnonzero(mask)
        for i in indices:
            if done[i]:
                self._record(i, {k: self._zero_action if k == "action" else cur[k][i] for k in ROW_FIELDS}, True)
            self._rows[i] = []
        obs, _ = self.env.reset(seed=vector_seeds(self.env, mask, seeds), options={"reset_mask": mask})
        # New arrays, not in-place writes: recorded rows may be views of the old ones.
        self.current = {"obs": np.where(mask.reshape(-1, *[1] * (cur["obs"].ndim - 1)), obs, cur["obs"]),
                        "reward": np.where(mask, 0.0, cur["reward"]).astype(np.float32),
                        "terminated": cur["terminated"] & ~mask, "truncated": cur["truncated"] & ~mask,
                        "is_first": cur["is_first"] | mask}

    def _actions(self) -> tuple[np.ndarray, np.ndarray]:
        """``(model actions (E, A), env actions (E,) or (E, A))`` for the current rows."""
        cur = self.current
        obs = torch.as_tensor(cur["obs"], device=self.device)
        is_first = torch.as_tensor(cur["is_first"], device=self.device)
        if self._fresh_carry:  # a fresh carry must not read state from before it existed
            is_first, self._fresh_carry = torch.ones_like(is_first), False
        action, self.policy_state = self._policy.act(obs, is_first, self.policy_state)
        env_action = np.asarray(self.action_spec.to_env(action.detach()))
        env_action[self.done] = 0  # the env ignores it (NEXT_STEP autoreset); row convention: last row zeros
        return action, env_action

    def step(self) -> dict[str, np.ndarray]:
        """One vector step; returns the recorded rows as ``(E, ...)`` arrays."""
        if self.current is None:
            self.reset()
        cur = self.current
        _, env_action = self._actions()
        done = self.done
        rows = {**cur, "action": env_action}
        for i in range(self.num_envs):
            self._record(i, {k: rows[k][i] for k in ROW_FIELDS}, bool(done[i]))
        obs, reward, terminated, truncated, _ = self.env.step(env_action)
        # One copy of the batch per step: the rows kept for episodes are views of it (never written to after).
        self.current = {"obs": np.array(obs), "reward": np.asarray(reward, np.float32),
                        "terminated": np.asarray(terminated, bool), "truncated": np.asarray(truncated, bool),
                        "is_first": done}
        self.steps += self.num_envs
        return rows

    def _record(self, i: int, row: dict[str, np.ndarray], done: bool) -> None:
        for hook in self.hooks:
            if hasattr(hook, "on_row"):
                hook.on_row(i, row)
        if self._wants_episodes:
            self._rows[i].append(dict(row))
        if done:
            self._finish(i)

    def _finish(self, i: int) -> None:
        self.episodes += 1
        rows, self._rows[i] = self._rows[i], []
        if not rows:
            return
        episode = episode_arrays(rows)
        for hook in self.hooks:
            if hasattr(hook, "on_episode"):
                hook.on_episode(i, episode, bool(rows[0]["is_first"]))

    def run(self, *, steps: int | None = None, episodes: int | None = None) -> None:
        """Step until ``steps`` more env steps were taken or ``episodes`` more episodes finished."""
        if steps is None and episodes is None:
            raise ValueError("Driver.run needs steps= or episodes=")
        stop_steps = None if steps is None else self.steps + steps
        stop_episodes = None if episodes is None else self.episodes + episodes
        while (stop_steps is None or self.steps < stop_steps) and (stop_episodes is None or self.episodes < stop_episodes):
            self.step()


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
