"""Fixed synthetic batches for the training-step benchmarks of ``wm bench``."""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import IterableDataset


class FixedBatches(IterableDataset):
    """The same batch forever: training-step timing without a data pipeline in the loop."""

    def __init__(self, batch: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.batch = batch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield self.batch


def synthetic_batch(batch: int, seq: int, side: int, action_dim: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded ``(B, T)`` batch in the data module's format (random frames, one-hot actions)."""
    generator = torch.Generator().manual_seed(seed)
    is_first = torch.zeros(batch, seq, dtype=torch.bool)
    is_first[:, 0] = True
    return {
        "obs": torch.randint(0, 256, (batch, seq, side, side, 3), generator=generator, dtype=torch.uint8),
        "action": torch.nn.functional.one_hot(torch.randint(0, action_dim, (batch, seq), generator=generator),
                                              action_dim).float(),
        "reward": torch.randn(batch, seq, generator=generator),
        "terminated": torch.zeros(batch, seq, dtype=torch.bool),
        "truncated": torch.zeros(batch, seq, dtype=torch.bool),
        "is_first": is_first,
    }
