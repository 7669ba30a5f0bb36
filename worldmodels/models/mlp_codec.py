"""MLP encoder and decoder for vector observations (DreamerV3, Hafner et al. 2023, Sec. 3 and B).

DreamerV3 reads a state vector with an MLP and predicts it back in symlog space, so one set of
hyperparameters fits inputs of any scale (a cart's position, a joint's velocity)::

    encoder   x (..., D) float  -> symlog(x) -> [Linear -> LayerNorm -> SiLU] x layers -> (..., hidden)
    decoder   feature (..., F)  -> [Linear -> LayerNorm -> SiLU] x layers -> Linear  -> (..., D) in symlog space
    loss      ||f(feature) - symlog(x)||²  summed over D          (Eq. 8 DreamerV3; symlog: Eq. 9)
    decode    symexp(f(feature))                                  back to the env's units

The loss is the squared error summed over the vector, as :class:`DreamerWorldModel` sums the pixel error
of frames (a unit-variance Gaussian in symlog space; DreamerV3's ``symlog_mse`` also drops the 1/2).
"""

from __future__ import annotations

import torch
from torch import nn

from worldmodels.models.distributions import symexp, symlog
from worldmodels.models.heads import MLP, mlp_blocks


class MLPEncoder(nn.Module):
    """Vectors ``(..., D)`` -> features ``(..., hidden)``; the input is symlog-squashed first."""

    def __init__(self, obs_dim: int, *, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = mlp_blocks(obs_dim, hidden, layers)
        self.obs_dim, self.out_dim = obs_dim, hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(f"MLPEncoder expects vectors (..., {self.obs_dim}), got {tuple(obs.shape)}")
        return self.net(symlog(obs.float()))  # (..., hidden)


class MLPDecoder(nn.Module):
    """Features ``(..., F)`` -> the observation vector in symlog space ``(..., D)`` (mirror of :class:`MLPEncoder`)."""

    def __init__(self, feat_dim: int, obs_dim: int, *, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = MLP(feat_dim, obs_dim, hidden=hidden, layers=layers)
        self.obs_dim = obs_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)  # (..., D), symlog space

    @staticmethod
    def loss(prediction: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` symlog-space prediction and raw ``(..., D)`` vectors -> ``(...)`` (Eq. 8 DreamerV3)."""
        return (prediction.float() - symlog(obs.float())).pow(2).sum(-1)

    @staticmethod
    def to_obs(prediction: torch.Tensor) -> torch.Tensor:
        """Symlog-space prediction -> vectors in the env's units, ``symexp`` (inverse of Eq. 9)."""
        return symexp(prediction.float())
