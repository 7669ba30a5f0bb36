"""C: the controller of World Models (Ha & Schmidhuber 2018, Sec. 2.3, Eq. 2).

``a_t = W_c [z_t h_t] + b_c`` -- a single linear layer on the VAE latent and the MDN-RNN
hidden state, so few parameters (867 for CarRacing) that CMA-ES can search them directly.
:class:`MLPController` adds one tanh hidden layer (the paper's Doom/ablation variant).

Controllers here are PARAMETER-FREE modules: the weights are a flat vector per candidate,
so a whole CMA-ES population is applied in one batched matmul::

    params   (P, N)          one flat parameter vector per candidate
    features (P, R, D)       R rows (repeats / envs) per candidate, D = Z + H
    actions  (P, R, A)       model-side actions (one-hot for discrete)

Action squashing: discrete -> argmax -> one-hot; continuous -> ``tanh`` rescaled to the Box
bounds, so CarRacing steering lands in [-1, 1] and gas / brake in [0, 1].
"""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F
from torch import nn

from worldmodels.envs.spaces import ActionSpec


class PopulationController(nn.Module, abc.ABC):
    def __init__(self, input_dim: int, action_spec: ActionSpec) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.action_spec = action_spec
        self.action_dim = action_spec.dim
        if not action_spec.discrete:
            low = torch.tensor(action_spec.low, dtype=torch.float32)
            high = torch.tensor(action_spec.high, dtype=torch.float32)
            # Unbounded Box dims fall back to [-1, 1] so tanh still covers the range.
            finite = torch.isfinite(low) & torch.isfinite(high)
            self.register_buffer("low", torch.where(finite, low, -torch.ones_like(low)), persistent=False)
            self.register_buffer("high", torch.where(finite, high, torch.ones_like(high)), persistent=False)

    @property
    @abc.abstractmethod
    def num_params(self) -> int:
        """Length N of one candidate's flat parameter vector."""

    @abc.abstractmethod
    def raw(self, params: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Population parameters ``(P, N)`` and features ``(P, R, D)`` -> pre-activations ``(P, R, A)``."""

    def squash(self, raw: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``(..., A)`` -> model actions ``(..., A)``."""
        if self.action_spec.discrete:
            return F.one_hot(raw.argmax(-1), self.action_dim).to(raw.dtype)
        unit = 0.5 * (torch.tanh(raw) + 1.0)  # (..., A) in [0, 1]
        return self.low + unit * (self.high - self.low)

    def forward(self, params: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``params (P, N)``, ``features (P, R, D)`` -> model actions ``(P, R, A)``."""
        P, R, D = features.shape
        assert params.shape == (P, self.num_params) and D == self.input_dim, (
            f"params {tuple(params.shape)} features {tuple(features.shape)}; want ({P}, {self.num_params}), (P, R, {self.input_dim})")
        return self.squash(self.raw(params, features))


class LinearController(PopulationController):
    """``a = squash(W [z h] + b)`` (Eq. 2); ``N = D * A + A`` parameters per candidate."""

    @property
    def num_params(self) -> int:
        return self.input_dim * self.action_dim + self.action_dim

    def raw(self, params: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        P, D, A = params.shape[0], self.input_dim, self.action_dim
        weight = params[:, : D * A].reshape(P, D, A)  # (P, D, A)
        bias = params[:, D * A :].reshape(P, 1, A)  # (P, 1, A)
        return torch.baddbmm(bias, features, weight)  # (P, R, A)


class MLPController(PopulationController):
    """``a = squash(W2 tanh(W1 [z h] + b1) + b2)``."""

    def __init__(self, input_dim: int, action_spec: ActionSpec, hidden_size: int = 32) -> None:
        super().__init__(input_dim, action_spec)
        self.hidden_size = hidden_size

    @property
    def num_params(self) -> int:
        D, Hd, A = self.input_dim, self.hidden_size, self.action_dim
        return D * Hd + Hd + Hd * A + A

    def raw(self, params: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        P, D, Hd, A = params.shape[0], self.input_dim, self.hidden_size, self.action_dim
        sizes = [D * Hd, Hd, Hd * A, A]
        w1, b1, w2, b2 = torch.split(params, sizes, dim=1)
        hidden = torch.tanh(torch.baddbmm(b1.reshape(P, 1, Hd), features, w1.reshape(P, D, Hd)))  # (P, R, Hd)
        return torch.baddbmm(b2.reshape(P, 1, A), hidden, w2.reshape(P, Hd, A))  # (P, R, A)


CONTROLLERS: dict[str, type[PopulationController]] = {"linear": LinearController, "mlp": MLPController}


def make_controller(kind: str, input_dim: int, action_spec: ActionSpec, *, hidden_size: int = 32) -> PopulationController:
    if kind not in CONTROLLERS:
        raise ValueError(f"unknown controller {kind!r}; choose one of {sorted(CONTROLLERS)}")
    if kind == "mlp":
        return MLPController(input_dim, action_spec, hidden_size)
    return LinearController(input_dim, action_spec)
