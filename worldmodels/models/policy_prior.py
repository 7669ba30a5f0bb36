"""The squashed policy ``p(a | z)`` of TD-MPC2's prior (Hansen et al. 2024, Sec. 3.1) and of SAC's actor (Haarnoja et
al. 2018): a tanh-squashed Gaussian scaled into the Box (the log-density with eq. 21's change of variables), or a
categorical over one-hots for discrete actions. One module, in ``models/`` because two families use it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.heads import MLP
from worldmodels.policies import box_bounds


class Prior(nn.Module):
    """The policy prior ``p(a | z)``: tanh-squashed Gaussian scaled into the Box, or a categorical over one-hots."""

    def __init__(self, latent_dim: int, action_spec: ActionSpec, *, hidden: int, layers: int,
                 log_std_range: tuple[float, float] = (-5.0, 1.0)) -> None:
        super().__init__()
        self.discrete, self.dim = action_spec.discrete, action_spec.dim
        self.mlp = MLP(latent_dim, self.dim if self.discrete else 2 * self.dim, hidden=hidden, layers=layers)
        self.log_std_range = log_std_range
        if not self.discrete:
            low, high = box_bounds(action_spec)
            self.register_buffer("center", (high + low) / 2, persistent=False)
            self.register_buffer("half_range", (high - low) / 2, persistent=False)

    def forward(self, latent: torch.Tensor, *, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``latent (N, L)`` -> ``(action (N, A) inside the space, log-probability (N,))`` (``sample`` or the mode)."""
        raw = self.mlp(latent)
        if self.discrete:
            logp_all = raw.log_softmax(-1)  # (N, A)
            index = torch.multinomial(logp_all.exp(), 1).squeeze(-1) if sample else logp_all.argmax(-1)
            return F.one_hot(index, self.dim).float(), logp_all.gather(-1, index[:, None]).squeeze(-1)
        mean, log_std = raw.chunk(2, -1)
        low, high = self.log_std_range
        log_std = low + 0.5 * (high - low) * (torch.tanh(log_std) + 1)  # softly bounded, as the TD-MPC2 code does
        noise = torch.randn_like(mean) if sample else torch.zeros_like(mean)
        pre = mean + log_std.exp() * noise
        squashed = torch.tanh(pre)
        # Gaussian log-density minus the tanh change of variables (SAC, Haarnoja et al. 2018, eq. 21) and minus
        # the log of the Box scaling, so the density is the one of the action actually taken.
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - torch.log(1 - squashed.pow(2) + 1e-6).sum(-1) - self.half_range.log().sum()
        return self.center + self.half_range * squashed, log_prob

    def probs(self, latent: torch.Tensor) -> torch.Tensor:
        """Discrete only: ``(N, A)`` action probabilities (the prior loss takes the exact expectation)."""
        return self.mlp(latent).softmax(-1)
