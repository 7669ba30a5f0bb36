"""Small pixel tasks whose reward depends on the action, for learning tests and CI.

``worldmodels/Catch-v0`` (after bsuite's Catch, Osband et al. 2020): a ball falls
one row per step from a random column of a ``rows x columns`` board; a paddle on
the bottom row moves left, stays or moves right. When the ball reaches the bottom
row the episode ends with reward +1 if the paddle is under it, else -1.

A uniformly random policy catches the ball in roughly a quarter of episodes on the
default 10x5 board (mean return about -0.6, checked by ``tests/unit/worldmodels/test_toy_env.py``),
while the optimal policy always catches it (return +1), so a learned policy has a
wide margin to show.

Observations are uint8 RGB images ``(image_size, image_size, 3)``: the ball is
drawn in red, the paddle in green, each board cell scaled up to fill the image.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

CATCH_ID = "worldmodels/Catch-v0"
LEFTRIGHT_ID = "worldmodels/LeftRight-v0"


class CatchEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, rows: int = 10, columns: int = 5, image_size: int = 64, render_mode: str | None = "rgb_array") -> None:
        self.rows, self.columns, self.image_size = rows, columns, image_size
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(3)  # 0: left, 1: stay, 2: right
        self.observation_space = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self._ball_row = self._ball_col = self._paddle = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._ball_row = 0
        self._ball_col = int(self.np_random.integers(self.columns))
        self._paddle = int(self.np_random.integers(self.columns))
        return self._frame(), {}

    def step(self, action):
        self._paddle = int(np.clip(self._paddle + int(action) - 1, 0, self.columns - 1))
        self._ball_row += 1
        terminated = self._ball_row == self.rows - 1
        reward = 0.0
        if terminated:
            reward = 1.0 if self._paddle == self._ball_col else -1.0
        return self._frame(), reward, terminated, False, {}

    def render(self):
        return self._frame()

    def _frame(self) -> np.ndarray:
        board = np.zeros((self.rows, self.columns, 3), np.uint8)
        board[self._ball_row, self._ball_col] = (255, 64, 64)
        board[self.rows - 1, self._paddle] = (64, 255, 64) if board[self.rows - 1, self._paddle, 0] == 0 else (255, 255, 64)
        # Nearest-neighbour upscale: every board cell becomes a solid block of pixels.
        ys = np.arange(self.image_size) * self.rows // self.image_size
        xs = np.arange(self.image_size) * self.columns // self.image_size
        return board[ys][:, xs]


class LeftRightEnv(gym.Env):
    """A cue-matching task whose cue fills half the frame, so even a small VAE encodes it.

    Each step shows a block on the left (red) or right (blue) half of the image, drawn at
    random. Action 0 means "left", 1 means "right". The reward for the action taken at
    ``obs[t]`` arrives with ``obs[t+1]`` (DESIGN.md row convention): +1 if it named the
    side shown in ``obs[t]``, else -1. An episode lasts ``length`` steps.

    Random play: return mean 0, std sqrt(length) (= 4.5 for 20 steps); the optimal policy
    returns ``length``. World Models' V must encode the cue, M must learn that the reward
    depends on (z_t, a_t), and C must map z to the matching action.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, length: int = 20, image_size: int = 64, render_mode: str | None = "rgb_array") -> None:
        self.length, self.image_size, self.render_mode = length, image_size, render_mode
        self.action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self._side = 0
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._side = int(self.np_random.integers(2))
        return self._frame(), {}

    def step(self, action):
        reward = 1.0 if int(action) == self._side else -1.0
        self._t += 1
        self._side = int(self.np_random.integers(2))
        return self._frame(), reward, self._t >= self.length, False, {}

    def render(self):
        return self._frame()

    def _frame(self) -> np.ndarray:
        frame = np.zeros((self.image_size, self.image_size, 3), np.uint8)
        half = self.image_size // 2
        if self._side == 0:
            frame[:, :half] = (255, 64, 64)
        else:
            frame[:, half:] = (64, 64, 255)
        return frame


def register_toy_envs() -> None:
    if CATCH_ID not in gym.registry:
        gym.register(CATCH_ID, entry_point=CatchEnv, max_episode_steps=100)
    if LEFTRIGHT_ID not in gym.registry:
        gym.register(LEFTRIGHT_ID, entry_point=LeftRightEnv, max_episode_steps=100)
