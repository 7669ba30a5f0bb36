"""`wm plan`: MPC over a saved model of either family writes eval.json next to random; bad flags fail in one line."""

from __future__ import annotations

import json

import pytest

from scripts.cli import main
from tests.support.model_fixtures import tiny_dreamer, tiny_worldmodels
from worldmodels.config import save_json_atomic
from worldmodels.evaluation import EVAL_KEYS
from worldmodels.families.vm import save_stage

SMALL = ["--horizon", "3", "--candidates", "8", "--iterations", "2", "--episodes", "2", "--num-envs", "2",
         "--device", "cpu", "--max-episode-steps", "5"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    vae, mdnrnn, _ = tiny_worldmodels(root / "wm")
    tiny_dreamer(root / "dreamer")
    # A `wm worldmodels` run stopped after M: no controller, yet a world model a planner can act through.
    save_stage(root / "run" / "vae", "vae", vae)
    save_stage(root / "run" / "mdnrnn", "mdnrnn", mdnrnn)
    save_json_atomic(root / "run" / "config.json", {"env": "worldmodels/Catch-v0"})
    return root


@pytest.mark.parametrize("planner", ["shooting", "cem", "icem"])
def test_plan_writes_eval_json_next_to_random(models, tmp_path, capsys, planner):
    out = tmp_path / "eval.json"
    assert main(["plan", "--checkpoint", str(models / "wm"), "--planner", planner, "--out", str(out), *SMALL]) == 0
    record = json.loads(out.read_text())
    assert set(EVAL_KEYS) <= set(record) and record["episodes"] == 2 and len(record["random_returns"]) == 2
    info = record["planner"]
    assert info["planner"] == planner and info["horizon"] == 3 and info["family"] == "worldmodels"
    # 2 episodes of 5 steps on 2 envs in one wave: 6 planning calls of 2 envs each (the driver also acts on the
    # final frame, whose row records the truncation; the env ignores that action).
    assert info["plan_calls"] == 6 and info["actions_planned"] == 12 and info["ms_per_action"] > 0
    assert f"wm plan: {planner} agent" in capsys.readouterr().out


def test_plan_over_a_run_without_controller_writes_next_to_it(models):
    assert main(["plan", "--checkpoint", str(models / "run"), "--planner", "cem", *SMALL]) == 0
    record = json.loads((models / "run" / "eval-plan-cem.json").read_text())
    assert record["env"] == "worldmodels/Catch-v0" and record["planner"]["family"] == "worldmodels"
    assert main(["evaluate", "--run-dir", str(models / "run"), "--device", "cpu"]) == 2  # no C: only a planner acts


def test_plan_over_a_dreamer_model_with_value_and_policy_prior(models, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["plan", "--checkpoint", str(models / "dreamer"), "--value", "true", "--prior-candidates", "3",
                 "--out", str(out), *SMALL]) == 0
    info = json.loads(out.read_text())["planner"]
    assert info["family"] == "dreamer" and info["value"] is True and info["prior_candidates"] == 3


@pytest.mark.parametrize("flags, words", [
    (["--planner", "mppi"], "continuous"),                      # MPPI searches Box actions; Catch is discrete
    (["--value", "true"], "critic"),                           # World Models have no critic
    (["--candidates", "4", "--elites", "5"], "elites"),
    (["--checkpoint", "no/such/model"], "--checkpoint"),
    (["--checkpoint", ""], "--checkpoint is required"),
    (["--env", "CartPole-v1"], "trained on"),                    # another observation / action space
    (["--planner", "annealing"], "--planner"),
    (["--horizon", "0"], "--horizon"),
    (["--threads", "many"], "threads"),
])
def test_bad_flags_fail_in_one_line(models, tmp_path, capsys, flags, words):
    argv = ["plan", "--checkpoint", str(models / "wm"), "--out", str(tmp_path / "eval.json"), *SMALL, *flags]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refuses unknown choices itself
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert words in err[-1] and "Traceback" not in "\n".join(err), err
    assert not (tmp_path / "eval.json").exists()
