"""A 1-D point mass for seconds-long learning tests of continuous-control learners (TD-MPC, MBPO)."""

import gymnasium as gym
import numpy as np

POINT_ID = "tests/PointMass1D-v0"
EPISODE_STEPS = 20


class PointMass1D(gym.Env):
    """Move a point on a line to the origin: ``x' = clip(x + 0.25 a, -2, 2)``, reward ``-|x'|``, 20 steps.

    ``x_0 ~ U(-1.5, 1.5)``. Heading straight for 0 and holding still returns about -2 (at most 6 steps to
    arrive); uniform random actions wander (return about -20).
    """

    def __init__(self) -> None:
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.observation_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
        self._x, self._t = 0.0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._x, self._t = float(self.np_random.uniform(-1.5, 1.5)), 0
        return np.array([self._x], np.float32), {}

    def step(self, action):
        self._x = float(np.clip(self._x + 0.25 * float(np.clip(action[0], -1, 1)), -2.0, 2.0))
        self._t += 1
        return np.array([self._x], np.float32), -abs(self._x), False, self._t >= EPISODE_STEPS, {}


def register_point_mass() -> None:
    if POINT_ID not in gym.registry:
        gym.register(POINT_ID, entry_point=PointMass1D)
