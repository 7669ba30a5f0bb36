"""Bad input to the training commands: one line on stderr, exit code 2, nothing collected or written."""

from __future__ import annotations

import pytest

from scripts.cli import main


@pytest.mark.parametrize("argv, expected", [
    (["worldmodels", "--preset", "debug", "--env", "worldmodels/LeftRight-v0", "--image-size", "30"], "multiple of 16"),
    (["worldmodels", "--preset", "debug", "--env", "worldmodels/LeftRight-v0", "--population", "0"], "--population"),
    (["worldmodels", "--preset", "debug", "--env", "ALE/Pongg-v5"], "ALE/Pong-v5"),
    (["dreamer", "--preset", "debug", "--env", "cartpole-v1"], "CartPole-v1"),
    (["evaluate"], "not a finished `wm worldmodels` run"),
])
def test_one_line_error_and_nothing_written(tmp_path, capsys, argv, expected):
    run_dir = tmp_path / "run"
    assert main([*argv, "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (run_dir / "episodes" / "episodes").exists() or not any((run_dir / "episodes" / "episodes").iterdir())
