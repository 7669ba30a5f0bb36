"""The one place named, unweighted loss parts become a loss (STYLE.md: weighted in one place)."""

from __future__ import annotations

import torch


def weighted_sum(parts: dict[str, torch.Tensor], scales: dict[str, float]) -> torch.Tensor:
    """``sum_k scales[k] * parts[k]``; every part must have a scale (one ``loss_scales`` may cover several losses)."""
    missing = sorted(set(parts) - set(scales))
    assert not missing, f"loss parts {missing} have no entry in loss_scales {sorted(scales)}"
    return sum(scales[key] * value for key, value in parts.items())
