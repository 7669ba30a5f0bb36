"""`wm mbpo` end to end on tiny settings: eval.json with the one schema, results.json, TensorBoard logs."""

import json

from scripts.cli import main
from worldmodels.evaluation import EVAL_KEYS
from worldmodels.registry import load


def test_wm_mbpo_writes_eval_json(tmp_path):
    run_dir = tmp_path / "run"
    argv = ["mbpo", "--env", "worldmodels/ContinuousCartPole-v0", "--run-dir", str(run_dir), "--seed", "2",
            "--steps", "40", "--warmup-steps", "20", "--model-every", "10", "--rollout-every", "10", "--rollouts", "50",
            "--k-schedule", "0,40,1,3", "--updates-per-step", "1", "--batch-size", "8", "--hidden", "16",
            "--model-hidden", "16", "--ensemble", "2", "--elites", "2", "--eval-episodes", "2"]
    assert main(argv) == 0
    record = json.loads((run_dir / "eval.json").read_text())
    assert set(EVAL_KEYS) <= set(record) and record["episodes"] == 2 and record["env_steps"] == 40
    results = json.loads((run_dir / "results.json").read_text())
    assert results["synthetic_transitions"] > 0 and any((run_dir / "tb").iterdir())
    # Issue 25 item 2: the run is a whole "mbpo" model (e99b721 saved no weights at all, so a run could not be
    # evaluated, served or planned with), and `wm evaluate` replays the run's own evaluation on the same seeds.
    assert load(run_dir).family == "mbpo"
    out = tmp_path / "again.json"
    assert main(["evaluate", "--run-dir", str(run_dir), "--episodes", "2", "--seed", "10002", "--out", str(out)]) == 0
    again = json.loads(out.read_text())
    assert again["returns"] == record["returns"] and again["random_returns"] == record["random_returns"]


def test_wm_mbpo_rejects_a_bad_schedule(tmp_path, capsys):
    assert main(["mbpo", "--run-dir", str(tmp_path / "r"), "--k-schedule", "1,2,3"]) == 2
    assert "--k-schedule" in (err := capsys.readouterr().err) and "wants four numbers" in err
