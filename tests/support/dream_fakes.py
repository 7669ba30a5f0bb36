"""A fake :class:`~worldmodels.core.WorldModel` for the dream-callback tests: deterministic, few colours.

Frames use 4 grey levels so GIF palette quantisation is exact and decoded frames compare bit-for-bit.
"""

from __future__ import annotations

import torch

from worldmodels.core import LatentPolicy, State, Trajectory, rollout
from worldmodels.envs.spaces import ActionSpec


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


class ShiftWorldModel:
    """State = the last frame seen; each imagined step rolls it one pixel right; reward 0.5, end 0.25.

    ``decode`` shows the frame's negative (255 - x, still 4 grey levels), so a reconstruction is told
    apart from the real frame. ``calls`` records ``observe``, ``imagine:actions`` (open loop) and
    ``imagine:policy`` (dream).
    """

    def __init__(self, S: int = 16, A: int = 3) -> None:
        self.obs_shape, self.action_spec, self.feature_dim = (S, S, 3), ActionSpec("discrete", A), S * S * 3
        self.calls: list[str] = []

    def predicted(self, last: torch.Tensor, steps: int) -> torch.Tensor:
        """The frames ``decode`` shows for ``steps`` imagined steps after frame ``last (B, H, W, C)``."""
        return torch.stack([255 - last.roll(k + 1, dims=-2) for k in range(steps)], dim=1)  # (B, steps, H, W, C)

    def initial(self, batch_size: int) -> State:
        return {"frame": torch.zeros(batch_size, *self.obs_shape),
                "action": torch.zeros(batch_size, self.action_spec.dim)}

    def observe(self, obs, action, is_first, state=None):
        self.calls.append("observe")
        B, T = obs.shape[:2]
        action = torch.zeros(B, T, self.action_spec.dim) if action is None else action.float()
        states = {"frame": obs.float(), "action": action}
        return states, {k: v[:, -1] for k, v in states.items()}

    def step(self, state: State, action: torch.Tensor):
        B = action.shape[0]
        return {"frame": state["frame"].roll(1, dims=-2), "action": torch.zeros_like(action)}, \
            torch.full((B,), 0.5), torch.full((B,), 0.75)

    def imagine(self, start: State, policy_or_actions: LatentPolicy | torch.Tensor, horizon: int, *,
                keep_states: bool = True) -> Trajectory:
        self.calls.append("imagine:actions" if isinstance(policy_or_actions, torch.Tensor) else "imagine:policy")
        return rollout(self, self.step, start, policy_or_actions, horizon, keep_states=keep_states)

    def feature(self, states: State) -> torch.Tensor:
        return states["frame"].flatten(-3) / 255.0

    def decode(self, states: State) -> torch.Tensor:
        return (255 - states["frame"]).to(torch.uint8)

    def predict_reward(self, states: State) -> torch.Tensor:
        return torch.full(states["frame"].shape[:-3], 0.5)

    def predict_cont(self, states: State) -> torch.Tensor:
        return torch.full(states["frame"].shape[:-3], 0.75)
