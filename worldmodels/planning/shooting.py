"""Random shooting: score uniform random action sequences, execute the best (Nagabandi et al. 2018, Sec. IV-C).

Works for both action kinds: uniform one-hot sequences for discrete spaces, uniform inside the Box for
continuous ones. Each iteration draws ``candidates`` fresh sequences and the best seen over all iterations
is returned. The warm start is one more candidate: the previous plan shifted, its last step random.
"""

from __future__ import annotations

import torch

from worldmodels.planning.base import SamplingPlanner


class RandomShooting(SamplingPlanner):
    """``candidates`` uniform sequences per iteration (plus the warm start and any prior sequences)."""

    def neutral(self, batch_size: int, device: torch.device) -> torch.Tensor:
        # Shooting has no distribution to centre: a fresh random sequence fills the shifted plan's last step
        # (and replaces the whole plan where an episode began), so every candidate stays a valid action.
        return self.uniform(batch_size, 1, device)[:, 0]  # (B, H, A)

    def sample(self, search: torch.Tensor, iteration: int, warm: torch.Tensor) -> torch.Tensor:
        B = warm.shape[0]
        fresh = self.uniform(B, self.candidates, warm.device)  # (B, N, H, A)
        return torch.cat([warm.unsqueeze(1), fresh], 1) if iteration == 0 else fresh
