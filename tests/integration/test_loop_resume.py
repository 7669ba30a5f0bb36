"""Issue 25 item 4: `wm pets`, `wm mbpo` and `wm tdmpc` stopped right after a checkpoint (mid-run, between two
episodes) and run again resume there and end with the same weights and results as a run that was never stopped.

In process and fast: the stop is an exception raised after the k-th checkpoint was written, the rerun the same
``train_*`` call. ``tests/integration/test_kill_harness.py`` SIGKILLs the commands at random moments instead."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.support.records import without_keys
from trainers.runs import loop_resume, mbpo, pets, tdmpc
from worldmodels.config import build_config


ENV = "worldmodels/ContinuousCartPole-v0"
FAMILIES = {
    "pets": (pets, pets.PETSRunConfig, pets.train_pets, {
        "steps": 90, "ensemble": 2, "hidden": 8, "layers": 2, "horizon": 3, "candidates": 8, "iterations": 1,
        "particles": 1, "cem_elites": 2, "epochs": 1}),
    "mbpo": (mbpo, mbpo.MBPORunConfig, mbpo.train_mbpo, {
        "steps": 90, "warmup_steps": 20, "model_every": 20, "rollout_every": 20, "rollouts": 20,
        "k_schedule": [0, 40, 1, 3], "updates_per_step": 1, "batch_size": 8, "hidden": 16, "model_hidden": 16,
        "ensemble": 2}),
    "tdmpc": (tdmpc, tdmpc.TDMPCRunConfig, tdmpc.train_tdmpc, {
        "steps": 110, "seed_steps": 30, "pretrain_updates": 3, "hidden": 16, "latent_dim": 16, "batch_size": 4,
        "candidates": 8, "iterations": 1, "num_q": 2}),
}


class Stopped(Exception):
    """Raised in place of the run after a checkpoint: what a kill right after it leaves behind."""


def trained(family: str, run_dir, monkeypatch=None, *, stop_after: int | None = None):
    """``(weights, results)`` of one ``train_*`` call into ``run_dir``; with ``stop_after`` it raises
    :class:`Stopped` once that many checkpoints were written (counting only those before the final one)."""
    module, config_class, train, flags = FAMILIES[family]
    config = build_config(config_class, {"env": ENV, "run_dir": str(run_dir), "seed": 5, "checkpoint_every": 1,
                                         **flags})
    if stop_after is not None:
        written = []

        def save_then_stop(run_dir_, tensors, state):
            loop_resume.save_checkpoint(run_dir_, tensors, state)
            written.append(state["env_steps"])
            if len(written) == stop_after and not state.get("finished"):
                raise Stopped(state["env_steps"])

        monkeypatch.setattr(module, "save_checkpoint", save_then_stop)
    result = train(config, None)
    result.save(run_dir / "model")
    return load_file(str(run_dir / "model" / "model.safetensors")), result.results, result.env_steps


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_run_stopped_after_a_checkpoint_resumes_to_the_same_weights(family, tmp_path, monkeypatch):
    straight, straight_results, straight_steps = trained(family, tmp_path / "straight")
    with pytest.raises(Stopped) as stop:
        trained(family, tmp_path / "stopped", monkeypatch, stop_after=2)
    stopped_at = int(str(stop.value))
    assert 0 < stopped_at < straight_steps  # stopped mid-run: the rest is trained by the resume
    state = json.loads((tmp_path / "stopped" / "resume" / "state.json").read_text())
    assert state["env_steps"] == stopped_at and not state["finished"]
    monkeypatch.undo()
    weights, results, steps = trained(family, tmp_path / "stopped")
    assert steps == straight_steps
    assert weights.keys() == straight.keys()
    for key in weights:
        assert torch.equal(weights[key], straight[key]), f"{family}: {key} differs after the resume"
    assert json.dumps(without_keys(results), sort_keys=True) == json.dumps(without_keys(straight_results),
                                                                             sort_keys=True)


def test_a_finished_checkpoint_trains_nothing_more(tmp_path, monkeypatch):
    """Killed during the evaluation: the rerun finds the final checkpoint and goes straight to saving."""
    first, _, _ = trained("pets", tmp_path / "run")
    monkeypatch.setattr(pets.EnsembleTrainer, "fit", lambda *a: pytest.fail("a finished run refitted its ensemble"))
    again, _, _ = trained("pets", tmp_path / "run")
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_a_damaged_checkpoint_is_one_line(tmp_path):
    trained("tdmpc", tmp_path / "run")
    state = json.loads((tmp_path / "run" / "resume" / "state.json").read_text())
    (tmp_path / "run" / "resume" / state["tensors"]).write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match=r"SHA-256 differs.*remove .*resume"):
        trained("tdmpc", tmp_path / "run")


def test_a_rerun_with_other_settings_is_refused_and_a_finished_one_says_so(tmp_path, capsys):
    from scripts.cli import main

    run_dir = tmp_path / "run"
    argv = ["pets", "--env", ENV, "--steps", "40", "--eval-episodes", "1", "--eval-envs", "1", "--run-dir",
            str(run_dir), "--ensemble", "2", "--hidden", "8", "--candidates", "8", "--iterations", "1",
            "--cem-elites", "2", "--epochs", "1", "--tensorboard", "false"]
    assert main(argv) == 0
    files = {name: (run_dir / name).read_bytes() for name in ("config.json", "eval.json", "results.json")}
    capsys.readouterr()
    assert main([*argv, "--hidden", "16"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "--hidden 8 -> 16" in errors[0], errors
    assert main([*argv, "--checkpoint-every", "7"]) == 0  # how often to checkpoint may differ: the same run
    assert "already finished with this config (40 env steps); nothing to do" in capsys.readouterr().out
    assert {name: (run_dir / name).read_bytes() for name in files} == files
