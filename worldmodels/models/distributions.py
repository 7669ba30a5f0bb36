"""Distributions of DreamerV3 (Hafner et al. 2023): symlog, two-hot, unimix categoricals.

- ``symlog`` / ``symexp`` (Eq. 9 DreamerV3): ``symlog(x) = sign(x) ln(|x| + 1)`` squashes large
  magnitudes so one set of hyperparameters fits rewards and returns of any scale.
- :class:`TwoHot` (Eq. 10 DreamerV3): a categorical over ``K`` bins equally spaced in symlog
  space, ``symlog`` bins ``linspace(-20, 20, 255)`` = symexp bins in raw space. A scalar target is
  encoded as the two-hot vector of its symlog value; the prediction is ``symexp(E[bins])``.
- :class:`OneHotCategorical`: one-hot samples with straight-through gradients (Bengio et al. 2013)
  and 1% uniform mixing of the probabilities (DreamerV3 Sec. "Robust predictors"), used for the
  stochastic latent (32 categoricals x 32 classes) and the discrete actor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def symlog(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) ln(|x| + 1)`` (Eq. 9 DreamerV3)."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`symlog`: ``sign(x) (exp(|x|) - 1)``."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


def unimix_logits(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    """Logits of ``(1 - unimix) softmax(logits) + unimix / K`` over the last axis."""
    if unimix <= 0.0:
        return logits
    probs = torch.softmax(logits.float(), -1)
    probs = (1.0 - unimix) * probs + unimix / probs.shape[-1]
    return torch.log(probs)


class OneHotCategorical:
    """Categorical over the last axis with straight-through one-hot samples.

    ``logits`` ``(..., K)`` are taken as already mixed (see :func:`unimix_logits`).
    ``sample()`` returns a one-hot ``(..., K)`` tensor whose gradient w.r.t. ``logits`` is that of
    the probabilities (``sample + probs - sg(probs)``).
    """

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = torch.log_softmax(logits.float(), -1)  # (..., K) normalised
        self.probs = self.logits.exp()

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        # Inverse CDF: one uniform per categorical, index = #{k : cdf_k < u}. It draws K times fewer random
        # numbers than Gumbel-max / exponential races (10x faster on CPU at 1024 x 32 x 32), and unlike
        # torch.multinomial it never syncs with the host to check the probabilities.
        probs = self.probs.detach()
        uniform = torch.rand(*probs.shape[:-1], 1, device=probs.device, dtype=probs.dtype, generator=generator)
        index = (probs.cumsum(-1) < uniform).sum(-1).clamp_(max=probs.shape[-1] - 1)  # (...)
        return self._straight_through(F.one_hot(index, self.probs.shape[-1]).to(self.probs.dtype))

    def mode(self) -> torch.Tensor:
        return self._straight_through(F.one_hot(self.probs.argmax(-1), self.probs.shape[-1]).to(self.probs.dtype))

    def _straight_through(self, one_hot: torch.Tensor) -> torch.Tensor:
        """``one_hot + probs - sg(probs)``: the value of the sample, the gradient of the probabilities.

        Without a graph (imagination runs under no_grad) the two extra passes would only add rounding.
        """
        if not (torch.is_grad_enabled() and self.probs.requires_grad):
            return one_hot
        return one_hot + self.probs - self.probs.detach()

    def log_prob(self, one_hot: torch.Tensor) -> torch.Tensor:
        """``(..., K)`` one-hot -> ``(...)`` log-probability."""
        return (one_hot.detach() * self.logits).sum(-1)

    def entropy(self) -> torch.Tensor:
        return -(self.probs * self.logits).sum(-1)


def categorical_kl(post_logits: torch.Tensor, prior_logits: torch.Tensor) -> torch.Tensor:
    """``KL[post || prior]`` of ``(..., S, K)`` factorised categoricals, summed over the ``S`` latents -> ``(...)``."""
    post_log = torch.log_softmax(post_logits.float(), -1)
    prior_log = torch.log_softmax(prior_logits.float(), -1)
    return (post_log.exp() * (post_log - prior_log)).sum((-1, -2))


class TwoHot(torch.nn.Module):
    """Two-hot encoding over ``num_bins`` bins equally spaced in symlog space (Eq. 10 DreamerV3).

    ``encode(y)`` puts weight on the two bins around ``symlog(y)`` (linear interpolation), so
    ``decode(log(encode(y))) == y`` for ``symlog(y)`` inside ``[low, high]``.
    """

    def __init__(self, num_bins: int = 255, low: float = -20.0, high: float = 20.0) -> None:
        super().__init__()
        self.register_buffer("bins", torch.linspace(low, high, num_bins), persistent=False)  # symlog space
        self.num_bins = num_bins

    def encode(self, target: torch.Tensor) -> torch.Tensor:
        """``(...)`` raw scalars -> ``(..., K)`` two-hot weights summing to 1."""
        bins = self.bins
        x = symlog(target.float()).clamp(bins[0], bins[-1])
        below = (torch.bucketize(x, bins, right=True) - 1).clamp(0, self.num_bins - 2)  # index of bin <= x
        above = below + 1
        low, high = bins[below], bins[above]
        weight_above = ((x - low) / (high - low)).clamp(0.0, 1.0)
        out = torch.zeros(*x.shape, self.num_bins, device=x.device, dtype=torch.float32)
        out.scatter_(-1, below.unsqueeze(-1), (1.0 - weight_above).unsqueeze(-1))
        out.scatter_add_(-1, above.unsqueeze(-1), weight_above.unsqueeze(-1))
        return out

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """``(..., K)`` logits -> ``(...)`` raw-space prediction ``symexp(sum_k p_k b_k)``."""
        probs = torch.softmax(logits.float(), -1)
        return symexp((probs * self.bins).sum(-1))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy ``-sum_k twohot(y)_k log softmax(logits)_k`` -> ``(...)``."""
        target_weights = self.encode(target.detach())
        return -(target_weights * torch.log_softmax(logits.float(), -1)).sum(-1)


class BoundedNormal:
    """DreamerV3's continuous actor: mean ``tanh``, std in ``[min_std, max_std]``; samples are not squashed."""

    def __init__(self, raw: torch.Tensor, *, min_std: float = 0.1, max_std: float = 1.0) -> None:
        mean_raw, std_raw = raw.float().chunk(2, -1)
        mean = torch.tanh(mean_raw)
        std = (max_std - min_std) * torch.sigmoid(std_raw + 2.0) + min_std
        self.dist = torch.distributions.Normal(mean, std)
        self.mean = mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device)
        return (self.dist.mean + self.dist.stddev * noise).detach()

    def mode(self) -> torch.Tensor:
        return self.mean

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        return self.dist.log_prob(action.detach()).sum(-1)

    def entropy(self) -> torch.Tensor:
        return self.dist.entropy().sum(-1)
