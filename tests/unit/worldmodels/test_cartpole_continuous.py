"""The continuous cartpole: gymnasium API, registration, seeding, termination and truncation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from worldmodels.envs.cartpole_continuous import (
    CONTINUOUS_CARTPOLE_ID,
    MAX_EPISODE_STEPS,
    ContinuousCartPoleEnv,
    register_continuous_cartpole,
)


def test_passes_the_gymnasium_checker_and_is_registered():
    check_env(ContinuousCartPoleEnv(), skip_render_check=True)
    register_continuous_cartpole()
    env = gym.make(CONTINUOUS_CARTPOLE_ID)
    assert env.spec.max_episode_steps == MAX_EPISODE_STEPS == 200
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


def test_same_seed_same_episode_and_pushing_tips_the_pole():
    register_continuous_cartpole()
    runs = []
    for _ in range(2):
        env = gym.make(CONTINUOUS_CARTPOLE_ID)
        obs, _ = env.reset(seed=3)
        trace, terminated, steps = [obs], False, 0
        while not terminated:
            obs, reward, terminated, truncated, _ = env.step(np.array([1.0], np.float32))
            trace.append(obs)
            steps += 1
            assert reward == 1.0 and not truncated
        runs.append(np.stack(trace))
    np.testing.assert_array_equal(runs[0], runs[1])
    # Full force one way tips the pole the other way past 12 degrees within about half a second.
    assert steps < 40 and abs(runs[0][-1, 2]) > 12 * np.pi / 180 and runs[0][-1, 2] < 0


def test_truncated_after_200_steps_when_balanced():
    register_continuous_cartpole()
    env = gym.make(CONTINUOUS_CARTPOLE_ID)
    obs, _ = env.reset(seed=0)
    for step in range(MAX_EPISODE_STEPS):
        # A PD controller on the pole angle (force toward the side the pole leans) keeps it up.
        action = np.clip([10 * obs[2] + 2 * obs[3] + 0.1 * obs[0] + 0.3 * obs[1]], -1, 1).astype(np.float32)
        obs, _, terminated, truncated, _ = env.step(action)
        assert not terminated, (step, obs)
    assert truncated


def test_bad_action_is_a_one_line_error():
    env = ContinuousCartPoleEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be one finite float"):
        env.step(np.array([np.nan], np.float32))
