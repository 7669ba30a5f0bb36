"""Contract tests for ``worldmodels.envs``: pixel shapes, seeding, vector autoreset, one-line errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from worldmodels.envs import ActionSpec, EnvError, EnvOptions, make, make_vector

ENV_IDS = ["ALE/Pong-v5", "ALE/Breakout-v5", "CarRacing-v3", "CartPole-v1"]


def _rollout(env: gym.Env, actions: list, seed: int | None = None) -> np.ndarray:
    """Frames ``(len(actions) + 1, H, W, 3)`` of a fixed action sequence, resetting on episode end."""
    observation, _ = env.reset(seed=seed)
    frames = [observation]
    for action in actions:
        observation, _, terminated, truncated, _ = env.step(action)
        frames.append(observation)
        if terminated or truncated:
            observation, _ = env.reset()
    return np.stack(frames)


def _fixed_actions(space: gym.Space, count: int) -> list:
    space.seed(123)
    return [space.sample() for _ in range(count)]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_gives_uint8_square_rgb(env_id):
    env = make(env_id, seed=0)
    observation, _ = env.reset()
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert observation.shape == (64, 64, 3) and observation.dtype == np.uint8
    assert env.observation_space.contains(observation)
    observation, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert observation.shape == (64, 64, 3) and observation.dtype == np.uint8
    assert np.isscalar(reward) and isinstance(terminated, bool) and isinstance(truncated, bool)
    ActionSpec.from_space(env.action_space)  # Discrete and Box(3) both describable
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_frames(env_id):
    # CartPole terminates quickly under random actions; the rollout resets and keeps comparing.
    envs = [make(env_id, seed=7) for _ in range(2)]
    actions = _fixed_actions(envs[0].action_space, 25)
    first, second = (_rollout(env, actions) for env in envs)
    assert first.shape == (26, 64, 64, 3)
    np.testing.assert_array_equal(first, second)
    assert len({frame.tobytes() for frame in first}) > 1, "frames never changed; the env is not being stepped"


def test_different_seed_different_start():
    # CartPole's start state is drawn from the seed, so the first frames differ.
    a, _ = make("CartPole-v1", seed=0).reset()
    b, _ = make("CartPole-v1", seed=1).reset()
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("env_id", ["ALE/Pong-v5", "CarRacing-v3", "CartPole-v1"])
@pytest.mark.parametrize("image_size", [32, 96])
def test_image_size(env_id, image_size):
    env = make(env_id, image_size=image_size, seed=0)
    observation, _ = env.reset()
    assert observation.shape == (image_size, image_size, 3) == env.observation_space.shape


def test_carracing_discrete_has_five_actions():
    env = make("CarRacing-v3", carracing_discrete=True, seed=0)
    assert env.action_space == gym.spaces.Discrete(5)
    env.reset()
    env.step(3)  # gas


def test_atari_defaults_are_machado():
    env = make("ALE/Pong-v5")
    ale_env = env.unwrapped
    assert ale_env._frameskip == 4
    assert ale_env.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert env.action_space.n == 6  # Pong's minimal action set (18 with full_action_space)
    assert make("ALE/Pong-v5", full_action_space=True).action_space.n == 18


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vector_shapes(env_id):
    vector = make_vector(env_id, 3, seed=0)
    observations, _ = vector.reset()
    assert observations.shape == (3, 64, 64, 3) and observations.dtype == np.uint8
    assert vector.single_observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    observations, rewards, terminations, truncations, _ = vector.step(vector.action_space.sample())
    assert observations.shape == (3, 64, 64, 3) and observations.dtype == np.uint8
    assert rewards.shape == terminations.shape == truncations.shape == (3,)
    vector.close()


def test_atari_vector_same_seed_same_frames():
    vectors = [make_vector("ALE/Breakout-v5", 2, seed=3) for _ in range(2)]
    actions = [np.array([t % 4, (t + 1) % 4]) for t in range(30)]
    runs = []
    for vector in vectors:
        observation, _ = vector.reset()
        runs.append(np.stack([observation] + [vector.step(a)[0] for a in actions]))
        vector.close()
    np.testing.assert_array_equal(runs[0], runs[1])


def test_atari_single_and_vector_frames_match():
    # Without sticky actions Pong is deterministic, so both code paths (gymnasium AtariEnv + cv2
    # INTER_AREA vs ale-py's C++ vector preprocessing) must give the same pixels.
    env = make("ALE/Pong-v5", sticky_action_prob=0.0, seed=0)
    vector = make_vector("ALE/Pong-v5", 1, sticky_action_prob=0.0, seed=0)
    actions = [t % 6 for t in range(40)]
    single = _rollout(env, actions)
    observation, _ = vector.reset()
    batched = np.stack([observation[0]] + [vector.step(np.array([a]))[0][0] for a in actions])
    np.testing.assert_array_equal(single, batched)
    vector.close()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "ALE/Pong-v5"])
def test_vector_autoreset_is_next_step(env_id):
    # max_episode_steps=3: step 3 truncates; step 4 ignores its action and returns reset obs, reward 0.
    vector = make_vector(env_id, 2, seed=0, max_episode_steps=3)
    first, _ = vector.reset()
    zeros = np.zeros(2, dtype=np.int64)
    for _ in range(2):
        _, _, terminations, truncations, _ = vector.step(zeros)
        assert not (terminations | truncations).any()
    _, _, terminations, truncations, _ = vector.step(zeros)
    assert (terminations | truncations).all()
    observations, rewards, terminations, truncations, _ = vector.step(zeros)
    assert (rewards == 0).all() and not (terminations | truncations).any()
    assert observations.shape == first.shape
    vector.close()


def test_atari_maxpool_single_matches_vector():
    # Space Invaders flickers, so max-pooling the last two frames changes pixels.
    env = make("ALE/SpaceInvaders-v5", sticky_action_prob=0.0, maxpool=True, seed=0)
    plain = make("ALE/SpaceInvaders-v5", sticky_action_prob=0.0, maxpool=False, seed=0)
    vector = make_vector("ALE/SpaceInvaders-v5", 1, sticky_action_prob=0.0, maxpool=True, seed=0)
    actions = [t % 6 for t in range(40)]
    pooled = _rollout(env, actions)
    assert not np.array_equal(pooled, _rollout(plain, actions))
    observation, _ = vector.reset()
    batched = np.stack([observation[0]] + [vector.step(np.array([a]))[0][0] for a in actions])
    np.testing.assert_array_equal(pooled, batched)
    vector.close()


@pytest.mark.parametrize("vectorised", [False, True])
def test_episodic_life_continues_the_game(vectorised):
    # Breakout starts with 5 lives; random play loses one within a few hundred steps.
    env = make_vector("ALE/Breakout-v5", 1, episodic_life=True, seed=0) if vectorised else make("ALE/Breakout-v5", episodic_life=True, seed=0)
    env.reset()
    for _ in range(1000):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        if np.any(terminated) or np.any(truncated):
            break
    assert np.all(terminated) and int(np.ravel(info["lives"])[0]) == 4
    # The next episode continues the same game: 4 lives, not a fresh 5. The vector env starts
    # it on the next step (NEXT_STEP autoreset); the single env in reset().
    if vectorised:
        info = env.step(env.action_space.sample())[4]
    else:
        info = env.reset()[1]
    assert int(np.ravel(info["lives"])[0]) == 4
    env.close()


def test_noop_reset_advances_the_start():
    starts = {make("ALE/Pong-v5", noop_max=30, seed=seed).reset()[1]["episode_frame_number"] for seed in range(4)}
    assert len(starts) > 1 and min(starts) > 0


def test_single_env_max_episode_steps():
    env = make("CartPole-v1", max_episode_steps=2, seed=0)
    env.reset()
    assert env.step(0)[3] is False
    assert env.step(0)[3] is True


# ---- bad input: each is a one-line EnvError (a ValueError) ----------------------------------


def _one_line_error(call) -> str:
    with pytest.raises(EnvError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, ValueError)
    return message


@pytest.mark.parametrize("bad_id, suggestion", [("ALE/Pongg-v5", "ALE/Pong-v5"), ("cartpole-v1", "CartPole-v1"), ("CarRacing-v2", "CarRacing-v3")])
def test_unknown_env_id_suggests_close_matches(bad_id, suggestion):
    message = _one_line_error(lambda: make(bad_id))
    assert bad_id in message and suggestion in message
    _one_line_error(lambda: make_vector(bad_id, 2))


@pytest.mark.parametrize("image_size", [4, 7, 0, -64, 64.0, "64", True, None])
def test_bad_image_size(image_size):
    assert "image_size" in _one_line_error(lambda: make("CartPole-v1", image_size=image_size))


def test_bad_options():
    assert "sticky" in _one_line_error(lambda: make("CartPole-v1", stiky_action_prob=0.1))
    assert "num_envs" in _one_line_error(lambda: make_vector("CartPole-v1", 0))
    assert "sticky_action_prob" in _one_line_error(lambda: make("ALE/Pong-v5", sticky_action_prob=1.5))


class _NoFrames(gym.Env):
    """Claims rgb_array rendering but returns None: the factory must refuse it up front."""

    metadata = {"render_modes": ["rgb_array"]}
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {}

    def render(self):
        return None


class _NoRenderModes(_NoFrames):
    metadata = {"render_modes": ["ansi"]}


@pytest.fixture
def no_pixel_envs():
    ids = {"WMTestNoFrames-v0": _NoFrames, "WMTestAnsiOnly-v0": _NoRenderModes}
    for env_id, cls in ids.items():
        gym.register(id=env_id, entry_point=cls)
    yield list(ids)
    for env_id in ids:
        del gym.registry[env_id]


def test_env_without_pixels_is_refused(no_pixel_envs):
    for env_id in no_pixel_envs:
        message = _one_line_error(lambda: make(env_id))
        assert "cannot render rgb_array" in message and "CartPole-v1" in message
        _one_line_error(lambda: make_vector(env_id, 2))


def test_env_options_round_trip():
    from dataclasses import asdict

    options = EnvOptions(image_size=32, sticky_action_prob=0.0, frameskip=2)
    env = make("ALE/Pong-v5", **asdict(options))
    assert env.observation_space.shape == (32, 32, 3) and env.unwrapped._frameskip == 2


def test_toy_catch_env_is_served():
    env = make("worldmodels/Catch-v0", image_size=32, seed=0)
    assert env.reset()[0].shape == (32, 32, 3)


def test_bench_collection_record():
    from scripts.bench import BenchConfig, run

    record = run(BenchConfig(env="CartPole-v1", num_envs=2, steps=5, warmup=1, repeats=2))
    assert record["num_envs"] == 2 and record["frameskip"] == 1 and len(record["agent_steps_per_s"]["runs"]) == 2
    assert record["agent_steps_per_s"]["median"] > 0 and record["machine"]["cpu_count"] >= 1
