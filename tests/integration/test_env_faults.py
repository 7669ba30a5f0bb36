"""A user's env that raises in step() / reset(), returns frames of the wrong rank or a NaN reward: one line naming
the env and what it did, exit code 2, no traceback (``WM_DEBUG=1`` re-raises, the env's own exception chained);
envs in tests/support/faulty_envs.py."""

from __future__ import annotations

import gymnasium as gym
import pytest
from faulty_envs import NanRewardFrames
from gymnasium.vector import AutoresetMode

import trainers.data.online
from scripts.cli import main
from worldmodels.envs import EnvError

STEP = "env faulty_envs:RaisesInStep-v0 raised RuntimeError in step(): boom; WM_DEBUG=1 shows the traceback"
RESET = "env faulty_envs:RaisesInReset-v0 raised RuntimeError in reset(): no reset today; WM_DEBUG=1 shows the traceback"
DREAMER = ["dreamer", "--preset", "debug", "--steps", "300"]
WORLDMODELS = ["worldmodels", "--preset", "debug"]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert "Traceback" not in err and len(errors) == 1, err
    return errors[0]


@pytest.fixture(scope="module")
def catch_run(tmp_path_factory):
    """A debug World Models run on Catch: (16, 16, 3)-resizable frames, 3 actions, as the faulty frame envs."""
    run_dir = tmp_path_factory.mktemp("catch") / "run"
    assert main([*WORLDMODELS, "--env", "worldmodels/Catch-v0", "--run-dir", str(run_dir)]) == 0
    return run_dir


@pytest.mark.parametrize("env, expected", [("RaisesInStep-v0", STEP), ("RaisesInReset-v0", RESET)])
@pytest.mark.parametrize("command", ["collect", "worldmodels", "dreamer"])
def test_an_env_that_raises_is_one_line(tmp_path, capsys, command, env, expected):
    out = ["--out", str(tmp_path / "out")] if command == "collect" else ["--run-dir", str(tmp_path / "out")]
    argv = {"collect": ["collect", "--episodes", "2", "--num-envs", "1", "--image-size", "16"],
            "worldmodels": WORLDMODELS, "dreamer": DREAMER}[command]
    assert main([*argv, "--env", f"faulty_envs:{env}", *out]) == 2  # was a traceback
    assert _error_line(capsys) == f"wm {command}: error: {expected}"
    assert not (tmp_path / "out" / "eval.json").exists()


def test_evaluate_on_an_env_that_raises_is_one_line(catch_run, capsys):
    before = (catch_run / "eval.json").read_text()
    argv = ["evaluate", "--run-dir", str(catch_run), "--episodes", "1", "--num-envs", "1"]
    assert main([*argv, "--env", "faulty_envs:RaisesInStep-v0"]) == 2
    assert _error_line(capsys) == f"wm evaluate: error: {STEP}"
    assert (catch_run / "eval.json").read_text() == before


def test_wm_debug_shows_the_envs_own_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("WM_DEBUG", "1")
    argv = ["collect", "--episodes", "1", "--num-envs", "1", "--image-size", "16", "--out", str(tmp_path / "s")]
    with pytest.raises(EnvError, match="raised RuntimeError in step") as raised:
        main([*argv, "--env", "faulty_envs:RaisesInStep-v0"])
    assert isinstance(raised.value.__cause__, RuntimeError) and str(raised.value.__cause__) == "boom"


def test_a_frame_of_the_wrong_rank_names_the_env_and_the_shapes(tmp_path, capsys):
    argv = ["collect", "--episodes", "1", "--num-envs", "2", "--image-size", "16", "--out", str(tmp_path / "s")]
    assert main([*argv, "--env", "faulty_envs:GrayFrames-v0"]) == 2  # was "Output array has wrong dimensionality"
    assert _error_line(capsys) == ("wm collect: error: env GrayFrames-v0 returned a frame of shape (16, 16), expected "
                                   "(H, W, 3) RGB as its observation space (16, 16, 3) says")


def test_dreamer_names_the_envs_nan_reward_not_the_learning_rate(tmp_path, capsys):
    assert main([*DREAMER, "--env", "faulty_envs:NanRewardFrames-v0", "--run-dir", str(tmp_path / "run")]) == 2
    line = _error_line(capsys)
    assert "env faulty_envs:NanRewardFrames-v0 returned the reward nan at episode 0 step 3" in line, line
    assert "-lr" not in line, line
    assert not (tmp_path / "run" / "eval.json").exists()


def test_dreamer_blames_a_nan_batch_not_the_learning_rate(tmp_path, capsys, monkeypatch):
    """NaN rewards that reach the replay past the env checks (a raw vector env here, in an episode that never
    ends, so the episode store never sees it): the guard names the batch."""
    class Endless(NanRewardFrames):
        def step(self, action):
            return *super().step(action)[:3], False, {}

    def raw_env(env_id, num_envs, **kwargs):
        return gym.vector.SyncVectorEnv([Endless] * num_envs, autoreset_mode=AutoresetMode.NEXT_STEP)

    monkeypatch.setattr(trainers.data.online, "make_vector", raw_env)
    assert main([*DREAMER, "--env", "faulty_envs:NanRewardFrames-v0", "--run-dir", str(tmp_path / "run")]) == 2
    line = _error_line(capsys)
    assert line.startswith("wm dreamer: error: dreamer step ") and "model update: loss part 'reward' is nan" in line, line
    assert "the batch's reward is not finite" in line and "-lr" not in line, line
