"""The env factory's ``obs`` rule: the env's own 1-D Box observation as float32 vectors, or frames."""

from __future__ import annotations

import numpy as np
import pytest

from worldmodels.envs import EnvError, make, make_vector
from worldmodels.envs.factory import observation_kind


@pytest.mark.parametrize("env_id, kind", [("CartPole-v1", "vector"), ("Pendulum-v1", "vector"),
                                          ("InvertedPendulum-v5", "vector"), ("worldmodels/Catch-v0", "pixels"),
                                          ("ALE/Pong-v5", "pixels")])
def test_auto_is_vector_for_a_1d_box_and_pixels_otherwise(env_id, kind):
    assert observation_kind(env_id, "auto") == kind
    assert observation_kind(env_id, "pixels") == "pixels"  # what is asked is what is given


@pytest.mark.parametrize("env_id, dim", [("CartPole-v1", 4), ("InvertedPendulum-v5", 4)])
def test_vector_envs_observe_float32_vectors_and_are_seeded(env_id, dim):
    envs = [make_vector(env_id, 2, seed=3, obs="vector") for _ in range(2)]
    try:
        first, again = (env.reset()[0] for env in envs)
        space = envs[0].single_observation_space
        assert space.shape == (dim,) and space.dtype == np.float32
        assert first.shape == (2, dim) and first.dtype == np.float32  # InvertedPendulum-v5 itself observes float64
        np.testing.assert_array_equal(first, again)  # sub-env i starts from seed + i, as with frames
        assert envs[0].step(envs[0].action_space.sample())[0].dtype == np.float32
    finally:
        for env in envs:
            env.close()


def test_pixels_stay_the_default_and_options_still_apply_to_vectors():
    assert make_vector("CartPole-v1", 1, image_size=16, seed=0).reset()[0].shape == (1, 16, 16, 3)
    env = make("CartPole-v1", obs="vector", max_episode_steps=3, seed=0)
    env.reset()
    truncated = [env.step(0)[3] for _ in range(3)]
    assert truncated == [False, False, True]


def test_bad_obs_requests_are_one_line_errors():
    with pytest.raises(EnvError, match="obs must be one of \\['auto', 'pixels', 'vector'\\], got 'vec'"):
        make("CartPole-v1", obs="vec")
    with pytest.raises(EnvError, match="worldmodels/Catch-v0 observes Box.*not vectors .*use obs 'pixels'"):
        make("worldmodels/Catch-v0", obs="vector")
