"""Episode collection into an :class:`EpisodeStore`: the one env :class:`~worldmodels.driver.Driver` plus a store hook.

The driver records rows to the store's row convention (DESIGN.md) with the action the env executed;
:class:`StoreWriter` (its ``on_episode`` hook) writes each complete episode with
:meth:`EpisodeStore.add_episode`. The same hook stores the online Dreamer replay's episodes.

Resume: ``episodes`` is the TARGET TOTAL in the store. A store already holding ``k``
episodes gets ``episodes - k`` more, so a killed collection restarts where it stopped. It restarts
EXACTLY: episode ``j`` (its index in the store) is a pure function of ``(seed, j)``. With
``s = resume_seed(seed, j)``, the env that runs it is reset with ``s`` (a masked reset,
:meth:`Driver.reset_envs`, before the policy acts, so the vector env's own autoreset never fires) and a
named random policy draws that env's actions from its own stream seeded ``s``
(:meth:`RandomPolicy.reseed_rows`), so neither the env slot nor the other envs matter. An env whose
episode ends starts the next unassigned index at once; episodes are written in index order (one that
ends ahead of a lower, still running index waits in memory), so a store of ``k`` episodes resumes at
index ``k`` and any kill and rerun yields the uninterrupted store::

    env 0: ep 0 ......... ep 3 ....      writes: 0 (when it ends), then 1 and 2 (already waiting), ...
    env 1: ep 1 .. ep 2 ... ep 4 ..      at the end, an env with no index left plays on into a discarded episode

ALE: a seeded reset reloads the ROM, so large collections seed an env once per block of
:func:`episodes_per_seed` episodes (block ``b`` = episodes ``b * n .. b * n + n - 1``, one env, seeded
``resume_seed(seed, b)``, the later ones started by the env's own autoreset); a resume then replays the
block holding episode ``k`` from its start, writing none of the replayed episodes.

Episodes past the target are never written (never as truncated), so every stored episode ended the
way the env ended it. Writes run on a background thread (a bounded queue), so the fsyncs overlap with
stepping; an error there is raised in the collecting thread.

``mode="fast"`` (``wm collect --collect-mode fast``) gives up the exactness above for the raw env's speed: one
seeded reset of the vector env, then its own autoresets, one random stream for the whole batch, episodes written
as they finish. Everything else holds (validated, atomic writes, never past the target); it is recorded in
``store.json`` (:mod:`worldmodels.data.collect_mode`).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np

from worldmodels.core import Policy
from worldmodels.data.collect_mode import check_mode, record_mode
from worldmodels.data.store import EpisodeStore, StoreSpec, check_compatible
from worldmodels.driver import Driver
from worldmodels.envs.spaces import ActionSpec
from worldmodels.policies import RANDOM_POLICIES, make_random_policy
from worldmodels.progress import Progress

WRITE_QUEUE = 4  # episodes handed to the writer thread and not yet written; more would only hold memory


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
    reset_seconds: float = 0.0  # of ``seconds``: the first reset of every env (raw rates are timed after theirs)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class StoreWriter:
    """Driver hook: writes every complete episode into ``store``.

    An episode that began before the driver did (``complete=False``, e.g. after a resume) is not stored.
    ``quick_digest``: name episodes by a CRC-32 of their arrays (:func:`~worldmodels.data.episode_files.content_digest`).
    """

    def __init__(self, store: EpisodeStore, *, seed: int | None = None, quick_digest: bool = False) -> None:
        self.store, self.seed, self.quick_digest = store, seed, quick_digest
        self.written, self.frames = 0, 0
        self.returns: list[float] = []

    def on_episode(self, env_index: int, episode: dict[str, np.ndarray], complete: bool) -> None:
        if not complete:
            return
        try:
            self.store.add_episode(**episode, seed=self.seed, quick_digest=self.quick_digest)
        except ValueError as error:  # values every reader would skip (NaN reward, ...): refused, never "collected"
            raise ValueError(f"{self.store.spec.env_id} returned an episode the store cannot hold (episode "
                             f"{len(self.store)}; row t is its env step t): {error}; nothing of it was written: fix "
                             "the env, or wrap it to keep rewards finite and actions in the action space") from None
        self.written += 1
        self.frames += len(episode["obs"])
        self.returns.append(float(episode["reward"].sum(dtype=np.float64)))


def store_spec_for(vec_env: gym.vector.VectorEnv, env_id: str) -> StoreSpec:
    """The store spec a vector env produces: its id, per-env frame shape and action encoding."""
    return StoreSpec(env_id, tuple(vec_env.single_observation_space.shape),  # type: ignore[arg-type]
                     ActionSpec.from_space(vec_env.single_action_space))


def resume_seed(seed: int | None, position: int) -> int | None:
    """``seed`` at position 0 (an episode, a batch); past it ``seed`` mixed with ``position``, so nothing is replayed.

    Below ``2**30``: ALE takes int32 seeds, and a vector env seeds its sub-env ``i`` with ``seed + i``.
    """
    if seed is None or position == 0:
        return seed
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0]) >> 2


class BackgroundWriter:
    """Writes episodes with ``writer.on_episode`` on a thread, in the order :meth:`put` receives them.

    The queue holds at most ``WRITE_QUEUE`` episodes (:meth:`put` blocks past that). An exception in the
    thread is raised again, as is, by the next :meth:`put` or by :meth:`close`; episodes after it are dropped.
    """

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer
        self.error: BaseException | None = None
        self._raised = False
        self._queue: queue.Queue[dict[str, np.ndarray] | None] = queue.Queue(WRITE_QUEUE)
        self._thread = threading.Thread(target=self._work, name="episode-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (episode := self._queue.get()) is not None:
            if self.error is None:  # after an error keep taking episodes, so put() never blocks forever
                try:
                    self.writer.on_episode(0, episode, True)
                except BaseException as error:  # noqa: BLE001 - handed to the collecting thread
                    self.error = error

    def _raise(self) -> None:
        if self.error is not None and not self._raised:
            self._raised = True  # once: close() after a put() that raised must not raise it again
            raise self.error

    def put(self, episode: dict[str, np.ndarray]) -> None:
        self._raise()
        self._queue.put(episode)

    def close(self) -> None:
        """Write what is queued, stop the thread, and raise its error if it had one."""
        self._queue.put(None)
        self._thread.join()
        self._raise()


class _IndexedEpisodes:
    """Driver hook: episode ``slots[i]`` runs in env ``i``; finished ones go to ``out`` in index order.

    Indices outside ``[start, stop)`` are discarded (already stored, or past the target).
    """

    def __init__(self, slots: list[int], *, start: int, stop: int, out: BackgroundWriter) -> None:
        self.slots, self.start, self.stop, self.out = slots, start, stop, out
        self.next_write = start
        self.waiting: dict[int, dict[str, np.ndarray]] = {}  # finished ahead of a lower index still running

    def on_episode(self, env_index: int, episode: dict[str, np.ndarray], complete: bool) -> None:
        index = self.slots[env_index]
        if not complete or not self.start <= index < self.stop:
            return
        self.waiting[index] = episode
        while self.next_write in self.waiting:
            self.out.put(self.waiting.pop(self.next_write))
            self.next_write += 1


def episodes_per_seed(vec_env: gym.vector.VectorEnv, episodes: int) -> int:
    """Episodes an env plays per seeded reset (a block) when the target is ``episodes``: 1, except for ale-py's
    ``AtariVectorEnv``, where it grows to 8 for targets of 512 episodes and more (``episodes // 64``, so there are
    always at least 64 blocks to spread over the envs).

    A seeded ALE reset reloads the ROM: 0.11 s of one core (docs/collect-speed.md), about 40 steps of the
    whole 8-env vector, while the vector env's own (unseeded) autoreset runs inside a step. Elsewhere a seeded
    reset costs what any reset does.
    """
    if not type(vec_env.unwrapped).__module__.startswith("ale_py"):
        return 1
    return min(8, max(1, episodes // 64))


def collect_episodes(vec_env: gym.vector.VectorEnv, store: EpisodeStore, *, episodes: int,
                     policy: Policy | str | None = None, seed: int | None = None, progress: bool = True,
                     seed_every: int | None = None, mode: str = "exact") -> CollectStats:
    """Step ``vec_env`` until the store holds ``episodes`` episodes in total (the target, not an increment).

    ``policy`` is a :class:`~worldmodels.core.Policy` or the name of a random one (``RANDOM_POLICIES``:
    ``random``, ``sticky``, ``hold``), whose draws for episode ``j`` are seeded ``resume_seed(seed, j)`` (a given
    Policy object keeps its own stream, so only named policies resume exactly). ``seed_every``: episodes per
    seeded env reset (default :func:`episodes_per_seed`); the store's content depends on it, so a resume must
    keep it (the default does, for the same target). ``progress``: show episodes collected, with an ETA
    (:class:`~worldmodels.progress.Progress`).

    ``mode`` ``fast`` (:mod:`worldmodels.data.collect_mode`): none of the above exactness; the vector env is seeded
    once and autoresets, one random stream draws for the whole batch (``seed_every`` is unused), episodes are written
    as they finish. The mode is recorded in ``store.json``; a store collected in the other mode is refused.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes}")
    every = episodes_per_seed(vec_env, episodes) if seed_every is None else seed_every
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"seed_every must be a positive integer, got {seed_every!r}")
    check_compatible(store.spec, store_spec_for(vec_env, store.spec.env_id), store.root)
    check_mode(store.root, mode)
    existing = len(store)
    if existing >= episodes:
        return CollectStats(0, 0, 0, 0.0, 0.0, float("nan"), existing)
    name = (policy or "random") if policy is None or isinstance(policy, str) else None
    if name is not None and name not in RANDOM_POLICIES:
        raise ValueError(f"unknown collection policy {name!r}; choose one of {sorted(RANDOM_POLICIES)}")
    # An unseeded run still needs fresh streams (RandomPolicy would default to seed 0).
    base_seed = seed if seed is not None else int(np.random.SeedSequence().generate_state(1)[0]) >> 2
    acting = policy if name is None else make_random_policy(name, store.spec.action_spec, base_seed)
    record_mode(store.root, mode)  # before the first episode: a store never holds episodes of an unrecorded mode
    if mode == "fast":
        if name is not None:  # one numpy stream for the batch; seeded from the count, as the env is
            acting.use_batch_stream(resume_seed(base_seed, existing))  # type: ignore[union-attr]
        return _collect_fast(vec_env, store, acting, episodes=episodes, existing=existing, base_seed=base_seed,
                             seed=seed, progress=progress)
    num_envs = vec_env.num_envs
    # A resume replays the block holding episode `existing` from its start; the replayed episodes are not written.
    first_block = existing // every
    slots = [(first_block + i) * every for i in range(num_envs)]  # the episode index each env runs
    writer = StoreWriter(store, seed=seed)
    background = BackgroundWriter(writer)
    indexed = _IndexedEpisodes(slots, start=existing, stop=episodes, out=background)
    driver = Driver(vec_env, acting, hooks=[indexed])

    def starting(envs: np.ndarray, indices: list[int]) -> list[int | None]:
        """Reset seeds of episodes ``indices`` starting in ``envs`` (None inside a block); reseeds their policy rows."""
        if name is not None:
            acting.reseed_rows(envs, [resume_seed(base_seed, j) for j in indices])  # type: ignore[union-attr]
        return [resume_seed(base_seed, j // every) if j % every == 0 else None for j in indices]

    began = time.perf_counter()
    try:
        with Progress("collect", episodes, unit="episode", initial=existing, enabled=progress) as shown:
            driver.reset(seed=starting(np.arange(num_envs), slots))
            reset_seconds = time.perf_counter() - began
            next_block = first_block + num_envs
            while indexed.next_write < episodes:
                starts = []  # (env, episode index) of the episodes that start now
                for i in np.flatnonzero(driver.done):
                    if (slots[i] + 1) % every:
                        starts.append((i, slots[i] + 1))  # the next episode of its block
                    else:
                        starts.append((i, next_block * every))
                        next_block += 1
                # A block's first episode: a seeded reset now, before the policy acts. Any other: the vector env's
                # own autoreset in this step (it runs inside the step; a masked reset would stall every env).
                first = [(i, j) for i, j in starts if j % every == 0]
                later = [(i, j) for i, j in starts if j % every]
                if first:
                    envs = np.array([i for i, _ in first])
                    driver.reset_envs(np.isin(np.arange(num_envs), envs), starting(envs, [j for _, j in first]))
                driver.step()  # finishes the `later` envs' episodes under their old indices
                for i, j in starts:
                    slots[i] = j
                if later:  # reseeded after the step: their draws for the ignored last-row action do not count
                    starting(np.array([i for i, _ in later]), [j for _, j in later])
                if starts:
                    shown.set(indexed.next_write,
                              detail=f"{_rate(driver, began):.0f} env steps/s")
    finally:
        background.close()
    return _stats(writer, driver, store, began, reset_seconds)


def _rate(driver: Driver, began: float) -> float:
    """Env steps per second since ``began``."""
    return driver.steps / max(time.perf_counter() - began, 1e-9)


def _stats(writer: StoreWriter, driver: Driver, store: EpisodeStore, began: float, reset_seconds: float) -> CollectStats:
    """The stats both collection modes report."""
    seconds = time.perf_counter() - began
    return CollectStats(writer.written, writer.frames, driver.steps, seconds, driver.steps / max(seconds, 1e-9),
                        float(np.mean(writer.returns)), len(store), reset_seconds)


class _AsTheyFinish:
    """Driver hook (fast mode): the first ``wanted`` complete episodes go to ``out`` as they finish, any env's."""

    def __init__(self, wanted: int, out: BackgroundWriter) -> None:
        self.wanted, self.out, self.handed = wanted, out, 0

    def on_episode(self, env_index: int, episode: dict[str, np.ndarray], complete: bool) -> None:
        if complete and self.handed < self.wanted:
            self.out.put(episode)
            self.handed += 1


def _collect_fast(vec_env: gym.vector.VectorEnv, store: EpisodeStore, acting: Policy, *, episodes: int, existing: int,
                  base_seed: int, seed: int | None, progress: bool) -> CollectStats:
    """``collect_episodes(mode="fast")``: one seeded reset, then the vector env's own autoresets; no reseeding."""
    writer = StoreWriter(store, seed=seed, quick_digest=True)  # names need not match an exact run's: 15 ms less CPU
    background = BackgroundWriter(writer)
    finished = _AsTheyFinish(episodes - existing, background)
    driver = Driver(vec_env, acting, hooks=[finished])
    began = time.perf_counter()
    try:
        with Progress("collect", episodes, unit="episode", initial=existing, enabled=progress) as shown:
            # Seeded from the count, so a rerun into a store of k episodes does not replay the first run's episodes.
            driver.reset(seed=resume_seed(base_seed, existing))
            reset_seconds = time.perf_counter() - began
            while finished.handed < finished.wanted:
                handed = finished.handed
                driver.step()
                if finished.handed != handed:
                    shown.set(existing + finished.handed,
                              detail=f"{_rate(driver, began):.0f} env steps/s")
    finally:
        background.close()
    return _stats(writer, driver, store, began, reset_seconds)
