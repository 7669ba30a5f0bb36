"""The toy pixel tasks used by learning tests: contracts and the random-play baselines quoted in the asserts."""

from __future__ import annotations

import numpy as np
import pytest

from worldmodels.envs import make
from worldmodels.envs.toy import CATCH_ID, LEFTRIGHT_ID


def _random_returns(env_id: str, episodes: int, seed: int) -> np.ndarray:
    env = make(env_id, image_size=32, seed=seed)
    rng = np.random.default_rng(seed)
    returns = []
    for i in range(episodes):
        env.reset(seed=seed + i)
        done, total = False, 0.0
        while not done:
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            total += reward
            done = terminated or truncated
        returns.append(total)
    return np.asarray(returns)


@pytest.mark.parametrize("env_id", [CATCH_ID, LEFTRIGHT_ID])
def test_pixels_and_determinism(env_id):
    a, b = make(env_id, image_size=32, seed=3), make(env_id, image_size=32, seed=3)
    obs_a, _ = a.reset(seed=3)
    obs_b, _ = b.reset(seed=3)
    assert obs_a.shape == (32, 32, 3) and obs_a.dtype == np.uint8
    for action in [0, 1, 1, 0]:
        obs_a, *_ = a.step(action)
        obs_b, *_ = b.step(action)
        assert np.array_equal(obs_a, obs_b)


def test_random_baselines_match_the_numbers_quoted_in_learning_tests():
    catch = _random_returns(CATCH_ID, 400, seed=0)
    assert -0.8 < catch.mean() < -0.4  # quoted: about -0.6
    leftright = _random_returns(LEFTRIGHT_ID, 400, seed=0)
    assert abs(leftright.mean()) < 0.7 and 3.8 < leftright.std() < 5.2  # quoted: mean 0, std sqrt(20) = 4.5


def test_leftright_rewards_the_side_shown():
    env = make(LEFTRIGHT_ID, image_size=32, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        side = 0 if obs[:, :16].sum() > obs[:, 16:].sum() else 1
        obs, reward, terminated, truncated, _ = env.step(side)
        assert reward == 1.0
        if terminated or truncated:
            break
    assert terminated
