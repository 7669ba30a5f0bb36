"""Envs that misbehave, for `--env faulty_envs:<Id>` tests; registered when this module is imported.

Frame envs observe (16, 16, 3) uint8 images with Discrete(3) actions (the spaces of a `worldmodels/Catch-v0`
model); vector envs observe Box(3) float32 with a Box(1) action (what `wm pets` / `wm mbpo` / `wm tdmpc` act in).
Each goes wrong at episode 0, step ``BAD_STEP`` (or in ``reset()``): ``RaisesInStep-v0`` raises RuntimeError("boom"),
``RaisesInReset-v0`` raises in ``reset()``, ``GrayFrames-v0`` returns (16, 16) frames for its (16, 16, 3) space,
``NanReward-v0`` / ``NanRewardFrames-v0`` return a NaN reward and ``NanObs-v0`` a NaN observation.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

BAD_STEP = 3


class _Counting(gym.Env):
    metadata = {"render_modes": []}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), self._reward(), False, self.t >= 10, {}

    def _reward(self) -> float:
        return 1.0

    def _obs(self) -> np.ndarray:
        raise NotImplementedError


class FrameEnv(_Counting):
    observation_space = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def _obs(self) -> np.ndarray:
        return np.full((16, 16, 3), 10 * self.t % 256, np.uint8)


class VectorEnv(_Counting):
    observation_space = gym.spaces.Box(-10.0, 10.0, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def _obs(self) -> np.ndarray:
        return np.full(3, 0.1 * self.t, np.float32)


class RaisesInStep(FrameEnv):
    def step(self, action):
        if self.t + 1 == BAD_STEP:
            raise RuntimeError("boom")
        return super().step(action)


class RaisesInReset(FrameEnv):
    def reset(self, *, seed=None, options=None):
        raise RuntimeError("no reset today")


class GrayFrames(FrameEnv):
    def _obs(self) -> np.ndarray:
        return np.zeros((16, 16), np.uint8)  # its space says (16, 16, 3)


class NanRewardFrames(FrameEnv):
    def _reward(self) -> float:
        return float("nan") if self.t == BAD_STEP else 1.0


class NanReward(VectorEnv):
    def _reward(self) -> float:
        return float("nan") if self.t == BAD_STEP else 1.0


class NanObs(VectorEnv):
    def _obs(self) -> np.ndarray:
        return np.full(3, np.nan if self.t == BAD_STEP else 0.1, np.float32)


ENVS = {"RaisesInStep-v0": RaisesInStep, "RaisesInReset-v0": RaisesInReset, "GrayFrames-v0": GrayFrames,
        "NanRewardFrames-v0": NanRewardFrames, "NanReward-v0": NanReward, "NanObs-v0": NanObs}
for _id, _cls in ENVS.items():
    if _id not in gym.registry:
        gym.register(_id, entry_point=_cls, max_episode_steps=50)
