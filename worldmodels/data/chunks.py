"""Fixed-length ``(T, ...)`` windows of a pixel episode store (the windowing itself: ``windows.py``).

Only ``obs`` stays memory-mapped (one file descriptor per open episode); the small per-row arrays
(action, reward, flags: a few bytes per row) are read into RAM once per open episode. Memory maps are
opened lazily in whichever process indexes the dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from worldmodels.data.store import EpisodeStore, load_episode
from worldmodels.data.windows import EpisodeWindows

_SMALL_ARRAYS = ("action", "reward", "terminated", "truncated")


class ChunkDataset(EpisodeWindows):
    """``seq_len`` windows over the store episodes ``episode_names`` (see :class:`EpisodeWindows` for the starts)."""

    keys = ("obs", "action", "reward", "terminated", "truncated")

    def __init__(self, root: str | Path, episode_names: Sequence[str], *, seq_len: int, stride: int = 1,
                 num_samples: int | None = None, seed: int = 0) -> None:
        store = EpisodeStore.open(root)
        self.root = Path(root)
        self.action_spec = store.spec.action_spec
        self.obs_shape = store.spec.obs_shape
        self.episode_names = list(episode_names)
        known = {info.name: info.length for info in store.episodes}
        missing = [name for name in self.episode_names if name not in known]
        if missing:
            raise KeyError(f"episode(s) {missing[:3]} not in store {str(root)!r}")
        super().__init__([known[name] for name in self.episode_names], seq_len=seq_len, stride=stride,
                         num_samples=num_samples, seed=seed, what=f"episode(s) of store {str(root)!r}")

    def open_episode(self, index: int) -> dict[str, np.ndarray]:
        episode = load_episode(self.root / "episodes" / self.episode_names[index])
        # np.array copies a small array and drops its map (and file descriptor); obs stays mapped.
        return {key: np.array(getattr(episode, key)) if key in _SMALL_ARRAYS else getattr(episode, key)
                for key in self.keys}

    def to_item(self, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
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
