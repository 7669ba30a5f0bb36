"""`wm dreamer --atari-protocol`: the ALE settings a run trains and evaluates by, and what its model carries."""

from __future__ import annotations

import json

import pytest

from scripts.dreamer import CONFIG, PRESETS
from trainers.modules.dreamer import DEFAULT_LOSS_SCALES, parse_loss_scales
from trainers.runs.dreamer import env_options
from worldmodels.config import ConfigError, build_config, to_dict
from worldmodels.envs import ATARI_PROTOCOLS, EnvError, make, protocol_options
from worldmodels.envs.options import protocol_of
from worldmodels.families.dreamer import _run_env


def _config(**overrides):
    return build_config(CONFIG, overrides, presets=PRESETS, preset="debug")


def test_machado_is_the_default_and_adds_nothing():
    assert _config(env="ALE/Boxing-v5").atari_protocol == "machado"
    assert env_options(_config(env="ALE/Boxing-v5")) == {"image_size": 16, "obs": "auto"}


def test_atari100k_turns_off_sticky_actions_and_adds_noop_starts_on_ale_only():
    ale = env_options(_config(env="ALE/Boxing-v5", atari_protocol="atari100k"))
    assert ale["sticky_action_prob"] == 0.0 and ale["noop_max"] == 30 and ale["maxpool"] is True
    # The options are ALE-only, so another env's model does not claim them.
    assert env_options(_config(env="CartPole-v1", atari_protocol="atari100k")) == {"image_size": 16, "obs": "auto"}


def test_the_cpu_preset_trains_by_the_atari100k_protocol():
    config = build_config(CONFIG, {"env": "ALE/Boxing-v5"}, presets=PRESETS, preset="cpu")
    assert config.atari_protocol == "atari100k"
    assert env_options(config)["sticky_action_prob"] == 0.0


def test_the_cpu_preset_weights_the_reward_term_ten_times_and_keeps_the_other_scales():
    config = build_config(CONFIG, {"env": "ALE/Boxing-v5"}, presets=PRESETS, preset="cpu")
    assert parse_loss_scales(config.loss_scales) == {**DEFAULT_LOSS_SCALES, "reward": 10.0}
    # An explicit --loss-scales replaces the preset's dict: the user's scales, over DreamerV3's defaults.
    flagged = build_config(CONFIG, {"env": "ALE/Boxing-v5", "loss_scales": "entropy=1e-3"}, presets=PRESETS, preset="cpu")
    assert parse_loss_scales(flagged.loss_scales) == {**DEFAULT_LOSS_SCALES, "entropy": 1e-3}


def test_the_env_really_plays_by_the_protocol():
    env = make("ALE/Boxing-v5", **ATARI_PROTOCOLS["atari100k"])
    try:
        assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    finally:
        env.close()
    env = make("ALE/Boxing-v5")
    try:
        assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.25  # Machado et al. 2018
    finally:
        env.close()


def test_an_unknown_protocol_is_one_line():
    with pytest.raises(ConfigError) as error:
        _config(env="ALE/Boxing-v5", atari_protocol="atari200m")
    assert "\n" not in str(error.value) and "atari100k" in str(error.value)
    with pytest.raises(EnvError, match="choose one of machado, atari100k"):
        protocol_options("ALE/Boxing-v5", "atari200m")


def test_a_run_directory_evaluates_by_the_protocol_it_trained_by(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"env": "ALE/Boxing-v5", "atari_protocol": "atari100k"}))
    options = _run_env(tmp_path, (64, 64, 3))["env_options"]
    assert options == {"image_size": 64, **ATARI_PROTOCOLS["atari100k"]}
    # A run from before the option existed played by the default.
    (tmp_path / "config.json").write_text(json.dumps({"env": "ALE/Boxing-v5"}))
    assert _run_env(tmp_path, (64, 64, 3))["env_options"] == {"image_size": 64}


def test_the_vector_env_plays_by_the_protocol_too(monkeypatch):
    """Training and evaluation step ale-py's AtariVectorEnv: the protocol's settings reach its constructor."""
    import ale_py.vector_env

    from worldmodels.envs import make_vector

    seen = {}
    real = ale_py.vector_env.AtariVectorEnv

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ale_py.vector_env, "AtariVectorEnv", spy)
    env = make_vector("ALE/Boxing-v5", 1, seed=3, image_size=32, **ATARI_PROTOCOLS["atari100k"])
    env.close()
    assert seen["repeat_action_probability"] == 0.0 and seen["noop_max"] == 30 and seen["maxpool"] is True
    seen.clear()
    make_vector("ALE/Boxing-v5", 1, seed=3, image_size=32).close()
    assert seen["repeat_action_probability"] == 0.25 and seen["noop_max"] == 0  # Machado et al. 2018


def test_finetune_plays_by_the_checkpoints_protocol_not_the_presets():
    from trainers.runs.finetune import FinetuneConfig, dreamer_config

    pretrained = {"config": to_dict(_config()), "obs_shape": [16, 16, 3],
                  "env_options": {"image_size": 16, **ATARI_PROTOCOLS["atari100k"], "frameskip": 2}}
    config = dreamer_config(FinetuneConfig(source="x", env="ALE/Boxing-v5", family_preset="tiny"), pretrained,
                            "ALE/Boxing-v5")
    assert config.atari_protocol == "atari100k" and config.frameskip == 2
    assert protocol_of({"image_size": 64}) == "machado"
