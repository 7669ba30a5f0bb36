"""``worldmodels/ContinuousCartPole-v0``: the cart-pole balance task with a continuous force, in numpy.

The classic task of Barto, Sutton & Anderson (1983), with the equations of motion as corrected by Florian
(2007) and explicit Euler steps of ``tau`` seconds. The action ``a in [-1, 1]`` (a ``Box(-1, 1, (1,))``)
pushes the cart with force ``a * force_mag``. Observation ``[x, x_dot, theta, theta_dot]`` (float32). The
episode terminates when ``|x| > 2.4`` or ``|theta| > 12 deg``, and is truncated after 200 steps. Reward 1 per
step, the terminating one included, so a return is the number of steps survived (at most 200).

A uniformly random policy survives about 20 steps (measured in ``tests/learning/test_pets_learning.py``);
balancing for the full 200 needs feedback on theta and theta_dot.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

CONTINUOUS_CARTPOLE_ID = "worldmodels/ContinuousCartPole-v0"
MAX_EPISODE_STEPS = 200
X_LIMIT = 2.4
THETA_LIMIT = 12 * 2 * math.pi / 360  # 12 degrees in radians


class ContinuousCartPoleEnv(gym.Env):
    metadata = {"render_modes": [], "render_fps": 50}

    def __init__(self, *, gravity: float = 9.8, cart_mass: float = 1.0, pole_mass: float = 0.1,
                 pole_half_length: float = 0.5, force_mag: float = 10.0, tau: float = 0.02) -> None:
        self.gravity, self.cart_mass, self.pole_mass = gravity, cart_mass, pole_mass
        self.pole_half_length, self.force_mag, self.tau = pole_half_length, force_mag, tau
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        high = np.array([2 * X_LIMIT, np.inf, 2 * THETA_LIMIT, np.inf], np.float32)
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self._state = np.zeros(4, np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._state = self.np_random.uniform(-0.05, 0.05, size=4)
        return self._state.astype(np.float32), {}

    def step(self, action):
        action = np.asarray(action, np.float64).reshape(-1)
        if action.shape != (1,) or not np.isfinite(action).all():
            raise ValueError(f"ContinuousCartPole: action must be one finite float in [-1, 1], got {action!r}")
        force = self.force_mag * float(np.clip(action[0], -1.0, 1.0))
        x, x_dot, theta, theta_dot = self._state
        total_mass = self.cart_mass + self.pole_mass
        cos, sin = math.cos(theta), math.sin(theta)
        # Florian (2007), Eq. 23 and 24 with no friction: theta'' first, then x'' from it.
        push = (force + self.pole_mass * self.pole_half_length * theta_dot ** 2 * sin) / total_mass
        theta_acc = (self.gravity * sin - cos * push) / (
            self.pole_half_length * (4.0 / 3.0 - self.pole_mass * cos ** 2 / total_mass))
        x_acc = push - self.pole_mass * self.pole_half_length * theta_acc * cos / total_mass
        self._state = np.array([x + self.tau * x_dot, x_dot + self.tau * x_acc,
                                theta + self.tau * theta_dot, theta_dot + self.tau * theta_acc])
        terminated = bool(abs(self._state[0]) > X_LIMIT or abs(self._state[2]) > THETA_LIMIT)
        return self._state.astype(np.float32), 1.0, terminated, False, {}


def register_continuous_cartpole() -> None:
    if CONTINUOUS_CARTPOLE_ID not in gym.registry:
        gym.register(CONTINUOUS_CARTPOLE_ID, entry_point=ContinuousCartPoleEnv, max_episode_steps=MAX_EPISODE_STEPS)
