"""Online replay for Dreamer: an ``IterableDataset`` that acts in vector envs and yields replayed chunks.

The Trainer drives the loop: ``trainer.fit(module, train_dataloaders=DataLoader(BatchRequests(replay),
batch_size=None))``. Before batch ``k`` (:meth:`OnlineReplay.next_batch`) the dataset steps its envs with the
agent's current policy until ``env_steps >= prefill + (k + 1) * B * T / replay_ratio``, so ``replay_ratio`` is
replayed steps per env (agent) step, as in DreamerV3. The first ``prefill`` steps use uniform random
actions inside the action space. Action repeat is the env's ``frameskip`` option; all counters here are
agent steps.

Acting is the one env loop, :class:`~worldmodels.driver.Driver` (one policy call per vector step, every
env at once); the replay and the episode store are its hooks, so both hold the action the env EXECUTED,
in the store's encoding (int index, or the clipped float vector). Rows follow DESIGN.md::

    row t = (obs[t], action[t] taken at obs[t], reward[t] arriving at obs[t], terminated[t], truncated[t], is_first[t])
    last row of an episode: action zeros (index 0)          row 0: reward 0

Every env keeps a contiguous stream of rows in a ring buffer; chunks are windows of one stream and
may cross episode boundaries (``is_first`` marks them); sampled actions are converted to the model
encoding (:meth:`ActionSpec.to_model`). Finished episodes are also written to the
:class:`EpisodeStore` (:class:`~worldmodels.data.collect.StoreWriter`), and reloaded into replay on
resume. ``state_dict`` holds the env-step and batch counters and the sampler RNG state; the module
saves it inside its checkpoints.

Exact resume (one env, DESIGN.md "Exact resume"): the Trainer's loader yields :class:`BatchRequest`
placeholders and the module turns each into :meth:`OnlineReplay.next_batch` right before its step, so no
batch is acted for ahead of the step that uses it (Lightning prefetches one) and a checkpoint after step
``k`` holds exactly the state batch ``k`` left. Torch's generator is reseeded from ``(seed, k)`` before
batch ``k`` is acted for, and with one env every episode ``n`` starts from a reset seeded from
``(seed, n)``; checkpoints wait for an episode boundary (:attr:`OnlineReplay.resumable`), where the
replay equals the stored episodes (:func:`load_store`). A resumed run then repeats an uninterrupted one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset

from worldmodels.core import Policy
from worldmodels.data.collect import StoreWriter, resume_seed
from worldmodels.data.frame_ring import FrameRing, uses_disk
from worldmodels.data.store import EpisodeStore
from worldmodels.driver import ROW_FIELDS, Driver
from worldmodels.envs import make_vector
from worldmodels.envs.spaces import ActionSpec
from worldmodels.envs.toy import register_toy_envs
from worldmodels.policies import RandomPolicy


class StreamReplay:
    """``streams`` ring buffers of rows (store encoding); samples ``(T,)`` windows uniformly over all valid positions.

    A driver hook: :meth:`on_row` appends the row of env ``i`` to stream ``i``. ``obs_dtype`` is uint8 for frames,
    float32 for state-vector envs (TD-MPC, MBPO).
    """

    def __init__(self, *, streams: int, capacity: int, obs_shape: tuple[int, ...], action_spec: ActionSpec,
                 obs_dtype: type = np.uint8, frames: str = "ram", frames_dir: str | Path | None = None) -> None:
        self.capacity = max(1, capacity // streams)
        self.action_spec = action_spec
        action_shape = () if action_spec.discrete else (action_spec.dim,)
        # Observations in a FrameRing (RAM, or a file per stream under frames_dir: worldmodels.data.frame_ring);
        # the other fields are a few bytes a row and stay in RAM.
        shapes = {"action": (action_shape, action_spec.store_dtype()), "reward": ((), np.float32),
                  "terminated": ((), bool), "truncated": ((), bool), "is_first": ((), bool)}
        self.data = [{k: np.zeros((self.capacity, *s), d) for k, (s, d) in shapes.items()} for _ in range(streams)]
        self.obs_shape, self.obs_dtype = tuple(obs_shape), np.dtype(obs_dtype)
        disk = uses_disk(frames, self.capacity * streams, self.obs_shape, self.obs_dtype)
        if disk and frames_dir is None:
            raise ValueError("a replay with frames on disk needs a directory for them (frames_dir)")
        self.frames = [FrameRing(self.capacity, self.obs_shape, self.obs_dtype,
                                 path=Path(frames_dir) / f"frames-{i}.bin" if disk else None) for i in range(streams)]
        for fields, ring in zip(self.data, self.frames):
            if not ring.on_disk:  # in RAM the ring's array is the stream's obs field, readable as before
                fields["obs"] = ring.array
        self.count = [0] * streams  # rows ever written per stream

    @property
    def frames_on_disk(self) -> bool:
        return self.frames[0].on_disk

    def close(self) -> None:
        """Let the frames go (a disk ring's files are removed: this replay created them)."""
        for ring in self.frames:
            ring.close(remove=True)

    def add(self, stream: int, row: dict[str, np.ndarray]) -> None:
        position = self.count[stream] % self.capacity
        self.frames[stream].write(position, row["obs"])
        for key in ROW_FIELDS[1:]:  # ROW_FIELDS[0] is "obs"
            self.data[stream][key][position] = row[key]
        self.count[stream] += 1

    def on_row(self, env_index: int, row: dict[str, np.ndarray]) -> None:
        self.add(env_index, row)

    def __len__(self) -> int:
        return sum(min(c, self.capacity) for c in self.count)

    def has_window(self, length: int) -> bool:
        return any(min(c, self.capacity) >= length for c in self.count)

    def sample(self, rng: np.random.Generator, batch: int, length: int) -> dict[str, torch.Tensor]:
        """``batch`` windows of ``length`` rows as ``(B, T, ...)`` tensors; ``action (B, T, A)`` in model encoding."""
        windows = np.array([max(0, min(c, self.capacity) - length + 1) for c in self.count])
        if windows.sum() == 0:
            raise RuntimeError(f"replay holds no window of {length} rows yet (rows per stream: {self.count})")
        streams = rng.choice(len(windows), size=batch, p=windows / windows.sum())
        out = {k: [] for k in ROW_FIELDS if k != "obs"}
        obs = np.empty((batch, length, *self.obs_shape), self.obs_dtype)  # (B, T, ...), filled window by window
        for row, stream in enumerate(streams):
            oldest = max(0, self.count[stream] - self.capacity)
            start = oldest + int(rng.integers(windows[stream]))
            index = np.arange(start, start + length) % self.capacity
            self.frames[stream].read(start % self.capacity, length, out=obs[row])
            for key in out:
                out[key].append(self.data[stream][key][index])
        batch_out = {"obs": torch.from_numpy(obs), **{k: torch.from_numpy(np.stack(v)) for k, v in out.items()}}
        batch_out["action"] = self.action_spec.to_model(batch_out["action"])  # (B, T, A) float32
        return batch_out


def load_store(replay: StreamReplay, store: EpisodeStore) -> int:
    """Lay the most recent stored episodes end to end over the streams of ``replay``; returns the rows it holds.

    One stream: the ring an uninterrupted run holds after these episodes, row for row (the last ``capacity`` rows,
    each at its ring position, ``count`` as if every row had been added), so sampling continues as it would have.
    More streams: the most recent whole episodes that fit, dealt round-robin.
    """
    streams = len(replay.count)
    if streams == 1:
        total = sum(info.length for info in store.episodes)
        first = replay.count[0] = max(0, total - replay.capacity)  # rows the ring has already overwritten
        row = 0
        for info in store.episodes:
            if row + info.length > first:
                episode = store.load(info.name)
                for t in range(max(0, first - row), info.length):
                    replay.add(0, {"obs": episode.obs[t], "action": episode.action[t], "reward": episode.reward[t],
                                   "terminated": episode.terminated[t], "truncated": episode.truncated[t],
                                   "is_first": t == 0})
            row += info.length
        return total - first
    budget, chosen = replay.capacity * streams, []
    for info in reversed(store.episodes):
        if budget < info.length:
            break
        chosen.append(info)
        budget -= info.length
    for index, info in enumerate(reversed(chosen)):
        episode = store.load(info.name)
        for t in range(len(episode)):
            replay.add(index % streams, {
                "obs": episode.obs[t], "action": episode.action[t], "reward": episode.reward[t],
                "terminated": episode.terminated[t], "truncated": episode.truncated[t], "is_first": t == 0})
    return sum(info.length for info in chosen)


class BatchRequest:
    """What the Trainer's loader yields in place of a batch: the module asks the replay for the batch itself
    (``OnlineReplay.next_batch``) right before the step, so a prefetch never acts ahead of the weights."""

    __slots__ = ()


class BatchRequests(IterableDataset):
    """An endless stream of :class:`BatchRequest` for the ``DataLoader`` of an online fit."""

    def __iter__(self) -> Iterator[BatchRequest]:
        while True:
            yield BatchRequest()


class OnlineReplay(IterableDataset):
    """Acts in ``num_envs`` envs with ``agent`` (a :class:`~worldmodels.core.Policy`, set before iterating past
    the prefill) and yields replay batches of ``(batch_size, seq_len)`` chunks."""

    def __init__(self, env_id: str, agent: Policy | None, *, num_envs: int = 1, batch_size: int = 16, seq_len: int = 64,
                 replay_ratio: float = 32.0, prefill: int = 1000, capacity: int = 100_000, seed: int = 0,
                 store_dir: str | None = None, env_options: dict[str, Any] | None = None, frames: str = "ram",
                 frames_dir: str | Path | None = None) -> None:
        super().__init__()
        register_toy_envs()
        self.env_id, self.agent, self.num_envs = env_id, agent, num_envs
        self.batch_size, self.seq_len, self.replay_ratio, self.prefill = batch_size, seq_len, replay_ratio, prefill
        self.seed, self.env_options = seed, dict(env_options or {})
        self.env = make_vector(env_id, num_envs, seed=seed, **self.env_options)
        self.obs_shape = tuple(self.env.single_observation_space.shape)
        self.action_spec = ActionSpec.from_space(self.env.single_action_space)
        self.replay = StreamReplay(streams=num_envs, capacity=capacity, obs_shape=self.obs_shape,
                                   action_spec=self.action_spec, obs_dtype=self.env.single_observation_space.dtype,
                                   frames=frames, frames_dir=frames_dir)
        self.store = None if store_dir is None else EpisodeStore.create(
            store_dir, env_id=env_id, obs_shape=self.obs_shape, action_spec=self.action_spec)
        self.rng = np.random.default_rng(seed)
        self.env_steps = 0
        self.batches = 0
        # Wall-time split of the online loop (issue 12): seconds inside the generator (env steps, acting,
        # episode writes, batch sampling) vs. seconds the Trainer spent between batches (the updates).
        self._acting_s, self._training_s, self._resumed_at = 0.0, 0.0, None
        self._timed_steps, self._timed_batches = 0, 0  # env steps and batches inside the timed span
        self.episodes = 0
        self._recent_returns: list[float] = []
        self.driver: Driver | None = None
        self.pin_memory = False  # pin each batch (GPU runs): the DataLoader only sees BatchRequests
        self._episode_ended = True  # the last env step ended an episode (or none was taken): a boundary
        # Batches after which a checkpoint is due (0 = none): with one env, the batch that makes a checkpoint due
        # plays on to the end of the running episode, so the save lands on schedule (see next_batch).
        self.checkpoint_every = 0
        # The run's env-step budget (``--steps``), or None: that play-on never steps past it, so a run that
        # reports N agent steps trained on at most N (the checkpoint then waits for the final save).
        self.max_env_steps: int | None = None

    # ------------------------------------------------------------------ state in checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {"env_steps": self.env_steps, "batches": self.batches, "episodes": self.episodes,
                "stored_episodes": len(self.store) if self.store is not None else 0,
                "rng": self.rng.bit_generator.state, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env_steps, self.batches = int(state["env_steps"]), int(state["batches"])
        self.episodes = int(state.get("episodes", 0))
        if int(state.get("seed", self.seed)) != self.seed:
            # Another rank's position: a DDP checkpoint holds rank zero's replay state only. The counters
            # advance in lockstep on every rank, but the sampler stream and this rank's own episode store
            # are not rank zero's: draw a fresh stream for this rank, keep its store as it is.
            self.rng = np.random.default_rng([self.seed, self.batches])
            return
        self.rng.bit_generator.state = state["rng"]
        if self.store is not None and "stored_episodes" in state:
            # Episodes finished after this checkpoint will be played again from its env step: set them aside.
            self.store.set_aside_after(int(state["stored_episodes"]))

    @property
    def resumable(self) -> bool:
        """Whether a checkpoint now resumes exactly: one env, between two episodes. (More envs never are.)"""
        return self.num_envs == 1 and self._episode_ended

    def metrics(self) -> dict[str, float]:
        """Counters and the mean return of episodes finished since the last call."""
        out = {"steps": float(self.env_steps), "episodes": float(self.episodes), "replay_rows": float(len(self.replay))}
        wall = self._acting_s + self._training_s
        if wall > 0:
            out["update_share"] = self._training_s / wall
            out["acting_seconds"] = self._acting_s
            out["training_seconds"] = self._training_s
            out["timed_env_steps"], out["timed_batches"] = float(self._timed_steps), float(self._timed_batches)
        if self._recent_returns:
            out["return"] = float(np.mean(self._recent_returns))
            self._recent_returns = []
        return out

    # ------------------------------------------------------------------ acting

    def _start(self) -> None:
        """Reload stored episodes into replay (resume), then reset the envs (one env: with the episode's seed)."""
        if self.store is not None and len(self.store) > 0 and len(self.replay) == 0:
            self._reload_store()
        hooks: list[Any] = [self.replay, self]
        if self.store is not None:
            hooks.append(StoreWriter(self.store, seed=self.seed))
        # The prefill's random stream depends on the step it starts from, so a resume does not replay it.
        self.prefill_policy = RandomPolicy(self.action_spec, seed=resume_seed(self.seed, self.env_steps))
        self.driver = Driver(self.env, self._policy_now(), hooks=hooks)
        self._reset()

    def _reset(self) -> None:
        """One env: reset it with the seed of the episode it starts, so episode ``n`` is the same in a resumed run.
        More envs reset once with a step-dependent seed and then reset themselves (autoreset)."""
        self.driver.reset(seed=resume_seed(self.seed, self.episodes) if self.num_envs == 1 else self.seed + self.env_steps)

    def _policy_now(self) -> Policy:
        if self.env_steps < self.prefill:
            return self.prefill_policy
        if self.agent is None:
            raise RuntimeError("OnlineReplay has no agent to act after the prefill; set replay.agent to a Policy")
        return self.agent

    def _reload_store(self) -> None:
        load_store(self.replay, self.store)

    def on_episode(self, env_index: int, episode: dict[str, np.ndarray], complete: bool) -> None:
        """Driver hook: count every finished episode and keep its return for :meth:`metrics`."""
        self.episodes += 1
        self._episode_ended = True
        self._recent_returns.append(float(episode["reward"].sum(dtype=np.float64)))

    def step(self) -> None:
        """One vector step of every env (random during the prefill, then the agent)."""
        if self.driver is None:
            self._start()
        policy = self._policy_now()
        if self.driver.policy is not policy:
            self.driver.policy = policy  # its carry starts fresh: is_first for every env on its first call
        self._episode_ended = False
        self.driver.step()
        self.env_steps += self.num_envs
        if self._episode_ended and self.num_envs == 1:
            self._reset()  # replaces the autoreset's first frame with the seeded reset's

    # ------------------------------------------------------------------ iteration

    def next_batch(self) -> dict[str, torch.Tensor]:
        """Act until batch ``k = batches`` is due, then sample it: ``(B, T, ...)`` tensors (DESIGN.md batches).

        Torch's generator (the agent's action samples, then the training step's draws) is reseeded from
        ``(seed, k)`` first, so the step is a function of the checkpointed state and ``k`` alone.
        """
        if self.driver is None:
            self._start()
        torch.manual_seed(resume_seed(self.seed, self.batches))
        target = self.prefill + (self.batches + 1) * self.batch_size * self.seq_len / self.replay_ratio
        if self.max_env_steps is not None:  # the last batch of a run whose update count was rounded up
            target = min(target, self.max_env_steps)
        began, steps_before = time.perf_counter(), self.env_steps
        if self._resumed_at is not None:
            self._training_s += began - self._resumed_at
        while self.env_steps < target or not self.replay.has_window(self.seq_len):
            self.step()
        if self.num_envs == 1 and self.checkpoint_every and (self.batches + 1) % self.checkpoint_every == 0:
            # A checkpoint follows this batch's step: stop between two episodes, but within the step budget.
            while not self._episode_ended and (self.max_env_steps is None or self.env_steps < self.max_env_steps):
                self.step()
        batch = self.replay.sample(self.rng, self.batch_size, self.seq_len)
        self.batches += 1
        self._resumed_at = time.perf_counter()
        if steps_before >= self.prefill:  # the random prefill is set-up, not the loop's steady state
            self._acting_s += self._resumed_at - began
            self._timed_steps += self.env_steps - steps_before
            self._timed_batches += 1
        else:
            self._resumed_at = None
        return {k: v.pin_memory() for k, v in batch.items()} if self.pin_memory else batch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield self.next_batch()
