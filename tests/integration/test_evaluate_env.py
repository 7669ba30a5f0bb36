"""Issue 15 item 8 (evaluate): another env's spaces are refused in one line, and an evaluation on another env
with the same spaces writes its own file, never the run's eval.json."""

from __future__ import annotations

import gymnasium as gym
import pytest

from scripts.cli import main
from worldmodels.envs.toy import CatchEnv

TWIN_ID = "worldmodels-test/CatchTwin-v0"  # Catch under another id: same spaces, another env


@pytest.fixture(scope="module")
def catch_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("catch") / "run"
    assert main(["worldmodels", "--preset", "debug", "--env", "worldmodels/Catch-v0", "--run-dir", str(run_dir)]) == 0
    return run_dir


@pytest.mark.parametrize("env_id, expected", [
    ("worldmodels/LeftRight-v0", "discrete(2) actions"),  # 2 actions against a 3-action controller
    ("CarRacing-v3", "continuous(3) actions"),  # used to die in an IndexError
])
def test_an_env_with_other_spaces_is_refused(catch_run, capsys, env_id, expected):
    before = (catch_run / "eval.json").read_text()
    assert main(["evaluate", "--run-dir", str(catch_run), "--env", env_id, "--episodes", "1"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and expected in errors[0] and "discrete(3)" in errors[0], errors
    assert (catch_run / "eval.json").read_text() == before


def test_another_env_writes_its_own_eval_file(catch_run):
    if TWIN_ID not in gym.registry:
        gym.register(TWIN_ID, entry_point=CatchEnv, max_episode_steps=100)
    before = (catch_run / "eval.json").read_text()
    assert main(["evaluate", "--run-dir", str(catch_run), "--env", TWIN_ID, "--episodes", "1", "--num-envs", "1"]) == 0
    assert (catch_run / "eval.json").read_text() == before
    assert (catch_run / "eval-1ep-seed10000-worldmodels-test_CatchTwin-v0.json").is_file()


def test_evaluating_the_run_on_its_own_env_never_overwrites_its_eval_json(catch_run, capsys):
    """Issue 25 item 6: `wm evaluate --run-dir R --episodes 2` replaced the training run's eval.json (3 episodes -> 2)
    without a word (e99b721). Now the record is named by what was played, and the run's own record stays."""
    before = (catch_run / "eval.json").read_text()
    assert main(["evaluate", "--run-dir", str(catch_run), "--episodes", "2", "--num-envs", "1", "--seed", "7"]) == 0
    assert (catch_run / "eval.json").read_text() == before
    record = catch_run / "eval-2ep-seed7.json"
    assert record.is_file() and str(record) in capsys.readouterr().out


def test_the_dream_c_was_trained_in_is_saved_with_the_model(catch_run, tmp_path):
    """Issue 25 item 6: the dream temperature C was trained at is saved with the model (through an export too) and
    is the one wm dream / wm play imagine at (e99b721 dreamed at 1 whatever C was trained at)."""
    from worldmodels.dreams import dream_temperature
    from worldmodels.pretrained import export_from_run
    from worldmodels.registry import load

    model = load(catch_run)
    assert model.config["dream"] == {"temperature": 1.15, "sample_done": False, "horizon": 8}  # the debug run's
    export_from_run(catch_run, tmp_path / "export")
    assert dream_temperature(load(tmp_path / "export").config) == 1.15
    assert dream_temperature({}) == 1.0  # a model whose C was not trained in a dream: M's own distribution
