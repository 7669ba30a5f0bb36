"""Episode collection into an :class:`EpisodeStore`: the one env :class:`~worldmodels.driver.Driver` plus a store hook.

The driver records rows to the store's row convention (DESIGN.md) with the action the env executed;
:class:`StoreWriter` (its ``on_episode`` hook) writes each complete episode with
:meth:`EpisodeStore.add_episode`. The same hook stores the online Dreamer replay's episodes.

Resume: ``episodes`` is the TARGET TOTAL in the store. A store already holding ``k``
episodes gets ``episodes - k`` more, so a killed collection restarts where it stopped. It restarts
EXACTLY: collection runs in waves of ``E = num_envs`` episodes, and wave ``w`` is a pure function of
``(seed, w)`` (with ``s = resume_seed(seed, w)``: sub-env ``i`` reset with ``s + i``, the policy seeded with
``s``), written in env order once the whole wave has ended. A store of ``k`` episodes resumes at
wave ``k // E``, skipping its first ``k % E`` episodes, so the store after any kill and rerun equals an
uninterrupted one episode for episode::

    wave 0: env 0 -> ep 0, env 1 -> ep 1     (write 0, 1)      wave 1: env 0 -> ep 2, env 1 -> ep 3   ...
            an env that ends first plays on (autoreset) into an episode that is discarded

The price is the envs of a wave that wait for its longest episode. Episodes past the target are
discarded (never written as truncated), so every stored episode ended the way the env ended it.
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
    """``seed`` at position 0 (a wave, an episode); past it ``seed`` mixed with ``position``, so nothing is replayed.

    Below ``2**30``: ALE takes int32 seeds, and a vector env seeds its sub-env ``i`` with ``seed + i``.
    """
    if seed is None or position == 0:
        return seed
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0]) >> 2


class _WaveEpisodes:
    """Driver hook: the first complete episode of every sub-env since the last reset (one wave)."""

    def __init__(self, num_envs: int) -> None:
        self.episodes: list[dict[str, np.ndarray] | None] = [None] * num_envs

    def start(self) -> None:
        self.episodes = [None] * len(self.episodes)

    @property
    def done(self) -> bool:
        return all(episode is not None for episode in self.episodes)

    def on_episode(self, env_index: int, episode: dict[str, np.ndarray], complete: bool) -> None:
        if complete and self.episodes[env_index] is None:
            self.episodes[env_index] = episode


def collect_episodes(vec_env: gym.vector.VectorEnv, store: EpisodeStore, *, episodes: int,
                     policy: Policy | str | None = None, seed: int | None = None, progress: bool = True) -> CollectStats:
    """Step ``vec_env`` until the store holds ``episodes`` episodes in total (the target, not an increment).

    ``policy`` is a :class:`~worldmodels.core.Policy` or the name of a random one (``RANDOM_POLICIES``:
    ``random``, ``sticky``, ``hold``), seeded per wave from the run seed (a given Policy object keeps its own
    stream, so only named policies resume exactly). ``progress``: show episodes collected, with an ETA
    (:class:`~worldmodels.progress.Progress`).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes}")
    check_compatible(store.spec, store_spec_for(vec_env, store.spec.env_id), store.root)
    existing = len(store)
    wanted = max(episodes - existing, 0)
    if wanted == 0:
        return CollectStats(0, 0, 0, 0.0, 0.0, float("nan"), existing)
    name = (policy or "random") if policy is None or isinstance(policy, str) else None
    if name is not None and name not in RANDOM_POLICIES:
        raise ValueError(f"unknown collection policy {name!r}; choose one of {sorted(RANDOM_POLICIES)}")
    # An unseeded run still needs fresh streams (RandomPolicy would default to seed 0).
    base_seed = seed if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
    num_envs = vec_env.num_envs
    writer, collected = StoreWriter(store, seed=seed, limit=wanted), _WaveEpisodes(num_envs)
    driver = Driver(vec_env, policy if name is None else make_random_policy(name, store.spec.action_spec, base_seed),
                    hooks=[collected])
    wave, skip = divmod(existing, num_envs)  # a kill mid-wave left its first `skip` episodes written

    start = time.perf_counter()
    with Progress("collect", episodes, unit="episode", initial=existing, enabled=progress) as shown:
        while not writer.full:
            wave_seed = resume_seed(base_seed, wave)
            if name is not None:
                driver.policy = make_random_policy(name, store.spec.action_spec, wave_seed)
            collected.start()
            driver.reset(seed=wave_seed)  # sub-env i: wave_seed + i (one int: every vector env takes it)
            while not collected.done:
                driver.step()
            for episode in collected.episodes[skip:]:
                writer.on_episode(0, episode, True)
            shown.set(existing + writer.written,
                      detail=f"{driver.steps / max(time.perf_counter() - start, 1e-9):.0f} env steps/s")
            wave, skip = wave + 1, 0
    seconds = time.perf_counter() - start
    return CollectStats(writer.written, writer.frames, driver.steps, seconds, driver.steps / max(seconds, 1e-9),
                        float(np.mean(writer.returns)), len(store))
