"""VizDoom scenarios (``Vizdoom*-v1`` ids of the ``vizdoom`` package) as uint8 ``(S, S, 3)`` pixel envs.

World Models' dream-trained task is ``VizdoomTakeCover-v1`` (Ha & Schmidhuber 2018, Sec. 4): survive the
fireballs; reward +1 per step alive, so the return is the number of steps survived. Frames follow the
paper's pre-processing: the ``screen`` observation, the bottom sixth cut away (their ``frame[0:400]`` of a
480-row screen, where Doom draws its status bar), then resized to ``S x S`` with ``cv2.INTER_AREA``.

The scenario itself never times out, so TakeCover gets the paper's 2,100-step limit (60 s at 35 tics/s);
``max_episode_steps`` overrides it. ``vizdoom`` is imported only when a Vizdoom id is asked for.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from worldmodels.envs.wrappers import pixel_space, resize_frame

VIZDOOM_PREFIX = "Vizdoom"
PAPER_TIME_LIMITS = {"VizdoomTakeCover-v1": 2100, "VizdoomTakeCover-MultiBinary-v1": 2100}
KEEP_ROWS = 5 / 6  # rows 0:400 of 480 in the paper's Doom pre-processing


def is_vizdoom(env_id: Any) -> bool:
    return isinstance(env_id, str) and env_id.startswith(VIZDOOM_PREFIX)


def register_vizdoom_envs() -> bool:
    """Register vizdoom's gymnasium ids; False when the ``vizdoom`` package is not installed."""
    try:
        import vizdoom.gymnasium_wrapper  # noqa: F401 - heavy optional dependency, registers Vizdoom*-v1 on import
    except ImportError:
        return False
    return True


class ScreenFrames(gym.ObservationWrapper):
    """``{"screen": (H, W, 3), ...}`` -> the top ``KEEP_ROWS`` of the screen resized to uint8 ``(S, S, 3)``."""

    def __init__(self, env: gym.Env, image_size: int):
        super().__init__(env)
        self.image_size = image_size
        self.observation_space = pixel_space(image_size)

    def observation(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        screen = np.asarray(observation["screen"])  # (H, W, 3) uint8
        return resize_frame(screen[: int(round(screen.shape[0] * KEEP_ROWS))], self.image_size)


def time_limit(env_id: str, max_episode_steps: int | None) -> int | None:
    """Agent steps before truncation: the user's value, else the paper's limit for the scenario, else none."""
    return max_episode_steps if max_episode_steps is not None else PAPER_TIME_LIMITS.get(env_id)
