"""A seeded random ``(B, T)`` chunk in the data module's layout, shared by the rollout and dream tests."""

from __future__ import annotations

import torch


def random_chunk(B: int, T: int, side: int, actions: int, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """``obs (B, T, side, side, 3)`` uint8, one-hot ``action (B, T, actions)``, ``is_first`` True at row 0."""
    g = torch.Generator().manual_seed(seed)
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    return {"obs": torch.randint(0, 256, (B, T, side, side, 3), generator=g, dtype=torch.uint8),
            "action": torch.nn.functional.one_hot(torch.randint(0, actions, (B, T), generator=g), actions).float(),
            "is_first": is_first}
