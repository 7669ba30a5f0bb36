"""Offline training: both families train from an episode store with no env made (every env factory raises)."""

from __future__ import annotations

import importlib
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import scripts.cli
from trainers.modules.dreamer import OPTIMISERS_PER_STEP
import worldmodels.envs
import worldmodels.envs.factory
from trainers.runs.worldmodels_config import WorldModelsConfig
from trainers.runs.worldmodels_stages import dream_horizon
from worldmodels.data.store import EpisodeStore
from worldmodels.envs.spaces import ActionSpec
from worldmodels.registry import load

SPEC = ActionSpec("discrete", 3)


def recorded_store(root, *, size: int, episodes: int = 8, length: int = 16) -> str:
    """Episodes as `wm import` writes them (no env involved): a block whose column follows the actions."""
    store = EpisodeStore.create(root, env_id="import:recorded", obs_shape=(size, size, 3), action_spec=SPEC)
    rng = np.random.default_rng(0)
    for _ in range(episodes):
        action = rng.integers(0, 3, length)
        column = np.clip(np.cumsum(action - 1) + size // 2, 0, size - 4)
        obs = np.zeros((length, size, size, 3), np.uint8)
        for t in range(length):
            obs[t, :, column[t - 1] if t else size // 2:][:, :4] = 255
        action[-1] = 0
        reward = np.r_[0.0, (action[:-1] == 2).astype(np.float32)]
        store.add_episode(obs, action, reward, np.eye(length, dtype=bool)[-1], np.zeros(length, bool))
    return str(root)


@pytest.fixture
def no_env(monkeypatch):
    """Every way the project makes an env raises: a passing run made none."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"an env was made: {args}")

    # Imported before patching, so that each keeps (and gets back) the real factory it bound at import.
    users = [importlib.import_module(name) for name in ("trainers.runs.worldmodels_stages", "trainers.runs.worldmodels_config",
                                                         "trainers.data.online", "trainers.runs.dreamer", "trainers.runs.offline",
                                                         "scripts.dreamer", "scripts.worldmodels_pipeline")]
    for module in (worldmodels.envs, worldmodels.envs.factory, gym, *users):
        for attr in ("make", "make_vector"):
            if hasattr(module, attr):
                monkeypatch.setattr(module, attr, refuse)


def test_worldmodels_trains_from_a_store_without_an_env(tmp_path, no_env):
    store = recorded_store(tmp_path / "store", size=32)
    run_dir = tmp_path / "run"
    assert scripts.cli.main(["worldmodels", "--preset", "debug", "--store", store, "--evaluate", "false",
                             "--run-dir", str(run_dir)]) == 0
    for stage in ("vae", "mdnrnn", "controller"):
        assert (run_dir / stage / "DONE").exists(), stage
    assert not (run_dir / "episodes").exists()  # nothing collected
    model = load(str(run_dir))
    assert model.env_id == "import:recorded" and model.action_spec == SPEC  # read from the --store
    assert json.loads((run_dir / "config.json").read_text())["env"] == "import:recorded"  # was CarRacing-v3
    # Without --dream-horizon (the debug preset sets 8) the dream lasts the longest stored episode: 16 rows, 15 steps.
    config = WorldModelsConfig(store=store, dream_horizon=None)
    assert dream_horizon(config) == 15


def test_dreamer_pretrains_offline_without_an_env(tmp_path, no_env):
    store = recorded_store(tmp_path / "store", size=16)  # the debug preset's 16x16 frames
    run_dir = tmp_path / "run"
    assert scripts.cli.main(["dreamer", "--preset", "debug", "--store", store, "--online", "false",
                             "--pretrain-steps", "3", "--evaluate", "false", "--run-dir", str(run_dir)]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["pretrain_steps"] == 3 and results["env_steps"] == 0
    model = load(str(run_dir))  # the offline-only run's checkpoint is the run's own
    assert model.family == "dreamer" and model.action_spec == SPEC
    assert not (run_dir / "episodes").exists()
    # Issue 25 item 6: config.json recorded the --env default (worldmodels/Catch-v0, same spaces), so wm evaluate
    # played Catch and reported a score for a model of another env (e99b721). The store's env now.
    assert json.loads((run_dir / "config.json").read_text())["env"] == "import:recorded"
    assert model.env_id == "import:recorded"


def test_an_offline_run_refuses_an_env_other_than_its_stores(tmp_path, capsys):
    store = recorded_store(tmp_path / "store", size=16)
    for argv in (["dreamer", "--preset", "debug", "--online", "false", "--env", "worldmodels/LeftRight-v0"],
                 ["worldmodels", "--preset", "debug", "--env", "worldmodels/LeftRight-v0"]):
        assert scripts.cli.main([*argv, "--store", store, "--run-dir", str(tmp_path / "run")]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
        assert len(errors) == 1 and "holds episodes of 'import:recorded'" in errors[0], errors
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_dreamer_pretrains_offline_then_continues_online(tmp_path):
    store = recorded_store(tmp_path / "store", size=16)  # worldmodels/Catch-v0 also has 3 actions
    run_dir = tmp_path / "run"
    assert scripts.cli.main(["dreamer", "--preset", "debug", "--env", "worldmodels/Catch-v0", "--store", store,
                             "--pretrain-steps", "3", "--steps", "260", "--eval-episodes", "1",
                             "--run-dir", str(run_dir)]) == 0
    offline = torch.load(run_dir / "offline" / "checkpoints" / "last.ckpt", weights_only=True)
    online = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert offline["global_step"] == 3 * OPTIMISERS_PER_STEP and online["global_step"] > 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["pretrain_steps"] == 3 and results["env_steps"] >= 260 and "eval_return" in results


def test_dreamer_refuses_a_store_of_another_action_space(tmp_path, capsys):
    store = EpisodeStore.create(tmp_path / "store", env_id="other", obs_shape=(16, 16, 3),
                                action_spec=ActionSpec("discrete", 5))
    store.add_episode(np.zeros((9, 16, 16, 3), np.uint8), np.zeros(9, np.int64), np.zeros(9), np.eye(9, dtype=bool)[-1],
                      np.zeros(9, bool))
    assert scripts.cli.main(["dreamer", "--preset", "debug", "--env", "worldmodels/Catch-v0", "--store",
                             str(tmp_path / "store"), "--run-dir", str(tmp_path / "run")]) == 2
    assert "pass the env the data came from" in capsys.readouterr().err
    assert not (tmp_path / "run" / "offline").exists()  # refused before any pretraining


@pytest.mark.parametrize("command", ["worldmodels", "dreamer"])
def test_a_store_of_another_frame_size_is_one_line(tmp_path, capsys, no_env, command):
    store = recorded_store(tmp_path / "store", size=24, episodes=1)  # the debug presets want 32 (V) and 16 (Dreamer)
    argv = [command, "--preset", "debug", "--store", store, "--evaluate", "false", "--run-dir", str(tmp_path / "run")]
    assert scripts.cli.main([*argv, *(["--online", "false"] if command == "dreamer" else [])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds 24x24 frames, not --image-size" in err[0], err
