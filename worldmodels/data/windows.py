"""THE windowing and THE train/val split over episodes; every offline dataset is built on them.

A split (a list of episodes) is treated as one long stream of rows; a window of ``seq_len`` rows may
cross an episode boundary, and ``is_first`` marks where the next episode starts so recurrent models
reset there::

    stream:   | ep A: a0 a1 a2 a3 | ep B: b0 b1 b2 | ep C: c0 ...
    window:              [a2 a3 b0 b1]             (start 2, seq_len 4)
    is_first:             F  F  T  F

:class:`EpisodeWindows` is the map-style dataset of such windows; a subclass says how to open one
episode (:meth:`EpisodeWindows.open_episode`: the pixel store, the latent cache) and how to turn a
window into tensors. Opened episodes are kept in a small LRU cache, so a dataset over a million
frames never holds them all; a pickled dataset (one per DataLoader worker) carries no open episodes.
"""

from __future__ import annotations

import abc
import warnings
from collections import OrderedDict
from typing import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

MAX_OPEN_EPISODES = 512  # open episodes cached per process (each may hold memory maps and file descriptors)


class EpisodeWindows(Dataset, abc.ABC):
    """Map-style dataset of ``seq_len`` windows over episodes laid end to end; item ``k`` starts at ``starts[k]``.

    ``lengths`` are the episodes' row counts, in stream order. By default every position (``stride=1``)
    is a start; pass ``stride=seq_len`` for non-overlapping windows, or ``num_samples`` + ``seed`` for a
    seeded random list of starts precomputed here. ``what`` names the data in the too-short error.
    """

    keys: tuple[str, ...] = ()  # arrays every opened episode holds, each with leading length L

    def __init__(self, lengths: Sequence[int], *, seq_len: int, stride: int = 1, num_samples: int | None = None,
                 seed: int = 0, what: str = "episode(s)", max_open: int = MAX_OPEN_EPISODES) -> None:
        if seq_len < 1 or stride < 1:
            raise ValueError(f"seq_len and stride must be >= 1, got seq_len={seq_len}, stride={stride}")
        self.seq_len, self.max_open = seq_len, max_open
        lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])  # stream position of each episode's row 0
        self.num_frames = int(self.offsets[-1])
        if self.num_frames < seq_len:
            raise ValueError(f"{len(lengths)} {what} hold {self.num_frames} frames, fewer than seq_len={seq_len}; "
                             "collect more episodes or lower --seq-len")
        last_start = self.num_frames - seq_len
        if num_samples is None:
            self.starts = np.arange(0, last_start + 1, stride, dtype=np.int64)
        else:
            self.starts = np.random.default_rng(seed).integers(0, last_start + 1, size=num_samples, dtype=np.int64)
        self._open: OrderedDict[int, Mapping[str, np.ndarray]] = OrderedDict()

    @abc.abstractmethod
    def open_episode(self, index: int) -> Mapping[str, np.ndarray]:
        """The arrays (:attr:`keys`) of episode ``index`` of the stream."""

    @abc.abstractmethod
    def to_item(self, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """One window of numpy arrays ``(T, ...)`` -> the dataset's item."""

    def __len__(self) -> int:
        return len(self.starts)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()  # opened in the worker that indexes the copy
        return state

    def _episode(self, index: int) -> Mapping[str, np.ndarray]:
        episode = self._open.get(index)
        if episode is None:
            episode = self._open[index] = self.open_episode(index)
            if len(self._open) > self.max_open:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(index)
        return episode

    def window(self, start: int) -> dict[str, np.ndarray]:
        """Rows ``[start, start + seq_len)`` of the stream: :attr:`keys` plus ``is_first``, each ``(T, ...)``."""
        T = self.seq_len
        parts: dict[str, list[np.ndarray]] = {k: [] for k in (*self.keys, "is_first")}
        index = int(np.searchsorted(self.offsets, start, side="right")) - 1
        row, filled = start - int(self.offsets[index]), 0
        while filled < T:
            episode = self._episode(index)
            take = min(T - filled, int(self.offsets[index + 1] - self.offsets[index]) - row)
            for key in self.keys:
                parts[key].append(np.asarray(episode[key][row:row + take]))
            first = np.zeros(take, dtype=bool)
            first[0] = row == 0
            parts["is_first"].append(first)
            filled += take
            index, row = index + 1, 0
        return {key: np.concatenate(values) for key, values in parts.items()}

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return self.to_item(self.window(int(self.starts[k])))


def split_episodes(lengths: Sequence[int], *, val_fraction: float, seed: int, seq_len: int,
                   what: str = "the data") -> tuple[list[int], list[int]]:
    """Seeded split by episode -> ``(train indices, val indices)``, each in the given order.

    ``val_fraction`` of the episodes (a seeded permutation; at least one when there are two or more) go
    to validation, grown until they fill one window of ``seq_len`` as long as training still fills one.
    When both cannot, everything trains and a warning says so (no validation).
    """
    count = len(lengths)
    everything = list(range(count))
    if val_fraction == 0.0 or count < 2:
        return everything, []
    order = [int(k) for k in np.random.default_rng(seed).permutation(count)]
    num_val = max(1, int(round(val_fraction * count)))
    val = set(order[:num_val])
    total = int(sum(lengths))
    frames = lambda picked: sum(int(lengths[k]) for k in picked)  # noqa: E731
    extra = iter(order[num_val:])
    while frames(val) < seq_len:
        candidate = next(extra, None)
        if candidate is None or total - frames(val | {candidate}) < seq_len:
            warnings.warn(f"{what} is too small for a train and a val window of seq_len={seq_len}; "
                          f"training on all {count} episodes, no validation")
            return everything, []
        val.add(candidate)
    return [k for k in everything if k not in val], [k for k in everything if k in val]
