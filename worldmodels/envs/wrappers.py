"""Small gymnasium wrappers that turn any supported env into uint8 ``(S, S, 3)`` pixel observations.

Every resize uses ``cv2.INTER_AREA`` (pixel-area averaging), the same filter ale-py's
vector env applies in C++, so single and vector Atari frames are bit-identical.
"""

from __future__ import annotations

from typing import Any

import cv2
import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorEnv, VectorWrapper

from worldmodels.envs.options import EnvError


def pixel_space(image_size: int) -> gym.spaces.Box:
    return gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)


def is_image_space(space: gym.Space) -> bool:
    """A Box of ``(H, W, 3)`` uint8 frames: used as the observation as it is (resized), no ``render()`` needed."""
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.shape[-1] == 3 and space.dtype == np.uint8


def resize_frame(frame: np.ndarray, image_size: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(image_size, image_size, 3)`` uint8 with area averaging."""
    if frame.shape[0] == image_size and frame.shape[1] == image_size:
        return np.ascontiguousarray(frame)
    return cv2.resize(frame, (image_size, image_size), interpolation=cv2.INTER_AREA)


class ResizeObservation(gym.ObservationWrapper):
    """For envs whose observation already is an RGB image (ALE, CarRacing, any ``is_image_space`` env)."""

    def __init__(self, env: gym.Env, image_size: int):
        super().__init__(env)
        self.image_size = image_size
        self.observation_space = pixel_space(image_size)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return resize_frame(observation, self.image_size)  # (S, S, 3)


class PixelsFromRender(gym.ObservationWrapper):
    """Replace the observation with the resized ``render()`` frame (env made with ``render_mode="rgb_array"``)."""

    def __init__(self, env: gym.Env, image_size: int, env_id: str):
        super().__init__(env)
        self.image_size = image_size
        self.env_id = env_id
        self.observation_space = pixel_space(image_size)

    def observation(self, observation: Any) -> np.ndarray:
        frame = self.env.render()
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] not in (3, 4):
            got = None if frame is None else getattr(frame, "shape", type(frame).__name__)
            raise EnvError(
                f"{self.env_id} cannot render rgb_array frames (render() gave {got}); use an env whose "
                "render_mode 'rgb_array' returns (H, W, 3) images, e.g. CartPole-v1, CarRacing-v3 or ALE/Pong-v5"
            )
        return resize_frame(np.asarray(frame[..., :3], dtype=np.uint8), self.image_size)  # (S, S, 3)


class FrameSkip(gym.Wrapper):
    """Repeat each action ``skip`` times and sum the rewards; optionally max-pool the last two frames.

    Max-pooling (Mnih et al. 2015) removes sprite flicker in some Atari games; without it
    the last frame is returned, as Machado et al. 2018 do.
    """

    def __init__(self, env: gym.Env, skip: int, *, maxpool: bool = False):
        super().__init__(env)
        self.skip = skip
        self.maxpool = maxpool

    def step(self, action):
        total_reward = 0.0
        frames: list[np.ndarray] = []
        for _ in range(self.skip):
            observation, reward, terminated, truncated, info = self.env.step(action)
            total_reward += float(reward)
            frames = [*frames[-1:], observation]
            if terminated or truncated:
                break
        if self.maxpool and len(frames) == 2:
            observation = np.maximum(frames[0], frames[1])
        return observation, total_reward, terminated, truncated, info


class NoopReset(gym.Wrapper):
    """After a reset take ``U{1, ..., noop_max}`` no-op actions (action 0 is NOOP in every ALE action set)."""

    def __init__(self, env: gym.Env, noop_max: int):
        super().__init__(env)
        self.noop_max = noop_max

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        for _ in range(int(self.unwrapped.np_random.integers(1, self.noop_max + 1))):
            observation, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                observation, info = self.env.reset()
        return observation, info


class EpisodicLife(gym.Wrapper):
    """Signal ``terminated`` on every life loss; ``reset`` continues the game unless it is really over."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return observation, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over or kwargs.get("seed") is not None:
            observation, info = self.env.reset(**kwargs)
        else:  # a life was lost: continue from the current state with one no-op step
            observation, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                observation, info = self.env.reset(**kwargs)
        self.game_over = False
        self.lives = self.unwrapped.ale.lives()
        return observation, info


class _PendingSeed:
    """The seed given at construction, used by the first ``reset()`` that passes no seed of its own."""

    pending_seed: int | None

    def _hold_seed(self, seed: int | None) -> None:
        self.pending_seed = seed
        if seed is not None:
            self.action_space.seed(seed)

    def _take_seed(self, seed: int | None) -> int | None:
        if seed is None:
            seed, self.pending_seed = self.pending_seed, None
        else:
            self.pending_seed = None
        return seed


class SeedOnFirstReset(_PendingSeed, gym.Wrapper):
    """Apply ``make(..., seed=)`` at the first ``reset()`` that passes no seed of its own."""

    def __init__(self, env: gym.Env, seed: int | None):
        gym.Wrapper.__init__(self, env)
        self._hold_seed(seed)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        return self.env.reset(seed=self._take_seed(seed), options=options)


class AtariVectorFrames(_PendingSeed, VectorWrapper):
    """ale-py's ``AtariVectorEnv`` gives ``(N, 1, H, W, 3)`` (a frame stack of one); drop the stack axis."""

    def __init__(self, env: VectorEnv, seed: int | None):
        VectorWrapper.__init__(self, env)
        image_shape = env.single_observation_space.shape[1:]  # (H, W, 3)
        self.single_observation_space = gym.spaces.Box(0, 255, image_shape, np.uint8)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, env.num_envs)
        self._hold_seed(seed)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        observations, info = self.env.reset(seed=self._take_seed(seed), options=options)
        return observations[:, 0], info  # (N, H, W, 3)

    def step(self, actions):
        observations, rewards, terminations, truncations, info = self.env.step(np.asarray(actions, dtype=np.int64))
        return observations[:, 0], rewards.astype(np.float64), terminations, truncations, info  # (N, H, W, 3)
