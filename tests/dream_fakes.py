"""A fake ``WorldModelView`` for the viz / callback / ``wm dream`` tests: deterministic, few colours.

Frames use 4 grey levels so GIF palette quantisation is exact and decoded frames compare bit-for-bit.
"""

from __future__ import annotations

import torch


def few_colour_batch(B: int = 2, T: int = 12, S: int = 16, A: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """A DESIGN.md batch whose frames hold only the values {0, 85, 170, 255}."""
    g = torch.Generator().manual_seed(seed)
    obs = (torch.randint(0, 4, (B, T, S, S, 3), generator=g) * 85).to(torch.uint8)
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    terminated = torch.zeros(B, T, dtype=torch.bool)
    terminated[:, -1] = True
    return {"obs": obs, "action": torch.nn.functional.one_hot(torch.randint(0, A, (B, T), generator=g), A).float(),
            "reward": torch.randn(B, T, generator=g), "terminated": terminated,
            "truncated": torch.zeros(B, T, dtype=torch.bool), "is_first": is_first}


class ShiftView:
    """Predicts each frame as the last context frame rolled one pixel right per step; reward 0.5, end 0.25."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def reconstruct(self, obs: torch.Tensor) -> torch.Tensor:
        self.calls.append("reconstruct")
        return 255 - obs  # (N, H, W, C) uint8, still 4 grey levels

    def _rollout(self, last: torch.Tensor, steps: int) -> dict[str, torch.Tensor]:
        frames = torch.stack([last.roll(k + 1, dims=-2) for k in range(steps)], dim=1)  # (B, steps, H, W, C)
        B = last.shape[0]
        return {"frames": frames, "reward": torch.full((B, steps), 0.5), "end": torch.full((B, steps), 0.25)}

    def open_loop(self, obs, action, is_first, context: int):
        self.calls.append("open_loop")
        return self._rollout(obs[:, context - 1], obs.shape[1] - context)

    def dream(self, obs, action, is_first, horizon: int):
        self.calls.append("dream")
        return self._rollout(obs[:, -1], horizon)

    def latent_traversal(self, obs: torch.Tensor, dims: int, steps: int, sigma: float = 3.0) -> torch.Tensor:
        self.calls.append("latent_traversal")
        return obs.expand(dims * steps, *obs.shape[1:]).reshape(dims, steps, *obs.shape[1:]).clone()
