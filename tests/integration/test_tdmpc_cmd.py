"""`wm tdmpc` end to end on tiny settings: from state vectors (MPPI) and from frames (discrete prior)."""

import json

import pytest

from scripts.cli import main
from worldmodels.evaluation import EVAL_KEYS
from worldmodels.registry import load

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
    assert (run_dir / "results.json").exists() and (run_dir / "model" / "model.safetensors").exists()
    assert any((run_dir / "tb").iterdir())
    assert ("prior_returns" in record) == (acting == "mppi")  # the prior alone on the same seeds, next to MPPI
    # Issue 25 item 2: the run is a whole model of the "tdmpc" family (e99b721 saved a bare state_dict that nothing
    # could load), and `wm evaluate` replays the run's own evaluation exactly: same seeds, same acting rule.
    model = load(run_dir)
    assert model.family == "tdmpc" and model.env_options["obs"] == ("pixels" if extra else "auto")
    out = tmp_path / "again.json"
    assert main(["evaluate", "--run-dir", str(run_dir), "--episodes", "2", "--seed", "10003", "--out", str(out)]) == 0
    again = json.loads(out.read_text())
    assert again["returns"] == record["returns"] and again["random_returns"] == record["random_returns"]
