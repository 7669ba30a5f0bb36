"""`wm export`: a finished run becomes a safetensors + JSON directory with held-out metrics and a model card."""

from __future__ import annotations

import dataclasses
import json

import pytest

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
    # The fair protocol by default: random- and agent-policy (C's) windows; no old first-rows keys.
    assert {"return_mean", "random_mean", "kpi/sample_mean_mse_h1_random", "kpi/best_of_k_mse_h5_agent",
            "kpi/windows_agent"} <= set(metrics), sorted(metrics)
    assert "kpi/open_loop_mse_h1" not in metrics
    assert 0.0 <= metrics["kpi/sample_mean_mse_h1_random"] <= 1.0 and result["size_mb"] < 25
    card = (out / "README.md").read_text()
    assert "wm worldmodels --preset debug" in card and "kpi/best_of_k_mse_h5_agent" in card and "hardware" in card
    assert "### Fair protocol" in card and "**agent-policy episodes**" in card and "### Old protocol" not in card
    bundle = from_pretrained(out)
    assert bundle.env_id == LEFTRIGHT_ID


def test_export_without_out_goes_under_the_run_and_never_overwrites_other_files(tmp_path, monkeypatch):
    """Issue 15 item 2: run from a directory holding README.md and config.json, `wm export` without --out
    writes RUN_DIR/export; it refuses a directory of foreign files or another run's export."""
    config = apply_overrides(WorldModelsConfig(), PRESETS["debug"], source="debug")
    run_dir = tmp_path / "run"
    train(dataclasses.replace(config, env=LEFTRIGHT_ID, run_dir=str(run_dir)))
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("the project's own README")
    (project / "config.json").write_text("{}")
    monkeypatch.chdir(project)
    small = dict(heldout_episodes=1, context=2, horizon=2)
    result = export(ExportConfig(run_dir=str(run_dir), **small))
    assert result["out"] == str(run_dir / "export") and from_pretrained(run_dir / "export").env_id == LEFTRIGHT_ID
    assert (project / "README.md").read_text() == "the project's own README"
    export(ExportConfig(run_dir=str(run_dir), **small))  # a previous export of the same run may be replaced
    for out, other_run in ((project, run_dir), (run_dir / "export", tmp_path / "other-run")):
        other_run.mkdir(exist_ok=True)
        with pytest.raises(ValueError, match="already holds") as info:
            export(ExportConfig(run_dir=str(other_run), out=str(out), **small))
        assert "\n" not in str(info.value)
    assert (project / "README.md").read_text() == "the project's own README" and (project / "config.json").read_text() == "{}"
