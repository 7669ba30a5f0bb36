"""Vectorised episode collection from a gymnasium ``VectorEnv`` into an :class:`EpisodeStore`.

The vector env must autoreset in ``NEXT_STEP`` mode (gymnasium's default): after a step
that ends sub-env ``i``, the next ``step`` ignores action ``i`` and returns the first
frame of its new episode with reward 0. Each sub-env keeps a buffer of rows built to
the store's row convention::

    env step:      reset -> o0    step(a0) -> o1, r1     step(a1) -> o2, r2, term/trunc
    stored rows:   t=0: o0  a0  0.0  F  F
                   t=1: o1  a1  r1   F  F
                   t=2: o2  0   r2   term trunc       (last row: action zeros)
    next step:     action ignored -> o0' (new episode, reward 0) starts a fresh buffer

Resume: ``episodes`` is the TARGET TOTAL in the store. A store already holding ``k``
episodes gets ``episodes - k`` more, so a killed collection restarts where it stopped.
Episodes still running when the target is reached are discarded (never written as
truncated), so every stored episode ended the way the env ended it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from worldmodels.data.store import EpisodeStore, StoreSpec, check_compatible
from worldmodels.envs.spaces import ActionSpec

Policy = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``policy(obs (N, H, W, C) uint8, is_first (N,) bool) -> actions (N,) or (N, A)``; ``is_first`` lets a
recurrent policy reset its state for sub-envs that just started an episode."""


@dataclass(frozen=True)
class CollectStats:
    """What one ``collect_episodes`` call did (``episodes``/``frames`` count only what it wrote)."""

    episodes: int
    frames: int
    env_steps: int
    seconds: float
    steps_per_second: float
    mean_return: float
    total_episodes: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class RandomPolicy:
    """Uniform random actions from the vector env's batched action space, seeded once."""

    def __init__(self, action_space: gym.Space, seed: int | None = None) -> None:
        self.action_space = action_space
        self.action_space.seed(seed)

    def __call__(self, obs: np.ndarray, is_first: np.ndarray) -> np.ndarray:
        return np.asarray(self.action_space.sample())


class StickyRandomPolicy(RandomPolicy):
    """Random actions that persist: each sub-env keeps its previous action with probability ``repeat_prob``.

    Uniform random actions average out in envs with continuous control (CarRacing's car
    barely moves when gas and brake are drawn every frame); temporally correlated random
    actions reach more of the state space, as the "brownian" random rollouts of World Models
    re-implementations do. ``repeat_prob=0`` is :class:`RandomPolicy`.
    """

    def __init__(self, action_space: gym.Space, seed: int | None = None, repeat_prob: float = 0.9) -> None:
        super().__init__(action_space, seed)
        if not 0.0 <= repeat_prob < 1.0:
            raise ValueError(f"repeat_prob must be in [0, 1), got {repeat_prob}")
        self.repeat_prob = repeat_prob
        self._rng = np.random.default_rng(seed)
        self._previous: np.ndarray | None = None

    def __call__(self, obs: np.ndarray, is_first: np.ndarray) -> np.ndarray:
        fresh = np.asarray(self.action_space.sample())  # (N,) or (N, A)
        if self._previous is None:
            self._previous = fresh
            return fresh.copy()
        keep = (self._rng.random(len(fresh)) < self.repeat_prob) & ~np.asarray(is_first, dtype=bool)  # (N,)
        keep = keep.reshape((-1,) + (1,) * (fresh.ndim - 1))
        self._previous = np.where(keep, self._previous, fresh)
        return self._previous.copy()


POLICIES: dict[str, type[RandomPolicy]] = {"random": RandomPolicy, "sticky": StickyRandomPolicy}


class _EpisodeBuffer:
    """Rows of one running episode; ``action`` lags ``obs`` by one until the episode ends."""

    def __init__(self, first_obs: np.ndarray) -> None:
        self.obs = [first_obs.copy()]
        self.action: list[np.ndarray] = []
        self.reward = [0.0]  # row 0: nothing arrived yet

    def step(self, action: np.ndarray, next_obs: np.ndarray, reward: float) -> None:
        self.action.append(np.asarray(action))
        self.obs.append(next_obs.copy())
        self.reward.append(float(reward))

    def arrays(self, action_spec: ActionSpec, *, terminated: bool, truncated: bool) -> dict[str, np.ndarray]:
        length = len(self.obs)
        action = np.zeros(action_spec.store_shape(length), dtype=action_spec.store_dtype())
        if self.action:
            action[:-1] = np.stack(self.action).astype(action.dtype)
        end = np.zeros(length, dtype=bool)
        end_terminated, end_truncated = end.copy(), end.copy()
        end_terminated[-1], end_truncated[-1] = terminated, truncated
        return {"obs": np.stack(self.obs), "action": action, "reward": np.asarray(self.reward, dtype=np.float32),
                "terminated": end_terminated, "truncated": end_truncated}


def store_spec_for(vec_env: gym.vector.VectorEnv, env_id: str) -> StoreSpec:
    """The store spec a vector env produces: its id, per-env frame shape and action encoding."""
    return StoreSpec(env_id, tuple(vec_env.single_observation_space.shape),  # type: ignore[arg-type]
                     ActionSpec.from_space(vec_env.single_action_space))


def _run_seed(seed: int | None, existing: int) -> int | None:
    """``seed`` for a fresh store; a resumed run mixes in the episode count so it never replays episodes."""
    if seed is None or existing == 0:
        return seed
    return int(np.random.SeedSequence([seed, existing]).generate_state(1)[0])


def collect_episodes(vec_env: gym.vector.VectorEnv, store: EpisodeStore, *, episodes: int,
                     policy: Policy | str | None = None, seed: int | None = None, progress: bool = True) -> CollectStats:
    """Step ``vec_env`` until the store holds ``episodes`` episodes in total (the target, not an increment)."""
    if episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes}")
    check_compatible(store.spec, store_spec_for(vec_env, store.spec.env_id), store.root)
    existing = len(store)
    wanted = max(episodes - existing, 0)
    if wanted == 0:
        return CollectStats(0, 0, 0, 0.0, 0.0, float("nan"), existing)

    run_seed = _run_seed(seed, existing)
    if policy is None or isinstance(policy, str):
        name = policy or "random"
        if name not in POLICIES:
            raise ValueError(f"unknown collection policy {name!r}; choose one of {sorted(POLICIES)}")
        policy = POLICIES[name](vec_env.action_space, run_seed)
    num_envs = vec_env.num_envs
    obs, _ = vec_env.reset(seed=run_seed)
    buffers = [_EpisodeBuffer(obs[i]) for i in range(num_envs)]
    autoreset = np.zeros(num_envs, dtype=bool)  # sub-env ended last step: this step's action is ignored
    is_first = np.ones(num_envs, dtype=bool)

    written, frames, env_steps, returns = 0, 0, 0, []
    start = time.perf_counter()
    bar = tqdm(total=episodes, initial=existing, unit="ep", desc="collect", disable=not progress)
    try:
        while written < wanted:
            actions = np.asarray(policy(obs, is_first))
            next_obs, reward, terminated, truncated, _ = vec_env.step(actions)
            env_steps += num_envs
            is_first = autoreset.copy()
            for i in range(num_envs):
                if autoreset[i]:  # NEXT_STEP autoreset: next_obs[i] is the first frame of a new episode
                    buffers[i] = _EpisodeBuffer(next_obs[i])
                    continue
                buffers[i].step(actions[i], next_obs[i], reward[i])
                if (terminated[i] or truncated[i]) and written < wanted:
                    arrays = buffers[i].arrays(store.spec.action_spec, terminated=bool(terminated[i]),
                                               truncated=bool(truncated[i]))
                    store.add_episode(**arrays, seed=seed)
                    written += 1
                    frames += len(buffers[i].obs)
                    returns.append(float(arrays["reward"].sum()))
                    bar.update(1)
                    bar.set_postfix(fps=f"{env_steps / max(time.perf_counter() - start, 1e-9):.0f}")
            autoreset = np.logical_or(terminated, truncated) & ~autoreset
            obs = next_obs
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    return CollectStats(written, frames, env_steps, seconds, env_steps / max(seconds, 1e-9),
                        float(np.mean(returns)), len(store))
