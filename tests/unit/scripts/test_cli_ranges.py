"""Issue 15 item 9: nonsense that used to hang or report "agent vs random" after zero updates is refused
up front, in one line, with exit code 2, before any env, trainer or run directory exists."""

from __future__ import annotations

import pytest

from scripts.cli import main

DREAMER = ["dreamer", "--preset", "debug", "--env", "worldmodels/Catch-v0"]
WORLDMODELS = ["worldmodels", "--preset", "debug", "--env", "worldmodels/Catch-v0"]
TDMPC = ["--env", "Pendulum-v1", "--steps", "20", "--seed-steps", "10", "--eval-episodes", "1", "--candidates", "8"]


@pytest.mark.parametrize("argv, expected", [
    ([*DREAMER, "--capacity", "5"], "--capacity 5 must hold one --seq-len window per env"),  # used to hang
    ([*DREAMER, "--steps", "0"], "--steps must be a positive integer"),
    ([*DREAMER, "--replay-ratio", "0"], "--replay-ratio must be a number > 0"),
    ([*DREAMER, "--steps", "100", "--prefill", "200"], "--prefill 200 must be below --steps"),
    ([*DREAMER, "--eval-episodes", "0"], "--eval-episodes must be a positive integer"),  # used to write NaN results
    ([*WORLDMODELS, "--generations", "0"], "--generations must be a positive integer"),
    ([*WORLDMODELS, "--eval-episodes", "0"], "--eval-episodes must be a positive integer"),
    ([*WORLDMODELS, "--temperature", "-1"], "--temperature must be a number > 0"),
    (["collect", "--env", "worldmodels/Catch-v0", "--seed", "-1"], "--seed must be a non-negative integer"),
    # issue 15 item 10: these were tracebacks
    (["collect", "--env", "worldmodels/Catch-v0", "--image-size", "100000"], "--image-size must be a number <= 1024"),
    ([*WORLDMODELS, "--vae-stages", "0"], "--vae-stages must be a positive integer"),
    ([*WORLDMODELS, "--device", "tpu"], "--device 'tpu' is not supported"),
    ([*WORLDMODELS, "--devices", "0"], "--devices must be a positive integer"),
    ([*DREAMER, "--num-bins", "1"], "--num-bins must be a number >= 2"),
    ([*DREAMER, "--horizon", "0"], "--horizon must be a positive integer"),
    ([*DREAMER, "--seq-len", "0"], "--seq-len must be a number >= 2"),
    ([*DREAMER, "--replay-ratio", "-1"], "--replay-ratio must be a number > 0"),
    (["evaluate", "--seed", "-5"], "--seed must be a non-negative integer"),
    (["evaluate", "--episodes", "0"], "--episodes must be a positive integer"),  # used to name --num-envs
    (["export", "--heldout-episodes", "0"], "--heldout-episodes must be a positive integer"),  # used to name --episodes
    # hardening: these ran and reported a result (0 SAC updates; a replay that never held a window: 0 updates)
    (["mbpo", "--env", "Pendulum-v1", "--warmup-steps", "100000", "--steps", "100", "--eval-episodes", "1"],
     "--warmup-steps 100000 must be below --steps 100"),
    (["tdmpc", *TDMPC, "--capacity", "1"], "--capacity 1 must hold one training window"),
    (["tdmpc", *TDMPC, "--horizon", "8", "--capacity", "8"], "--capacity 8 must hold one training window"),
    (["pets", "--cem-elites", "20", "--candidates", "10"], "--cem-elites 20 must be <= --candidates 10"),
    (["pets", "--elites", "6", "--ensemble", "5"], "--elites 6 must be <= --ensemble 5"),
    (["mbpo", "--elites", "6", "--ensemble", "5", "--steps", "20", "--warmup-steps", "10"],
     "--elites 6 must be <= --ensemble 5"),
])
def test_refused_up_front(tmp_path, capsys, argv, expected):
    run_dir = tmp_path / "run"
    flag = "--out" if argv[0] == "collect" else "--run-dir"
    assert main([*argv, flag, str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not run_dir.exists()


@pytest.mark.parametrize("command", [DREAMER, WORLDMODELS, ["export", "--run-dir", "."]])
def test_a_file_where_a_directory_belongs_is_one_line(tmp_path, capsys, command):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    flag = "--out" if command[0] == "export" else "--run-dir"
    assert main([*command, flag, str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{str(blocker)!r} is a file" in err[0], err
