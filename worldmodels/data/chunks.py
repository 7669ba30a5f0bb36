"""Fixed-length windows over a store's episodes laid end to end.

A split (a list of episode names) is treated as one long stream of rows; a window of
``seq_len`` rows may cross an episode boundary, and ``is_first`` marks where the next
episode starts so recurrent models reset there::

    stream:   | ep A: a0 a1 a2 a3 | ep B: b0 b1 b2 | ep C: c0 ...
    window:              [a2 a3 b0 b1]             (start 2, seq_len 4)
    is_first:             F  F  T  F

Arrays are read from memory maps opened lazily in whichever process indexes the
dataset: a pickled dataset (one per DataLoader worker) carries no open maps and
reopens its own.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from worldmodels.data.store import Episode, EpisodeStore, load_episode

# Only ``obs`` stays memory-mapped (one file descriptor per open episode); the small per-row arrays
# (action, reward, flags: a few bytes per row) are read into RAM once per open episode.
_MAX_OPEN_EPISODES = 512
_SMALL_ARRAYS = ("action", "reward", "terminated", "truncated")


class ChunkDataset(Dataset):
    """Map-style dataset of ``seq_len`` windows; item ``k`` is the window starting at ``starts[k]``.

    ``starts`` are positions in the end-to-end stream of ``episode_names``. By default every
    position (``stride=1``) is a start; pass ``stride=seq_len`` for non-overlapping windows,
    or ``num_samples`` + ``seed`` for a seeded random list of starts precomputed here.
    """

    def __init__(self, root: str | Path, episode_names: Sequence[str], *, seq_len: int, stride: int = 1,
                 num_samples: int | None = None, seed: int = 0) -> None:
        if seq_len < 1 or stride < 1:
            raise ValueError(f"seq_len and stride must be >= 1, got seq_len={seq_len}, stride={stride}")
        store = EpisodeStore.open(root)
        self.root = Path(root)
        self.action_spec = store.spec.action_spec
        self.obs_shape = store.spec.obs_shape
        self.seq_len = seq_len
        self.episode_names = list(episode_names)
        known = {info.name: info.length for info in store.episodes}
        missing = [name for name in self.episode_names if name not in known]
        if missing:
            raise KeyError(f"episode(s) {missing[:3]} not in store {str(root)!r}")
        lengths = np.array([known[name] for name in self.episode_names], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])  # stream position of each episode's row 0
        self.num_frames = int(self.offsets[-1])
        if self.num_frames < seq_len:
            raise ValueError(f"{len(self.episode_names)} episode(s) hold {self.num_frames} frames, fewer than "
                             f"seq_len={seq_len}; collect more episodes or lower --seq-len")
        last_start = self.num_frames - seq_len
        if num_samples is None:
            self.starts = np.arange(0, last_start + 1, stride, dtype=np.int64)
        else:
            self.starts = np.random.default_rng(seed).integers(0, last_start + 1, size=num_samples, dtype=np.int64)
        self._open: OrderedDict[int, Episode] = OrderedDict()

    def __len__(self) -> int:
        return len(self.starts)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()  # memory maps are reopened in the worker
        return state

    def _episode(self, index: int) -> Episode:
        episode = self._open.get(index)
        if episode is None:
            mapped = load_episode(self.root / "episodes" / self.episode_names[index])
            # np.array copies the small arrays and drops their maps (and file descriptors).
            episode = dataclasses.replace(mapped, **{key: np.array(getattr(mapped, key)) for key in _SMALL_ARRAYS})
            self._open[index] = episode
            if len(self._open) > _MAX_OPEN_EPISODES:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(index)
        return episode

    def window(self, start: int) -> dict[str, np.ndarray]:
        """Rows ``[start, start + seq_len)`` of the stream as numpy arrays (stored action encoding)."""
        T = self.seq_len
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "action", "reward", "terminated", "truncated", "is_first")}
        index = int(np.searchsorted(self.offsets, start, side="right")) - 1
        row, filled = start - int(self.offsets[index]), 0
        while filled < T:
            episode = self._episode(index)
            take = min(T - filled, len(episode) - row)
            for key in ("obs", "action", "reward", "terminated", "truncated"):
                parts[key].append(np.asarray(getattr(episode, key)[row:row + take]))
            first = np.zeros(take, dtype=bool)
            first[0] = row == 0
            parts["is_first"].append(first)
            filled += take
            index, row = index + 1, 0
        return {key: np.concatenate(values) for key, values in parts.items()}

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        arrays = self.window(int(self.starts[k]))
        item = {
            "obs": torch.from_numpy(arrays["obs"]),  # (T, H, W, C) uint8
            "action": self.action_spec.to_model(arrays["action"]),  # (T, A) float32
            "reward": torch.from_numpy(arrays["reward"].astype(np.float32)),  # (T,)
            "terminated": torch.from_numpy(arrays["terminated"]),  # (T,) bool
            "truncated": torch.from_numpy(arrays["truncated"]),  # (T,) bool
            "is_first": torch.from_numpy(arrays["is_first"]),  # (T,) bool
        }
        assert item["obs"].shape == (self.seq_len, *self.obs_shape), f"obs window {tuple(item['obs'].shape)}"
        return item
