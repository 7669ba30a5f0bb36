"""Envs for `wm doctor` and `--env module:EnvId` tests, registered when this module is imported.

``doctor_envs:GoodImage-v0`` observes (24, 32, 3) uint8 images and has no render() at all: the factory must use
the observation as it is. ``doctor_envs:Broken-v0`` is what a pre-1.0 gym env looks like: reset returns the
observation alone, step a 4-tuple, and its randomness ignores the seed. ``doctor_envs:Unseeded-v0`` follows the
1.x API but its start ignores the seed (as if drawn from numpy's global generator), so the same seed gives
different episodes.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

GOOD_ID, BROKEN_ID, UNSEEDED_ID = "GoodImage-v0", "Broken-v0", "Unseeded-v0"


class GoodImageEnv(gym.Env):
    """A block moves left or right across a (24, 32) frame; reward +1 at the right edge, which ends the episode."""

    metadata = {"render_modes": []}
    observation_space = gym.spaces.Box(0, 255, (24, 32, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = int(self.np_random.integers(0, 28))
        return self._frame(), {}

    def step(self, action):
        self.x = int(np.clip(self.x + (1 if int(action) else -1), 0, 28))
        done = self.x == 28
        return self._frame(), float(done), done, False, {}

    def _frame(self) -> np.ndarray:
        frame = np.zeros((24, 32, 3), np.uint8)
        frame[8:16, self.x:self.x + 4] = (255, 128, 0)
        return frame


class UnseededEnv(GoodImageEnv):
    resets = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        # The bug: state that ignores the seed (a count of resets standing in for np.random, so the test is certain).
        UnseededEnv.resets += 1
        self.x = UnseededEnv.resets % 28
        return self._frame(), {}


class BrokenEnv(gym.Env):
    """gym 0.21 style: ``reset() -> obs``, ``step() -> (obs, reward, done, info)``, unseeded global randomness."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return np.random.uniform(-1, 1, 4).astype(np.float32)

    def step(self, action):
        return np.random.uniform(-1, 1, 4).astype(np.float32), 0.0, False, {}


if GOOD_ID not in gym.registry:
    gym.register(GOOD_ID, entry_point=GoodImageEnv, max_episode_steps=50)
if BROKEN_ID not in gym.registry:
    gym.register(BROKEN_ID, entry_point=BrokenEnv, max_episode_steps=50)
if UNSEEDED_ID not in gym.registry:
    gym.register(UNSEEDED_ID, entry_point=UnseededEnv, max_episode_steps=50)
