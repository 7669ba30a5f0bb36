"""Online replay for Dreamer: an ``IterableDataset`` that acts in vector envs and yields replayed chunks.

The Trainer drives the loop: ``trainer.fit(module, train_dataloaders=DataLoader(OnlineReplay(...),
batch_size=None))``. Before yielding batch ``k`` the dataset steps its envs with the agent's current
policy until ``env_steps >= prefill + (k + 1) * B * T / replay_ratio``, so ``replay_ratio`` is
replayed steps per env (agent) step, as in DreamerV3. The first ``prefill`` steps use random actions.
Action repeat is the env's ``frameskip`` option; all counters here are agent steps.

Rows follow DESIGN.md. With NEXT_STEP autoreset, one vector step appends one row per env::

    current:  obs[t], reward[t], terminated[t], truncated[t], is_first[t]   (from the previous step)
    act:      action[t] = π(obs[t])            (zeros when obs[t] ends the episode: the env ignores it)
    append:   row t = (obs[t], action[t], reward[t], terminated[t], truncated[t], is_first[t])
    step:     -> obs[t+1], reward[t+1], ...;  is_first[t+1] = terminated[t] or truncated[t]

Every env keeps a contiguous stream of rows in a ring buffer; chunks are windows of one stream and
may cross episode boundaries (``is_first`` marks them). Finished episodes are also written to the
:class:`EpisodeStore`, and reloaded into replay on resume. ``state_dict`` holds the env-step and
batch counters and the sampler RNG state; the module saves it inside its checkpoints.
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol

import numpy as np
import torch
from torch.utils.data import IterableDataset

from worldmodels.data.store import EpisodeStore
from worldmodels.envs import make_vector
from worldmodels.envs.spaces import ActionSpec
from worldmodels.envs.toy import register_toy_envs
from worldmodels.models.rssm import State

FIELDS = ("obs", "action", "reward", "terminated", "truncated", "is_first")


class Agent(Protocol):
    device: torch.device

    def act(self, obs: torch.Tensor, is_first: torch.Tensor, state: State | None, prev_action: torch.Tensor | None,
            *, sample: bool = True) -> tuple[torch.Tensor, State]: ...


class StreamReplay:
    """``streams`` ring buffers of rows; samples ``(T,)`` windows uniformly over all valid positions."""

    def __init__(self, *, streams: int, capacity: int, obs_shape: tuple[int, ...], action_dim: int) -> None:
        self.capacity = max(1, capacity // streams)
        shapes = {"obs": (obs_shape, np.uint8), "action": ((action_dim,), np.float32), "reward": ((), np.float32),
                  "terminated": ((), bool), "truncated": ((), bool), "is_first": ((), bool)}
        self.data = [{k: np.zeros((self.capacity, *s), d) for k, (s, d) in shapes.items()} for _ in range(streams)]
        self.count = [0] * streams  # rows ever written per stream

    def add(self, stream: int, row: dict[str, np.ndarray]) -> None:
        position = self.count[stream] % self.capacity
        for key in FIELDS:
            self.data[stream][key][position] = row[key]
        self.count[stream] += 1

    def __len__(self) -> int:
        return sum(min(c, self.capacity) for c in self.count)

    def has_window(self, length: int) -> bool:
        return any(min(c, self.capacity) >= length for c in self.count)

    def sample(self, rng: np.random.Generator, batch: int, length: int) -> dict[str, torch.Tensor]:
        windows = np.array([max(0, min(c, self.capacity) - length + 1) for c in self.count])
        if windows.sum() == 0:
            raise RuntimeError(f"replay holds no window of {length} rows yet (rows per stream: {self.count})")
        streams = rng.choice(len(windows), size=batch, p=windows / windows.sum())
        out = {k: [] for k in FIELDS}
        for stream in streams:
            oldest = max(0, self.count[stream] - self.capacity)
            start = oldest + int(rng.integers(windows[stream]))
            index = np.arange(start, start + length) % self.capacity
            for key in FIELDS:
                out[key].append(self.data[stream][key][index])
        return {k: torch.from_numpy(np.stack(v)) for k, v in out.items()}  # (B, T, ...)


class OnlineReplay(IterableDataset):
    """Acts in ``num_envs`` envs with ``agent`` and yields replay batches of ``(batch_size, seq_len)`` chunks."""

    def __init__(self, env_id: str, agent: Agent | None, *, num_envs: int = 1, batch_size: int = 16, seq_len: int = 64,
                 replay_ratio: float = 32.0, prefill: int = 1000, capacity: int = 100_000, seed: int = 0,
                 store_dir: str | None = None, env_options: dict[str, Any] | None = None) -> None:
        super().__init__()
        register_toy_envs()
        self.env_id, self.agent, self.num_envs = env_id, agent, num_envs
        self.batch_size, self.seq_len, self.replay_ratio, self.prefill = batch_size, seq_len, replay_ratio, prefill
        self.seed, self.env_options = seed, dict(env_options or {})
        self.env = make_vector(env_id, num_envs, seed=seed, **self.env_options)
        self.obs_shape = tuple(self.env.single_observation_space.shape)
        self.action_spec = ActionSpec.from_space(self.env.single_action_space)
        self.replay = StreamReplay(streams=num_envs, capacity=capacity, obs_shape=self.obs_shape,
                                   action_dim=self.action_spec.dim)
        self.store = None if store_dir is None else EpisodeStore.create(
            store_dir, env_id=env_id, obs_shape=self.obs_shape, action_spec=self.action_spec)
        self.rng = np.random.default_rng(seed)
        self.env_steps = 0
        self.batches = 0
        self.episodes = 0
        self._recent_returns: list[float] = []
        self._started = False

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

    def metrics(self) -> dict[str, float]:
        """Counters and the mean return of episodes finished since the last call."""
        out = {"steps": float(self.env_steps), "episodes": float(self.episodes), "replay_rows": float(len(self.replay))}
        if self._recent_returns:
            out["return"] = float(np.mean(self._recent_returns))
            self._recent_returns = []
        return out

    # ------------------------------------------------------------------ acting

    def _start(self) -> None:
        """Reload stored episodes into replay (resume), then reset the envs with a step-dependent seed."""
        if self.store is not None and len(self.store) > 0 and len(self.replay) == 0:
            self._reload_store()
        obs, _ = self.env.reset(seed=self.seed + self.env_steps)
        n = self.num_envs
        self._current = {"obs": obs, "reward": np.zeros(n, np.float32), "terminated": np.zeros(n, bool),
                         "truncated": np.zeros(n, bool), "is_first": np.ones(n, bool)}
        self._episode: list[list[dict[str, np.ndarray]]] = [[] for _ in range(n)]
        self._policy_state: State | None = None
        self._prev_action: torch.Tensor | None = None
        self._started = True

    def _reload_store(self) -> None:
        """Lay the most recent stored episodes (as many as replay holds) end to end over the streams."""
        budget, chosen = self.replay.capacity * self.num_envs, []
        for info in reversed(self.store.episodes):
            if budget < info.length:
                break
            chosen.append(info)
            budget -= info.length
        for index, info in enumerate(reversed(chosen)):
            episode = self.store.load(info.name)
            action = self.action_spec.to_model(np.asarray(episode.action)).numpy()
            for t in range(len(episode)):
                self.replay.add(index % self.num_envs, {
                    "obs": episode.obs[t], "action": action[t], "reward": episode.reward[t],
                    "terminated": episode.terminated[t], "truncated": episode.truncated[t], "is_first": t == 0})

    def _random_actions(self) -> np.ndarray:
        n, spec = self.num_envs, self.action_spec
        if spec.discrete:
            return np.eye(spec.dim, dtype=np.float32)[self.rng.integers(spec.dim, size=n)]
        return self.rng.uniform(-1.0, 1.0, size=(n, spec.dim)).astype(np.float32)

    def _policy_actions(self) -> np.ndarray:
        device = self.agent.device
        obs = torch.as_tensor(self._current["obs"], device=device)
        is_first = torch.as_tensor(self._current["is_first"], device=device)
        if self._policy_state is None:  # first policy step (after prefill or resume): start from scratch
            is_first = torch.ones_like(is_first)
        action, self._policy_state = self.agent.act(obs, is_first, self._policy_state, self._prev_action)
        self._prev_action = action
        return action.float().cpu().numpy()

    def step(self) -> None:
        """One vector step: choose actions, append one row per env, step the envs."""
        cur = self._current
        action = self._random_actions() if self.env_steps < self.prefill else self._policy_actions()  # (N, A)
        done = cur["terminated"] | cur["truncated"]
        action[done] = 0.0  # the env ignores it (NEXT_STEP autoreset); row convention: last row zeros
        for i in range(self.num_envs):
            row = {k: np.array(cur[k][i]) for k in ("obs", "reward", "terminated", "truncated", "is_first")}
            row["action"] = action[i]
            self.replay.add(i, row)
            self._episode[i].append(row)
            if done[i]:
                self._finish_episode(i)
        obs, reward, terminated, truncated, _ = self.env.step(self.action_spec.to_env(torch.from_numpy(action)))
        self._current = {"obs": obs, "reward": np.asarray(reward, np.float32), "terminated": np.asarray(terminated),
                         "truncated": np.asarray(truncated), "is_first": done}
        self.env_steps += self.num_envs

    def _finish_episode(self, i: int) -> None:
        rows = self._episode[i]
        self._episode[i] = []
        self.episodes += 1
        episode_return = float(sum(r["reward"] for r in rows))
        self._recent_returns.append(episode_return)
        if self.store is None or not rows[0]["is_first"]:
            return  # an episode begun before a resume is incomplete; only whole episodes are stored
        action = np.stack([r["action"] for r in rows])
        if self.action_spec.discrete:
            action = action.argmax(-1)
            action[-1] = 0
        self.store.add_episode(np.stack([r["obs"] for r in rows]), action,
                               np.array([r["reward"] for r in rows], np.float32),
                               np.array([r["terminated"] for r in rows]), np.array([r["truncated"] for r in rows]),
                               seed=self.seed)

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if not self._started:
            self._start()
        chunk = self.batch_size * self.seq_len
        while True:
            target = self.prefill + (self.batches + 1) * chunk / self.replay_ratio
            while self.env_steps < target or not self.replay.has_window(self.seq_len):
                self.step()
            batch = self.replay.sample(self.rng, self.batch_size, self.seq_len)
            self.batches += 1
            yield batch
