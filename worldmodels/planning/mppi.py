"""Model-predictive path integral control (Williams et al. 2017, "Information Theoretic MPC for Model-Based
Reinforcement Learning", Alg. 2), over Box actions.

Each iteration perturbs the mean plan with Gaussian noise (std ``noise_std`` x the Box half-width), clips to
the Box, scores, and moves the mean to the return-weighted average of the candidates::

    w_n = exp((R_n - max_m R_m) / lambda) / sum_k exp((R_k - max_m R_m) / lambda)        mean <- sum_n w_n a_n

Subtracting the maximum before ``exp`` changes no weight but keeps it finite for any return scale (the best
candidate weighs ``exp(0) = 1``). ``lambda`` (``temperature``) trades averaging (large) against picking the best
(small). The plan is the final mean.
"""

from __future__ import annotations

import torch

from worldmodels.planning.base import SamplingPlanner


def mppi_weights(returns: torch.Tensor, temperature: float) -> torch.Tensor:
    """``returns (B, N)`` -> softmax weights ``(B, N)`` with the maximum subtracted first."""
    shifted = (returns - returns.max(1, keepdim=True).values) / temperature  # <= 0
    weights = shifted.exp()
    return weights / weights.sum(1, keepdim=True)


class MPPI(SamplingPlanner):
    """MPPI with ``temperature`` lambda and exploration ``noise_std`` (a fraction of the Box half-width)."""

    def __init__(self, *args, temperature: float = 1.0, noise_std: float = 0.5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.require_continuous()
        if temperature <= 0 or noise_std <= 0:
            raise ValueError(f"MPPI: temperature and noise_std must be > 0, got {temperature}, {noise_std}")
        self.temperature, self.noise_std = temperature, noise_std

    def init(self, warm: torch.Tensor) -> torch.Tensor:
        return warm  # (B, H, A): the mean plan

    def sample(self, search: torch.Tensor, iteration: int, warm: torch.Tensor) -> torch.Tensor:
        B, H, A = search.shape
        low, high = self.bounds(search.device)
        noise = torch.randn(B, self.candidates, H, A, generator=self.generator, device=search.device)
        return torch.maximum(torch.minimum(search.unsqueeze(1) + self.noise_std * (high - low) / 2 * noise, high), low)

    def refit(self, search: torch.Tensor, candidates: torch.Tensor, returns: torch.Tensor, iteration: int) -> torch.Tensor:
        weights = mppi_weights(returns, self.temperature)  # (B, N)
        return torch.einsum("bn,bnha->bha", weights, candidates)

    def result(self, search: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
        return search
