"""Episode collection into an :class:`EpisodeStore`: the one env :class:`~worldmodels.driver.Driver` plus a store hook.

The driver records rows to the store's row convention (DESIGN.md) with the action the env executed;
:class:`StoreWriter` (its ``on_episode`` hook) writes each complete episode with
:meth:`EpisodeStore.add_episode`. The same hook stores the online Dreamer replay's episodes.

Resume: ``episodes`` is the TARGET TOTAL in the store. A store already holding ``k``
episodes gets ``episodes - k`` more, so a killed collection restarts where it stopped, with its seed
mixed with ``k`` (:func:`resume_seed`) so it never replays the episodes it already has.
Episodes still running when the target is reached are discarded (never written as
truncated), so every stored episode ended the way the env ended it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np

from worldmodels.core import Policy
from worldmodels.data.store import EpisodeStore, StoreSpec, check_compatible
from worldmodels.driver import Driver
from worldmodels.envs.spaces import ActionSpec
from worldmodels.policies import RANDOM_POLICIES, make_random_policy
from worldmodels.progress import Progress


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


class StoreWriter:
    """Driver hook: writes every complete episode into ``store``, at most ``limit`` of them (``None``: no limit).

    An episode that began before the driver did (``complete=False``, e.g. after a resume) is not stored.
    """

    def __init__(self, store: EpisodeStore, *, seed: int | None = None, limit: int | None = None) -> None:
        self.store, self.seed, self.limit = store, seed, limit
        self.written, self.frames = 0, 0
        self.returns: list[float] = []

    @property
    def full(self) -> bool:
        return self.limit is not None and self.written >= self.limit

    def on_episode(self, env_index: int, episode: dict[str, np.ndarray], complete: bool) -> None:
        if not complete or self.full:
            return
        self.store.add_episode(**episode, seed=self.seed)
        self.written += 1
        self.frames += len(episode["obs"])
        self.returns.append(float(episode["reward"].sum(dtype=np.float64)))


def store_spec_for(vec_env: gym.vector.VectorEnv, env_id: str) -> StoreSpec:
    """The store spec a vector env produces: its id, per-env frame shape and action encoding."""
    return StoreSpec(env_id, tuple(vec_env.single_observation_space.shape),  # type: ignore[arg-type]
                     ActionSpec.from_space(vec_env.single_action_space))


def resume_seed(seed: int | None, position: int) -> int | None:
    """``seed`` at position 0; past it (a resumed run) ``seed`` mixed with ``position``, so nothing is replayed."""
    if seed is None or position == 0:
        return seed
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


def collect_episodes(vec_env: gym.vector.VectorEnv, store: EpisodeStore, *, episodes: int,
                     policy: Policy | str | None = None, seed: int | None = None, progress: bool = True) -> CollectStats:
    """Step ``vec_env`` until the store holds ``episodes`` episodes in total (the target, not an increment).

    ``policy`` is a :class:`~worldmodels.core.Policy` or the name of a random one (``RANDOM_POLICIES``:
    ``random``, ``sticky``, ``hold``), seeded with the run seed. ``progress``: show episodes collected, with an
    ETA (:class:`~worldmodels.progress.Progress`).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes}")
    check_compatible(store.spec, store_spec_for(vec_env, store.spec.env_id), store.root)
    existing = len(store)
    wanted = max(episodes - existing, 0)
    if wanted == 0:
        return CollectStats(0, 0, 0, 0.0, 0.0, float("nan"), existing)

    run_seed = resume_seed(seed, existing)
    if policy is None or isinstance(policy, str):
        name = policy or "random"
        if name not in RANDOM_POLICIES:
            raise ValueError(f"unknown collection policy {name!r}; choose one of {sorted(RANDOM_POLICIES)}")
        # An unseeded run still needs a fresh policy stream (RandomPolicy would default to seed 0).
        policy_seed = run_seed if run_seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        policy = make_random_policy(name, store.spec.action_spec, policy_seed)
    writer = StoreWriter(store, seed=seed, limit=wanted)
    driver = Driver(vec_env, policy, hooks=[writer])
    driver.reset(seed=run_seed)

    start = time.perf_counter()
    with Progress("collect", episodes, unit="episode", initial=existing, enabled=progress) as shown:
        while not writer.full:
            before = writer.written
            driver.step()
            if writer.written > before:
                shown.set(existing + writer.written,
                          detail=f"{driver.steps / max(time.perf_counter() - start, 1e-9):.0f} env steps/s")
    seconds = time.perf_counter() - start
    return CollectStats(writer.written, writer.frames, driver.steps, seconds, driver.steps / max(seconds, 1e-9),
                        float(np.mean(writer.returns)), len(store))
