"""`wm export`: a finished run becomes a safetensors + JSON directory with held-out metrics and a model card."""

from __future__ import annotations

import dataclasses
import json

from scripts.export import ExportConfig, run as export
from scripts.worldmodels_pipeline import PRESETS, WorldModelsConfig, run as train
from worldmodels.config import apply_overrides
from worldmodels.envs.toy import LEFTRIGHT_ID
from worldmodels.pretrained import from_pretrained


def test_export_writes_loadable_model_with_heldout_metrics_and_card(tmp_path):
    config = apply_overrides(WorldModelsConfig(), PRESETS["debug"], source="debug")
    train(dataclasses.replace(config, env=LEFTRIGHT_ID, run_dir=str(tmp_path / "run")))
    out = tmp_path / "pretrained"
    result = export(ExportConfig(run_dir=str(tmp_path / "run"), out=str(out), train_command="wm worldmodels --preset debug",
                                 wall_time="1 s", heldout_episodes=2, context=3, horizon=5))
    metrics = json.loads((out / "config.json").read_text())["metrics"]
    assert {"return_mean", "random_mean", "kpi/open_loop_mse_h1", "kpi/open_loop_psnr_h5"} <= set(metrics)
    assert 0.0 <= metrics["kpi/open_loop_mse_h1"] <= 1.0 and result["size_mb"] < 25
    card = (out / "README.md").read_text()
    assert "wm worldmodels --preset debug" in card and "kpi/open_loop_psnr_h5" in card and "hardware" in card
    bundle = from_pretrained(out)
    assert bundle.env_id == LEFTRIGHT_ID
