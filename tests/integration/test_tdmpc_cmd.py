"""`wm tdmpc` end to end on tiny settings: from state vectors (MPPI) and from frames (discrete prior)."""

import json

import pytest

from scripts.cli import main
from worldmodels.evaluation import EVAL_KEYS

TINY = ["--steps", "40", "--seed-steps", "30", "--pretrain-updates", "3", "--eval-episodes", "2", "--hidden", "16",
        "--latent-dim", "16", "--batch-size", "4", "--candidates", "8", "--iterations", "1", "--num-q", "2"]


@pytest.mark.parametrize("env,extra,acting", [("worldmodels/ContinuousCartPole-v0", [], "mppi"),
                                              ("worldmodels/Catch-v0", ["--obs", "pixels", "--image-size", "32"], "prior")],
                         ids=["vector-mppi", "pixels-prior"])
def test_wm_tdmpc_writes_eval_json(tmp_path, env, extra, acting):
    run_dir = tmp_path / "run"
    assert main(["tdmpc", "--env", env, "--run-dir", str(run_dir), "--seed", "3", *TINY, *extra]) == 0
    record = json.loads((run_dir / "eval.json").read_text())
    assert set(EVAL_KEYS) <= set(record) and record["episodes"] == 2 and record["env_steps"] == 40
    assert record["acting"] == acting  # Catch's discrete actions: the prior acts (MPPI searches a Box)
    assert (run_dir / "results.json").exists() and (run_dir / "model.safetensors").exists()
    assert any((run_dir / "tb").iterdir())
    assert ("prior_returns" in record) == (acting == "mppi")  # the prior alone on the same seeds, next to MPPI
