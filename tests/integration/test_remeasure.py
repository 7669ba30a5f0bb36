"""`wm remeasure`: a saved model's held-out KPIs and baselines are re-measured in place; the weights are never written."""

from __future__ import annotations

import hashlib
import json

from model_fixtures import tiny_worldmodels

from scripts.cli import main


def test_remeasure_adds_the_baselines_and_keeps_the_weights(tmp_path, capsys):
    tiny_worldmodels(tmp_path / "model")
    weights = hashlib.sha256((tmp_path / "model" / "model.safetensors").read_bytes()).hexdigest()
    assert main(["remeasure", "--checkpoint", str(tmp_path / "model"), "--heldout-episodes", "2"]) == 0
    metrics = json.loads((tmp_path / "model" / "config.json").read_text())["metrics"]
    for key in ("kpi/open_loop_mse_h1", "kpi/copy_last_mse_h1", "kpi/mean_frame_mse_h1"):
        assert key in metrics, sorted(metrics)
    assert metrics["return"] == 0.5  # metrics the measurement does not produce are kept
    assert hashlib.sha256((tmp_path / "model" / "model.safetensors").read_bytes()).hexdigest() == weights


def test_remeasure_without_a_checkpoint_is_one_line(capsys):
    assert main(["remeasure"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--checkpoint is required" in err[0]
