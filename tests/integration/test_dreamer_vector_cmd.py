"""`wm dreamer --env CartPole-v1` on the env's own vectors, then `wm evaluate`, `wm export`, `worldmodels.load` and
`wm dream` on that run; offline pretraining on its vector store; `--obs pixels` still renders frames."""

from __future__ import annotations

import json

import torch

import worldmodels
from scripts.cli import main
from scripts.dreamer import CONFIG, PRESETS
from trainers.runs.dreamer import build
from worldmodels.config import build_config
from worldmodels.data.store import EpisodeStore
from worldmodels.models.mlp_codec import MLPEncoder


def test_vector_dreamer_run_evaluates_exports_loads_and_dream_says_no_video(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["dreamer", "--env", "CartPole-v1", "--preset", "debug", "--steps", "260", "--prefill", "200",
                 "--eval-episodes", "2", "--run-dir", str(run_dir)]) == 0
    assert EpisodeStore.open(run_dir / "episodes").spec.obs_shape == (4,)
    assert json.loads((run_dir / "eval.json").read_text())["env"] == "CartPole-v1"

    assert main(["evaluate", "--run-dir", str(run_dir), "--episodes", "2", "--num-envs", "1",
                 "--out", str(tmp_path / "eval.json")]) == 0
    assert len(json.loads((tmp_path / "eval.json").read_text())["returns"]) == 2

    model = worldmodels.load(run_dir)
    assert model.obs_shape == (4,) and model.env_options == {"obs": "vector"}
    assert isinstance(model.world_model.encoder, MLPEncoder)
    action, _ = model.policy().act(torch.zeros(1, 4), torch.ones(1, dtype=torch.bool), None)
    assert action.shape == (1, 2)
    assert main(["export", "--run-dir", str(run_dir), "--out", str(tmp_path / "exported")]) == 0
    assert json.loads((tmp_path / "exported" / "config.json").read_text())["env_options"] == {"obs": "vector"}

    capsys.readouterr()
    assert main(["dream", "--checkpoint", str(run_dir), "--logdir", str(tmp_path / "dreams")]) == 2
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "observes (4,) vectors, which have no video" in message, message


def test_offline_pretraining_reads_a_vector_store(tmp_path):
    online = tmp_path / "online"
    assert main(["dreamer", "--env", "CartPole-v1", "--preset", "debug", "--steps", "230", "--prefill", "200",
                 "--evaluate", "false", "--run-dir", str(online)]) == 0
    offline = tmp_path / "offline"
    assert main(["dreamer", "--env", "CartPole-v1", "--preset", "debug", "--store", str(online / "episodes"),
                 "--online", "false", "--evaluate", "false", "--pretrain-steps", "3", "--run-dir", str(offline)]) == 0
    assert worldmodels.load(offline).obs_shape == (4,)


def test_obs_pixels_keeps_rendered_frames():
    config = build_config(CONFIG, {"env": "CartPole-v1", "obs": "pixels"}, presets=PRESETS, preset="debug")
    module, replay = build(config)
    try:
        assert replay.obs_shape == (16, 16, 3) and not module.world_model.vector_obs
    finally:
        replay.env.close()
