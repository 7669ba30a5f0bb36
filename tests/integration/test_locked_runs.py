"""Issue 15 item 4 (and issue 25 item 4 for `wm pets`, `wm mbpo`, `wm tdmpc`): a second `wm collect` / `wm worldmodels`
/ `wm dreamer` / `wm finetune` / `wm pets` / `wm mbpo` / `wm tdmpc` on a directory another process is writing is
refused in one line naming that process; nothing is written into it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scripts.cli import main

HOLD = "import sys, time; from worldmodels.locking import exclusive_lock\n" \
       "with exclusive_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)"


@pytest.mark.parametrize("argv, flag, locked", [
    (["collect", "--env", "worldmodels/Catch-v0", "--episodes", "2", "--num-envs", "1"], "--out", "."),
    (["dreamer", "--preset", "debug", "--env", "worldmodels/Catch-v0"], "--run-dir", "."),
    (["dreamer", "--preset", "debug", "--env", "worldmodels/Catch-v0"], "--run-dir", "episodes"),  # its store
    (["worldmodels", "--preset", "debug", "--env", "worldmodels/Catch-v0"], "--run-dir", "."),
    (["finetune", "--preset", "debug", "--from", "pong-worldmodels-tiny"], "--run-dir", "."),  # a real model: --from is checked first
    (["pets", "--env", "worldmodels/ContinuousCartPole-v0", "--steps", "20"], "--run-dir", "."),  # unlocked at e99b721
    (["mbpo", "--env", "worldmodels/ContinuousCartPole-v0", "--steps", "20", "--warmup-steps", "10"], "--run-dir", "."),
    (["tdmpc", "--env", "worldmodels/ContinuousCartPole-v0", "--steps", "20", "--seed-steps", "10"], "--run-dir", "."),
])
def test_second_writer_is_refused(tmp_path, capsys, argv, flag, locked):
    target = tmp_path / "dir"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(target / locked)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main([*argv, flag, str(target)]) == 2
    finally:
        holder.kill()
        holder.wait()
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and f"in use by process {holder.pid}" in errors[0], errors
    assert not (target / "episodes" / "episodes").exists()  # no episode was written
