"""The cross-entropy method (Rubinstein 1999) as MPC over a world model (PETS, Chua et al. 2018, Sec. 5).

Each iteration samples ``candidates`` sequences from the search distribution, keeps the ``elites`` best
and refits the distribution to them with momentum ``m`` (``new = m * old + (1 - m) * elite statistic``).

- Continuous: a diagonal Gaussian per step, sampled as a normal TRUNCATED to the Box (inverse-CDF sampling,
  so no sample is wasted by clipping); mean and std are refit. The plan is the final mean (the elite mean).
- Discrete: a categorical per step (probabilities ``p``; logits ``log p``), sampled as one-hot sequences;
  ``p`` is refit to the elites' class frequencies. The plan is the one-hot mode of ``p``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from worldmodels.planning.base import SamplingPlanner


def truncated_normal(mean: torch.Tensor, std: torch.Tensor, low: torch.Tensor, high: torch.Tensor, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples of ``N(mean, std^2)`` truncated to ``[low, high]`` by the inverse CDF; all broadcast to ``mean``."""
    std = std.clamp_min(1e-6)  # a collapsed std at a bound would give 0 / 0
    a = torch.special.ndtr((low - mean) / std)
    b = torch.special.ndtr((high - mean) / std)
    u = a + (b - a) * torch.rand(mean.shape, generator=generator, device=mean.device)
    eps = torch.finfo(mean.dtype).eps
    sample = mean + std * torch.special.ndtri(u.clamp(eps, 1 - eps))
    return torch.maximum(torch.minimum(sample, high), low)  # round-off at the edges only


class CEM(SamplingPlanner):
    """CEM over Box actions (truncated normal) or discrete ones (categorical over one-hot sequences).

    ``elites``: sequences refit to (default a tenth of ``candidates``); ``momentum``: weight of the old
    statistics; ``init_std``: the first std as a fraction of the Box half-width; ``explore``: for discrete
    actions, the share of uniform probability mixed into the warm-started plan (a one-hot would never
    sample another class).
    """

    def __init__(self, *args, elites: int | None = None, momentum: float = 0.1, init_std: float = 0.5,
                 explore: float = 0.5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.elites = elites if elites is not None else max(1, self.candidates // 10)
        if not 1 <= self.elites <= self.candidates:
            raise ValueError(f"{type(self).__name__}: elites must be in [1, candidates={self.candidates}], got {self.elites}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1), got {momentum}")
        if not 0.0 <= explore <= 1.0:
            raise ValueError(f"{type(self).__name__}: explore must be in [0, 1], got {explore}")
        if init_std <= 0:
            raise ValueError(f"{type(self).__name__}: init_std must be > 0, got {init_std}")
        self.momentum, self.init_std, self.explore = momentum, init_std, explore

    def init(self, warm: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.action_spec.discrete:
            uniform = torch.full_like(warm, 1.0 / self.action_spec.dim)
            return {"probs": (1 - self.explore) * warm + self.explore * uniform}  # (B, H, A)
        low, high = self.bounds(warm.device)
        return {"mean": warm, "std": (self.init_std * (high - low) / 2).expand_as(warm).clone()}  # (B, H, A)

    def sample(self, search: dict[str, torch.Tensor], iteration: int, warm: torch.Tensor) -> torch.Tensor:
        return self.draw(search, self.candidates)

    def draw(self, search: dict[str, torch.Tensor], count: int) -> torch.Tensor:
        """``count`` sequences ``(B, count, H, A)`` from the search distribution."""
        if self.action_spec.discrete:
            probs = search["probs"]  # (B, H, A)
            B, H, A = probs.shape
            index = torch.multinomial(probs.reshape(B * H, A), count, replacement=True, generator=self.generator)
            return F.one_hot(index.view(B, H, count).transpose(1, 2), A).float()  # (B, count, H, A)
        mean, std = search["mean"].unsqueeze(1), search["std"].unsqueeze(1)  # (B, 1, H, A)
        low, high = self.bounds(mean.device)
        shape = (mean.shape[0], count, *mean.shape[2:])
        return truncated_normal(mean.expand(shape), std.expand(shape), low, high, generator=self.generator)

    def elite_set(self, candidates: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
        """The ``elites`` best candidates ``(B, K, H, A)``."""
        index = returns.topk(min(self.elites, returns.shape[1]), dim=1).indices  # (B, K)
        return torch.gather(candidates, 1, index[..., None, None].expand(-1, -1, *candidates.shape[2:]))

    def refit(self, search: dict[str, torch.Tensor], candidates: torch.Tensor, returns: torch.Tensor,
              iteration: int) -> dict[str, torch.Tensor]:
        elites, m = self.elite_set(candidates, returns), self.momentum
        if self.action_spec.discrete:
            return {**search, "probs": m * search["probs"] + (1 - m) * elites.mean(1)}
        return {**search, "mean": m * search["mean"] + (1 - m) * elites.mean(1),
                "std": m * search["std"] + (1 - m) * elites.std(1, unbiased=False)}

    def result(self, search: dict[str, torch.Tensor], best: torch.Tensor) -> torch.Tensor:
        if self.action_spec.discrete:
            return F.one_hot(search["probs"].argmax(-1), self.action_spec.dim).float()
        return search["mean"]
