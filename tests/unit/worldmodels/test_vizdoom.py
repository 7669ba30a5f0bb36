"""VizDoom through ``worldmodels.envs.make``: the paper's frames, time limit and seeding (Ha & Schmidhuber 2018, Sec. 4)."""

import gymnasium as gym
import numpy as np
import pytest

from worldmodels.envs import make, make_vector
from worldmodels.envs.vizdoom import KEEP_ROWS, ScreenFrames

vizdoom = pytest.importorskip("vizdoom")

ENV = "VizdoomTakeCover-v1"


def _time_limit(env: gym.Env) -> int | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env._max_episode_steps
        env = env.env
    return None


def test_takecover_frames_and_paper_time_limit():
    env = make(ENV, seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert env.action_space == gym.spaces.Discrete(3)
    assert _time_limit(env) == 2100  # the scenario has no timeout; the paper caps episodes at 2,100 steps
    env.close()


def test_max_episode_steps_overrides_the_paper_limit_and_truncates():
    env = make(ENV, seed=0, max_episode_steps=5)
    env.reset(seed=0)
    flags = [env.step(0)[3] for _ in range(5)]
    assert flags == [False] * 4 + [True]
    env.close()


def test_same_seed_same_frames():
    a, b = make(ENV), make(ENV)
    frames = []
    for env in (a, b):
        obs, _ = env.reset(seed=7)
        seq = [obs] + [env.step(step % 3)[0] for step in range(20)]
        frames.append(np.stack(seq))
        env.close()
    np.testing.assert_array_equal(frames[0], frames[1])


def test_screen_is_cropped_before_resizing():
    """The bottom sixth (Doom's status bar in the paper's 480-row screen) never reaches the frame."""

    class FakeDoom(gym.Env):
        observation_space = gym.spaces.Dict({"screen": gym.spaces.Box(0, 255, (240, 320, 3), np.uint8)})
        action_space = gym.spaces.Discrete(3)

        def reset(self, *, seed=None, options=None):
            screen = np.zeros((240, 320, 3), np.uint8)
            screen[int(240 * KEEP_ROWS):] = 255  # a white strip where the status bar would be
            return {"screen": screen}, {}

    frame = ScreenFrames(FakeDoom(), 64).reset()[0]
    assert frame.shape == (64, 64, 3) and frame.max() == 0


def test_vector_env():
    env = make_vector(ENV, 2, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (2, 64, 64, 3)
    env.close()
