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


def clock_episode(length: int, S: int = 8, *, row: int = 3, column: int = 0, A: int = 3) -> dict:
    """A store-encoded episode of ``length`` rows that :class:`ClockWorldModel` predicts exactly.

    Frame ``t``: pixel ``(0, 0)`` holds the clock ``4 t`` (so every step moves it), a white dot sits at ``(row,
    (column + t) % S)``, the rest is black. Reward 1 on arriving where the dot is in column 0, else 0; the last
    row is terminal. Actions are random (the dynamics ignore them).
    """
    obs = torch.zeros(length, S, S, 3, dtype=torch.uint8)
    t = torch.arange(length)
    obs[t, 0, 0] = (4 * t).to(torch.uint8)[:, None]
    obs[t, row, (column + t) % S] = 255
    reward = (((column + t) % S) == 0).float()
    reward[0] = 0.0
    terminated = torch.zeros(length, dtype=torch.bool)
    terminated[-1] = True
    return {"obs": obs.numpy(), "action": torch.randint(0, A, (length,), generator=torch.Generator().manual_seed(
        length)).numpy(), "reward": reward.numpy(), "terminated": terminated.numpy(),
        "truncated": torch.zeros(length, dtype=torch.bool).numpy()}


class ClockWorldModel:
    """The dynamics of :func:`clock_episode` (episodes of ``length`` rows): a perfect model of them.

    ``noise`` > 0 adds Gaussian noise of that std (uint8 levels) to each decoded frame, drawn from the global
    torch RNG: a stochastic model whose samples scatter around the truth.
    """

    def __init__(self, length: int, S: int = 8, A: int = 3, *, noise: float = 0.0) -> None:
        self.obs_shape, self.action_spec, self.feature_dim = (S, S, 3), ActionSpec("discrete", A), S * S * 3
        self.length, self.noise = length, noise

    def initial(self, batch_size: int) -> State:
        return {"frame": torch.zeros(batch_size, *self.obs_shape), "action": torch.zeros(batch_size, self.action_spec.dim)}

    def observe(self, obs, action, is_first, state=None):
        B, T = obs.shape[:2]
        action = torch.zeros(B, T, self.action_spec.dim) if action is None else action.float()
        states = {"frame": obs.float(), "action": action}
        return states, {k: v[:, -1] for k, v in states.items()}

    def step(self, state: State, action: torch.Tensor):
        frame = state["frame"].clone()
        clock = frame[:, 0, 0, 0] + 4
        frame[:, 0, 0] = 0
        frame = frame.roll(1, dims=-2)
        frame[:, 0, 0] = clock[:, None]
        reward = (frame[:, 1:, 0].amax((-1, -2)) == 255).float()
        cont = (clock / 4 != self.length - 1).float()
        return {"frame": frame, "action": torch.zeros_like(action)}, reward, cont

    def imagine(self, start: State, policy_or_actions, horizon: int, *, keep_states: bool = True) -> Trajectory:
        return rollout(self, self.step, start, policy_or_actions, horizon, keep_states=keep_states)

    def feature(self, states: State) -> torch.Tensor:
        return states["frame"].flatten(-3) / 255.0

    def decode(self, states: State) -> torch.Tensor:
        frame = states["frame"]
        if self.noise:
            frame = frame + self.noise * torch.randn(frame.shape)
        return frame.round().clamp(0, 255).to(torch.uint8)

    def predict_reward(self, states: State) -> torch.Tensor:
        return (states["frame"][..., 1:, 0, :].amax((-1, -2)) == 255).float()

    def predict_cont(self, states: State) -> torch.Tensor:
        return (states["frame"][..., 0, 0, 0] / 4 != self.length - 1).float()
