"""Issue 15 item 5 (part): rerunning a finished run changes nothing: Dreamer keeps its env steps, checkpoint and
evaluation; World Models keeps the controller selection in eval.json."""

from __future__ import annotations

import json

from scripts.cli import main


def _files(run_dir) -> dict:
    return {name: (run_dir / name).read_text() for name in ("results.json", "eval.json")}


def test_rerunning_a_finished_dreamer_run_changes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["dreamer", "--preset", "debug", "--env", "worldmodels/Catch-v0", "--steps", "260", "--eval-episodes", "2",
            "--run-dir", str(run_dir)]
    assert main(argv) == 0
    before, ckpt = _files(run_dir), (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    episodes = sorted(p.name for p in (run_dir / "episodes" / "episodes").iterdir())
    assert main(argv) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert _files(run_dir) == before and (run_dir / "checkpoints" / "last.ckpt").read_bytes() == ckpt
    assert sorted(p.name for p in (run_dir / "episodes" / "episodes").iterdir()) == episodes


def test_rerunning_a_finished_worldmodels_run_keeps_the_selection(tmp_path):
    run_dir = tmp_path / "run"
    argv = ["worldmodels", "--preset", "debug", "--env", "worldmodels/Catch-v0", "--run-dir", str(run_dir)]
    assert main(argv) == 0
    selection = json.loads((run_dir / "eval.json").read_text())["selection"]
    assert selection and selection["chosen"] in ("best_candidate", "cmaes_mean")
    assert main(argv) == 0
    assert json.loads((run_dir / "eval.json").read_text())["selection"] == selection
