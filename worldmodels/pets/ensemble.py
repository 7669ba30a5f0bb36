"""The probabilistic ensemble of PETS (Chua et al. 2018, Sec. 4): E Gaussian networks in one batched layer.

Every member is an MLP ``x -> (mean, logvar)`` over the SAME normalised inputs; all E run as one einsum over
weights ``(E, in, out)``, so an ensemble costs one matmul per layer, not E::

    inputs (E, B, I) --normalise--> EnsembleLinear x L (SiLU) --> (mean, raw logvar) (E, B, O)
    logvar = max_logvar - softplus(max_logvar - raw);  logvar = min_logvar + softplus(logvar - min_logvar)

Targets are normalised too (the world model builds them: ``next_obs - obs`` deltas, plus the reward when it is
learned), so one learning rate fits every output dimension. The bounds ``max_logvar`` / ``min_logvar`` are
learned (Chua et al. 2018, appendix A.1) and shared by the members; the loss pulls them together by
``sum(max_logvar) - sum(min_logvar)`` so that the variance cannot escape to extremes on unseen inputs.

Nothing here optimises: ``loss`` returns named, unweighted parts and the trainer weights and steps them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_LOGVAR_INIT = 0.5  # PETS code: the bounds start at [-10, 0.5] in normalised units
MIN_LOGVAR_INIT = -10.0


class EnsembleLinear(nn.Module):
    """E independent linear maps: ``x (E, B, I) -> (E, B, O)`` with weights ``(E, I, O)``."""

    def __init__(self, ensemble_size: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default init, drawn per member
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """``x (K, B, I)`` -> ``(K, B, O)``; ``members (K,)`` picks which members' weights run (default: all E)."""
        weight, bias = (self.weight, self.bias) if members is None else (self.weight[members], self.bias[members])
        assert x.dim() == 3 and x.shape[0] == weight.shape[0] and x.shape[-1] == weight.shape[1], (
            f"EnsembleLinear: input {tuple(x.shape)}, weights {tuple(weight.shape)}; want (K, B, {weight.shape[1]})")
        return torch.einsum("kbi,kio->kbo", x, weight) + bias


class ProbabilisticEnsemble(nn.Module):
    """E probabilistic networks ``(obs, action) -> N(mean, diag(exp(logvar)))`` over normalised targets.

    ``elites (K,)`` are the members with the lowest validation MSE (:meth:`set_elites`); planning uses them
    only. ``input_mean/std`` and ``target_mean/std`` are buffers set from the training data
    (:meth:`set_normalizer`), so they travel with the weights in a checkpoint.
    """

    def __init__(self, in_dim: int, out_dim: int, *, ensemble_size: int = 5, hidden: int = 200, layers: int = 4,
                 elites: int | None = None) -> None:
        super().__init__()
        for name, value, least in (("in_dim", in_dim, 1), ("out_dim", out_dim, 1), ("ensemble_size", ensemble_size, 1),
                                   ("hidden", hidden, 1), ("layers", layers, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"ProbabilisticEnsemble: {name} must be an int >= {least}, got {value!r}")
        num_elites = ensemble_size if elites is None else elites
        if not 1 <= num_elites <= ensemble_size:
            raise ValueError(f"ProbabilisticEnsemble: elites must be in [1, ensemble_size={ensemble_size}], got {elites}")
        self.in_dim, self.out_dim, self.ensemble_size = in_dim, out_dim, ensemble_size
        self.hidden, self.num_layers, self.num_elites = hidden, layers, num_elites
        widths = [in_dim] + [hidden] * (layers - 1)
        self.layers = nn.ModuleList(EnsembleLinear(ensemble_size, a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.head = EnsembleLinear(ensemble_size, widths[-1], 2 * out_dim)  # [mean, raw logvar]
        self.max_logvar = nn.Parameter(torch.full((out_dim,), MAX_LOGVAR_INIT))
        self.min_logvar = nn.Parameter(torch.full((out_dim,), MIN_LOGVAR_INIT))
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_std", torch.ones(in_dim))
        self.register_buffer("target_mean", torch.zeros(out_dim))
        self.register_buffer("target_std", torch.ones(out_dim))
        self.register_buffer("elites", torch.arange(num_elites))

    def sizes(self) -> dict[str, int]:
        """The constructor arguments, for a checkpoint's config.json."""
        return {"in_dim": self.in_dim, "out_dim": self.out_dim, "ensemble_size": self.ensemble_size,
                "hidden": self.hidden, "layers": self.num_layers, "elites": self.num_elites}

    # ------------------------------------------------------------------ normalisation and elites

    @torch.no_grad()
    def set_normalizer(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Fit the input and target normalisers to ``inputs (N, I)``, ``targets (N, O)`` (N >= 2)."""
        if inputs.dim() != 2 or inputs.shape[-1] != self.in_dim or targets.dim() != 2 or targets.shape[-1] != self.out_dim \
                or inputs.shape[0] != targets.shape[0] or inputs.shape[0] < 2:
            raise ValueError(f"set_normalizer: inputs {tuple(inputs.shape)}, targets {tuple(targets.shape)}; "
                             f"want (N >= 2, {self.in_dim}) and (N, {self.out_dim})")
        # A constant column (e.g. a flat reward) gets std 1, not 0: it must not divide by zero.
        std = lambda x: torch.where(x.std(0) < 1e-6, torch.ones_like(x[0]), x.std(0))  # noqa: E731
        self.input_mean.copy_(inputs.mean(0))
        self.input_std.copy_(std(inputs))
        self.target_mean.copy_(targets.mean(0))
        self.target_std.copy_(std(targets))

    @torch.no_grad()
    def set_elites(self, validation_mse: torch.Tensor) -> torch.Tensor:
        """Keep the ``num_elites`` members with the lowest ``validation_mse (E,)``; returns their indices ``(K,)``."""
        if validation_mse.shape != (self.ensemble_size,):
            raise ValueError(f"set_elites: validation_mse {tuple(validation_mse.shape)}, want ({self.ensemble_size},)")
        self.elites.copy_(torch.argsort(validation_mse)[:self.num_elites].sort().values)
        return self.elites

    def planning_members(self) -> torch.Tensor | None:
        """The elites as a ``members`` argument; ``None`` (every member, no indexing) when all are elites."""
        return None if self.num_elites == self.ensemble_size else self.elites

    # ------------------------------------------------------------------ forward

    def forward(self, inputs: torch.Tensor, members: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw ``inputs (K, B, I)`` or ``(B, I)`` (fed to every member) -> normalised ``(mean, logvar)`` ``(K, B, O)``.

        ``members (K,)`` picks the members that run (default: all E).
        """
        K = self.ensemble_size if members is None else members.shape[0]
        if inputs.shape[-1] != self.in_dim or inputs.dim() not in (2, 3) or (inputs.dim() == 3 and inputs.shape[0] != K):
            raise ValueError(f"ProbabilisticEnsemble: inputs {tuple(inputs.shape)}, want (B, {self.in_dim}) or "
                             f"({K}, B, {self.in_dim})")
        x = (inputs - self.input_mean) / self.input_std
        x = x.expand(K, *x.shape) if x.dim() == 2 else x  # (K, B, I)
        for layer in self.layers:
            x = F.silu(layer(x, members))  # swish, as in PETS
        mean, raw_logvar = self.head(x, members).chunk(2, dim=-1)  # (K, B, O) each
        # Soft bounds (Chua et al. 2018, appendix A.1): smooth, so the gradient never dies at a bound.
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw_logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def predict(self, inputs: torch.Tensor, members: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw ``inputs (B, I)`` or ``(K, B, I)`` -> ``(mean, std)`` ``(K, B, O)`` in TARGET units (de-normalised)."""
        mean, logvar = self(inputs, members)
        return self.target_mean + self.target_std * mean, self.target_std * (0.5 * logvar).exp()

    # ------------------------------------------------------------------ losses

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Named, unweighted loss parts for member batches ``inputs (E, B, I)``, raw ``targets (E, B, O)``.

        ``nll``: the Gaussian negative log-likelihood of Chua et al. 2018, Eq. 2, per sample
        ``(mu - y)^T Sigma^-1 (mu - y) + log det Sigma`` (diagonal Sigma, normalised units), averaged over samples
        with ``weight (E, B)`` (default ones; a bootstrap can be given as counts) and summed over members.
        ``logvar_bound``: ``sum(max_logvar) - sum(min_logvar)``, the PETS code's regulariser on the bounds
        (scaled by 0.01 there).
        """
        E, B, _ = inputs.shape
        if inputs.shape[0] != self.ensemble_size or targets.shape != (E, B, self.out_dim):
            raise ValueError(f"ensemble loss: inputs {tuple(inputs.shape)}, targets {tuple(targets.shape)}; want "
                             f"({self.ensemble_size}, B, {self.in_dim}) and ({self.ensemble_size}, B, {self.out_dim})")
        weight = torch.ones(E, B, device=inputs.device) if weight is None else weight
        if weight.shape != (E, B):
            raise ValueError(f"ensemble loss: weight {tuple(weight.shape)}, want ({E}, {B})")
        mean, logvar = self(inputs)  # (E, B, O)
        target = (targets - self.target_mean) / self.target_std
        per_sample = (((mean - target) ** 2) * torch.exp(-logvar) + logvar).sum(-1)  # (E, B)
        nll = ((per_sample * weight).sum(-1) / weight.sum(-1).clamp_min(1.0)).sum()
        return {"nll": nll, "logvar_bound": self.max_logvar.sum() - self.min_logvar.sum()}

    @torch.no_grad()
    def mse(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-member validation MSE of the mean, normalised units: ``inputs (B, I)``, ``targets (B, O)`` -> ``(E,)``."""
        mean, _ = self(inputs)
        target = (targets - self.target_mean) / self.target_std
        return ((mean - target) ** 2).mean((1, 2))


def bootstrap_indices(num_samples: int, ensemble_size: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(E, N)`` indices drawn with replacement, one bootstrap of ``range(N)`` per member (Chua et al. 2018, Sec. 4)."""
    if num_samples < 1:
        raise ValueError(f"bootstrap_indices: need at least one sample, got {num_samples}")
    return torch.randint(num_samples, (ensemble_size, num_samples), generator=generator)
