"""``wm pets``: the command runs the online loop end to end and leaves eval.json, results.json and the model."""

from __future__ import annotations

import json

import torch

from scripts.cli import main
from worldmodels.evaluation import EVAL_KEYS
from worldmodels.pets.family import load_whole

TINY = ["--ensemble", "2", "--hidden", "8", "--layers", "2", "--horizon", "3", "--candidates", "8", "--iterations", "1",
        "--particles", "1", "--cem-elites", "2", "--epochs", "1", "--eval-envs", "2"]


def test_wm_pets_writes_eval_results_and_a_loadable_model(tmp_path):
    run_dir = tmp_path / "run"
    code = main(["pets", "--env", "worldmodels/ContinuousCartPole-v0", "--steps", "60", "--eval-episodes", "2",
                 "--run-dir", str(run_dir), "--seed", "3", "--propagation", "ts1", *TINY])
    assert code == 0
    record = json.loads((run_dir / "eval.json").read_text())
    assert set(EVAL_KEYS) <= set(record) and record["episodes"] == 2 and record["env_steps"] == 60
    results = json.loads((run_dir / "results.json").read_text())
    assert results["env_steps"] == 60 and results["episode_returns"]  # the budget counts real transitions exactly
    assert (run_dir / "tb").is_dir()
    model = load_whole(run_dir / "model")
    assert model.propagation == "ts1" and model.ensemble.ensemble_size == 2
    start = model.observe(torch.zeros(1, 1, 4), None, torch.ones(1, 1, dtype=torch.bool))[1]
    assert model.imagine(start, torch.zeros(1, 3, 1), 3).reward.shape == (1, 3)


def test_wm_pets_bad_input_is_one_line(tmp_path, capsys):
    assert main(["pets", "--env", "CartPole-v1", "--run-dir", str(tmp_path / "r"), "--steps", "5"]) == 2
    assert "PETS plans over Box actions" in capsys.readouterr().err
    assert main(["pets", "--elites", "4", "--ensemble", "2", "--run-dir", str(tmp_path / "r"), "--steps", "5"]) == 2
    assert "--elites 4 must be <= --ensemble 2" in capsys.readouterr().err
