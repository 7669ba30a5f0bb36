"""`wm plan` over a pixel world model logs the planner KPIs: decoded-frame open-loop error by horizon, planning
milliseconds per action and return vs env steps (PETS runs: tests/integration/test_plan_pets.py)."""

from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from scripts.cli import main
from tests.support.model_fixtures import tiny_dreamer, tiny_worldmodels

H = 3


@pytest.mark.parametrize("family", ["worldmodels", "dreamer"])
def test_wm_plan_logs_frame_open_loop_error_by_horizon(tmp_path, family):
    (tiny_worldmodels if family == "worldmodels" else tiny_dreamer)(tmp_path / "model")
    out = tmp_path / "plan" / "eval.json"
    # Episodes of 12 steps hold windows of 4 context frames + H predicted ones.
    assert main(["plan", "--checkpoint", str(tmp_path / "model"), "--planner", "cem", "--horizon", str(H),
                 "--candidates", "8", "--iterations", "1", "--episodes", "2", "--num-envs", "2", "--device", "cpu",
                 "--max-episode-steps", "12", "--out", str(out)]) == 0
    mse = json.loads(out.read_text())["open_loop"]["mse"]
    assert len(mse) == H and all(0.0 <= m <= 1.0 for m in mse)  # frame MSE on the [0, 1] scale
    events = EventAccumulator(str(tmp_path / "plan" / "tb" / "plan-cem"))  # next to --out
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"kpi/return_vs_env_steps", "kpi/plan_ms_per_action", "kpi/open_loop_mse_h1",
            f"kpi/open_loop_mse_h{H}"} <= tags, sorted(tags)
    assert not any("disagreement" in tag for tag in tags)  # no ensemble: no disagreement KPI
