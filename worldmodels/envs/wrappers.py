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
        self.env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        self.observation_space = pixel_space(image_size)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        frame = np.asarray(observation)
        # A grey (H, W) frame resizes to (S, S) and only fails in the vector env's stacking, naming no env.
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise EnvError(f"env {self.env_id} returned a frame of shape {frame.shape}, expected (H, W, 3) RGB "
                           f"as its observation space {self.env.observation_space.shape} says")
        return resize_frame(frame, self.image_size)  # (S, S, 3)


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


DEBUG_HINT = "WM_DEBUG=1 shows the traceback"


def env_raised(env_id: str, call: str, error: BaseException) -> EnvError:
    """One line for an exception out of an env's ``call``: the env, the exception's type and first line."""
    first = (str(error).strip().splitlines() or [""])[0]
    return EnvError(f"env {env_id} raised {type(error).__name__} in {call}: {first}; {DEBUG_HINT}")


class EnvGuard(gym.Wrapper):
    """The outermost wrapper of every :func:`~worldmodels.envs.make` env: what the env does wrong is one line.

    An exception out of ``reset()`` / ``step()`` becomes an :class:`EnvError` naming the env (chained, so
    ``WM_DEBUG=1`` shows the env's own traceback), and a non-finite reward or observation, an observation of
    another shape than the space's, or a non-finite action sent to the env is refused at the episode and step
    where it happened, before a learner, replay or evaluation sees it: a NaN reward used to end as
    "agent nan ± nan" in eval.json, or as a loss blaming the learning rate. Cost: a few numpy checks per step.
    """

    def __init__(self, env: gym.Env, env_id: str):
        super().__init__(env)
        self.env_id = env_id
        self.episode, self.t = -1, 0  # the env's own count: episode 0 starts at the first reset()
        space = env.observation_space
        self._shape = space.shape if isinstance(space, gym.spaces.Box) else None
        self._float_obs = self._shape is not None and np.issubdtype(space.dtype, np.floating)
        self._float_action = isinstance(env.action_space, gym.spaces.Box)

    def reset(self, **kwargs):
        try:
            observation, info = self.env.reset(**kwargs)
        except EnvError:
            raise
        except Exception as error:  # noqa: BLE001 - a user's env may fail in any way: one line naming it
            raise env_raised(self.env_id, "reset()", error) from error
        self.episode, self.t = self.episode + 1, 0
        self._check_observation(observation, "reset()")
        return observation, info

    def step(self, action):
        if self._float_action and not np.isfinite(np.asarray(action, np.float64)).all():
            raise EnvError(f"the agent sent env {self.env_id} a non-finite action {np.asarray(action).tolist()} at "
                           f"{self._where(self.t + 1)}: the policy diverged (the env is not to blame)")
        try:
            observation, reward, terminated, truncated, info = self.env.step(action)
        except EnvError:
            raise
        except Exception as error:  # noqa: BLE001 - a user's env may fail in any way: one line naming it
            raise env_raised(self.env_id, "step()", error) from error
        self.t += 1
        try:
            value = float(reward)
        except (TypeError, ValueError):
            value = None
        if value is None or not np.isfinite(value):
            raise EnvError(f"env {self.env_id} returned the reward {reward!r} at {self._where(self.t)}; "
                           "rewards must be finite numbers: fix the env, or wrap it to keep them finite")
        self._check_observation(observation, "step()")
        return observation, reward, terminated, truncated, info

    def _where(self, t: int) -> str:
        return f"episode {self.episode} step {t}"

    def _check_observation(self, observation: Any, call: str) -> None:
        if self._shape is None:
            return
        obs = np.asarray(observation)
        if obs.shape != self._shape:
            raise EnvError(f"env {self.env_id} returned an observation of shape {obs.shape} from {call} at "
                           f"{self._where(self.t)}, expected {self._shape} as its observation space says")
        if self._float_obs and not np.isfinite(obs).all():
            bad = obs[~np.isfinite(obs)].reshape(-1)[0]
            raise EnvError(f"env {self.env_id} returned an observation holding {float(bad)} from {call} at "
                           f"{self._where(self.t)}; observations must be finite: fix the env, or wrap it to keep them finite")
