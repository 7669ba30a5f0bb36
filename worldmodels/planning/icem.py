"""iCEM, the improved cross-entropy method (Pinneri et al. 2020, "Sample-efficient Cross-Entropy Method for
Real-time Planning"), on top of :class:`~worldmodels.planning.cem.CEM`.

Its changes to CEM (Sec. 3 of the paper):

- coloured noise: Box samples are ``mean + std * eps`` with ``eps`` of power spectrum ``1 / f^beta`` along
  the horizon (``beta = 0`` white, ``2`` Brownian-like), made by shaping white noise in the FFT domain;
  then clipped to the Box. Smooth action sequences explore better than white noise in control tasks;
- population decay: iteration ``i`` samples ``max(N * gamma^-i, 2K)`` sequences (``gamma`` = ``decay``);
- kept elites: a fraction ``keep_elites`` of the previous iteration's elites joins the next population
  (within one decision; across decisions the shifted plan is the warm start, as for every planner here);
- the mean joins the last iteration's candidates, and the best sequence seen is executed.

Discrete spaces keep everything but the coloured noise (categorical samples, as in CEM).
"""

from __future__ import annotations

import math

import torch

from worldmodels.planning.cem import CEM


def coloured_noise(shape: tuple[int, ...], beta: float, *, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Unit-variance Gaussian noise ``shape = (..., T)`` with power spectral density ``~ 1 / f^beta`` along ``T``.

    White complex noise is scaled by ``f^(-beta/2)`` (frequencies below ``1/T`` cut to ``1/T``) and
    transformed back with ``irfft``; the variance is divided out analytically (Parseval, ``norm="ortho"``):
    the DC and Nyquist bins count once, every other bin twice (itself and its mirror) with real and imaginary parts.
    """
    T = shape[-1]
    freq = torch.fft.rfftfreq(T, device=device).clamp_min(1.0 / T)  # (T//2 + 1,)
    scale = freq ** (-beta / 2)
    real = torch.randn(*shape[:-1], freq.numel(), generator=generator, device=device)
    imag = torch.randn(*shape[:-1], freq.numel(), generator=generator, device=device)
    real_only = torch.zeros(freq.numel(), dtype=torch.bool, device=device)
    real_only[0] = True  # DC
    if T % 2 == 0:
        real_only[-1] = True  # Nyquist
    imag = torch.where(real_only, torch.zeros_like(imag), imag)
    noise = torch.fft.irfft(torch.complex(real, imag) * scale, n=T, norm="ortho")  # (..., T)
    energy = torch.where(real_only, scale ** 2, 4 * scale ** 2).sum()  # E[sum_t x_t^2]
    return noise / torch.sqrt(energy / T)


class ICEM(CEM):
    """CEM with coloured noise ``beta``, population ``decay``, ``keep_elites`` fraction and best-seen execution."""

    def __init__(self, *args, beta: float = 2.0, decay: float = 1.25, keep_elites: float = 0.3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if beta < 0 or decay < 1 or not 0.0 <= keep_elites <= 1.0:
            raise ValueError(f"ICEM: want beta >= 0, decay >= 1 and keep_elites in [0, 1]; got {beta}, {decay}, {keep_elites}")
        self.beta, self.decay, self.keep_elites = beta, decay, keep_elites

    def population(self, iteration: int) -> int:
        """``max(N * decay^-i, 2K)`` (never more than ``N``)."""
        return min(self.candidates, max(int(self.candidates * self.decay ** -iteration), 2 * self.elites))

    def sample(self, search: dict[str, torch.Tensor], iteration: int, warm: torch.Tensor) -> torch.Tensor:
        count = self.population(iteration)
        if self.action_spec.discrete:
            fresh = self.draw(search, count)
        else:
            mean, std = search["mean"].unsqueeze(1), search["std"].unsqueeze(1)  # (B, 1, H, A)
            B, _, H, A = mean.shape
            noise = coloured_noise((B, count, A, H), self.beta, generator=self.generator, device=mean.device)
            low, high = self.bounds(mean.device)
            fresh = torch.maximum(torch.minimum(mean + std * noise.transpose(2, 3), high), low)  # (B, count, H, A)
        parts = [fresh]
        kept = math.ceil(self.keep_elites * self.elites)
        if "elites" in search and kept:
            parts.append(search["elites"][:, :kept])  # best first
        if iteration == self.iterations - 1 and not self.action_spec.discrete:
            parts.append(search["mean"].unsqueeze(1))
        return torch.cat(parts, 1)

    def refit(self, search: dict[str, torch.Tensor], candidates: torch.Tensor, returns: torch.Tensor,
              iteration: int) -> dict[str, torch.Tensor]:
        return {**super().refit(search, candidates, returns, iteration), "elites": self.elite_set(candidates, returns)}

    def result(self, search: dict[str, torch.Tensor], best: torch.Tensor) -> torch.Tensor:
        return best
