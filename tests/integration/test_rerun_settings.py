"""Issue 14 item 6: rerunning into a run directory with other settings is refused in one line naming the keys
that differ (before anything is trained or config.json is rewritten); the same settings resume, and the settings
of ``RERUN_MAY_DIFFER`` (the directory's path, threads, device, log / checkpoint / dream intervals) may change."""

from __future__ import annotations

import json

import pytest

from scripts import dreamer
from scripts.cli import main
from worldmodels.config import ConfigError, RERUN_MAY_DIFFER, build_config, check_same_settings, save_json_atomic, to_dict

WM = ["worldmodels", "--preset", "debug", "--env", "worldmodels/Catch-v0", "--evaluate", "false"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_worldmodels_rerun_with_another_z_dim_is_refused_and_the_same_settings_resume(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = [*WM, "--run-dir", str(run_dir)]
    assert main(argv) == 0
    saved = (run_dir / "config.json").read_text()
    vae = (run_dir / "vae" / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()

    assert main([*argv, "--z-dim", "4", "--vae-steps", "6"]) == 2  # debug: z_dim 8, vae_steps 4
    line = _one_error_line(capsys)
    assert "--z-dim 8 -> 4" in line and str(run_dir) in line, line
    assert (run_dir / "config.json").read_text() == saved  # the refused run wrote nothing

    # A budget may grow only while its stage is unfinished: V is done, so more V steps would be skipped silently.
    assert main([*argv, "--vae-steps", "6"]) == 2
    line = _one_error_line(capsys)
    assert "--vae-steps grew" in line and "vae already finished" in line, line
    assert (run_dir / "config.json").read_text() == saved

    # Same settings, another thread count (allowed): every stage is skipped, so V is not written again.
    assert main([*argv, "--threads", "1"]) == 0
    assert (run_dir / "vae" / "model.safetensors").stat().st_mtime_ns == vae


def _dreamer_config(run_dir, **flags):
    return build_config(dreamer.CONFIG, {"run_dir": str(run_dir), **flags}, presets=dreamer.PRESETS, preset="debug")


def test_dreamer_rerun_with_another_batch_size_is_refused_before_training(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_json_atomic(run_dir / "config.json", to_dict(_dreamer_config(run_dir)))  # as a first run leaves it
    argv = ["dreamer", "--preset", "debug", "--run-dir", str(run_dir), "--batch-size", "3"]  # debug: 4
    assert main(argv) == 2
    assert "--batch-size 4 -> 3" in _one_error_line(capsys)
    written = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    assert written <= {"config.json", ".lock", "episodes/.lock"}, written  # no checkpoint, episode or log: only the locks


def test_only_the_documented_settings_may_differ(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    base = _dreamer_config(run_dir)
    save_json_atomic(run_dir / "config.json", {**to_dict(base), "accelerator": "cpu"})  # an older run's key too
    check_same_settings(run_dir, base)
    check_same_settings(run_dir, _dreamer_config(run_dir, device="cpu", threads="1", log_every=3, checkpoint_every=7,
                                                 dream_every=0, replay_frames="disk"))
    # run_dir: a moved run directory resumes; replay_frames: the same rows, in RAM or in a file
    assert RERUN_MAY_DIFFER == {"run_dir", "device", "accelerator", "threads", "log_every", "checkpoint_every",
                                "dream_every", "replay_frames"}
    with pytest.raises(ConfigError, match=r"--seed 0 -> 1.*--steps"):
        check_same_settings(run_dir, _dreamer_config(run_dir, seed=1, steps=999))
    with pytest.raises(ConfigError, match="--eval-episodes"):  # the evaluation is the run's: use wm evaluate instead
        check_same_settings(run_dir, _dreamer_config(run_dir, eval_episodes=2))


def test_a_damaged_config_json_is_named(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config\.json: not valid JSON"):
        check_same_settings(run_dir, _dreamer_config(run_dir))
    (run_dir / "config.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ConfigError, match=r"config\.json: holds a JSON list"):
        check_same_settings(run_dir, _dreamer_config(run_dir))


def test_a_setting_added_since_the_run_was_written_compares_with_its_default(tmp_path):
    """A config.json from before ``--atari-protocol`` existed played by its default (machado); resuming it under
    another protocol would mix two data distributions in one replay, so that is refused too."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    old = {k: v for k, v in to_dict(_dreamer_config(run_dir, env="ALE/Boxing-v5")).items() if k != "atari_protocol"}
    save_json_atomic(run_dir / "config.json", old)
    check_same_settings(run_dir, _dreamer_config(run_dir, env="ALE/Boxing-v5"))  # the default: resumes
    with pytest.raises(ConfigError, match=r"--atari-protocol 'machado' -> 'atari100k'"):
        check_same_settings(run_dir, _dreamer_config(run_dir, env="ALE/Boxing-v5", atari_protocol="atari100k"))
