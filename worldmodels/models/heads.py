"""MLP heads on the RSSM feature ``concat(deter, stoch)`` (DreamerV3, Hafner et al. 2023, Sec. B).

Every hidden layer is ``Linear (no bias) -> LayerNorm -> SiLU``, as in DreamerV3.
The reward head and the critic predict a two-hot categorical over symexp bins (Eq. 10)
and start with zero output weights, so their first predictions are exactly 0 and do not
pollute early λ-returns (DreamerV3 Sec. "Critic learning").
"""

from __future__ import annotations

import torch
from torch import nn

from worldmodels.models.distributions import TwoHot


def mlp_blocks(in_dim: int, hidden: int, layers: int) -> nn.Sequential:
    """``layers`` ``Linear -> LayerNorm -> SiLU`` blocks (DreamerV3's MLP layer): ``(..., in_dim) -> (..., hidden)``
    (the identity when ``layers`` is 0)."""
    blocks: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden, bias=False), nn.LayerNorm(hidden), nn.SiLU()]
        width = hidden
    return nn.Sequential(*blocks)


class MLP(nn.Module):
    """``(..., in_dim)`` -> ``(..., out_dim)`` with ``layers`` hidden ``Linear -> LayerNorm -> SiLU`` blocks."""

    def __init__(self, in_dim: int, out_dim: int, *, hidden: int, layers: int, zero_init_output: bool = False) -> None:
        super().__init__()
        self.hidden = mlp_blocks(in_dim, hidden, layers)
        width = hidden if layers else in_dim
        self.out = nn.Linear(width, out_dim)
        if zero_init_output:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x))


class TwoHotHead(nn.Module):
    """Scalar predictor with a two-hot symlog categorical output (Eq. 10 DreamerV3).

    ``forward(feat (..., F)) -> logits (..., K)``; ``mean(logits) -> (...)`` raw scale;
    ``loss(logits, target (...)) -> (...)`` cross-entropy against the two-hot target.
    """

    def __init__(self, in_dim: int, *, hidden: int, layers: int, num_bins: int = 255, low: float = -20.0,
                 high: float = 20.0) -> None:
        super().__init__()
        self.mlp = MLP(in_dim, num_bins, hidden=hidden, layers=layers, zero_init_output=True)
        self.twohot = TwoHot(num_bins, low, high)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.mlp(feat)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return self.twohot.decode(logits)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.twohot.loss(logits, target)


class RewardHead(TwoHotHead):
    """``p(r_t | h_t, z_t)`` (Eq. 3 DreamerV3): predicts ``reward[t]``, the reward received on arriving at ``obs[t]``."""


class ContinueHead(nn.Module):
    """``p(c_t | h_t, z_t)`` Bernoulli (Eq. 3 DreamerV3): predicts ``c_t = 1 - terminated[t]``.

    ``forward(feat (..., F)) -> logit (...)``.
    """

    def __init__(self, in_dim: int, *, hidden: int, layers: int) -> None:
        super().__init__()
        self.mlp = MLP(in_dim, 1, hidden=hidden, layers=layers)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.mlp(feat).squeeze(-1)

    @staticmethod
    def prob(logit: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logit.float())

    @staticmethod
    def loss(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy ``-ln p(c | feat)`` -> ``(...)``."""
        return nn.functional.binary_cross_entropy_with_logits(logit.float(), target.float(), reduction="none")
