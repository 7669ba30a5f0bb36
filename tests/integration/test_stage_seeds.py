"""Issue 15 item 5 (part): a World Models run stopped right after vae/DONE and rerun ends bit-identical to an
uninterrupted run with the same seed (M, C, eval.json): each stage's seed derives from the run seed and the stage."""

from __future__ import annotations

import json


import scripts.worldmodels_pipeline as pipeline
from scripts.cli import main

ARGV = ["worldmodels", "--preset", "debug", "--env", "worldmodels/Catch-v0"]


def _outcome(run_dir) -> dict:
    evaluation = json.loads((run_dir / "eval.json").read_text())
    evaluation.pop("seconds")
    return {"mdnrnn": (run_dir / "mdnrnn" / "model.safetensors").read_bytes(),
            "controller": (run_dir / "controller" / "model.safetensors").read_bytes(), "eval": evaluation}


def test_stopped_after_v_then_rerun_equals_uninterrupted(tmp_path, monkeypatch):
    assert main([*ARGV, "--run-dir", str(tmp_path / "straight")]) == 0

    def stop(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill right after vae/DONE: the rerun starts M in a fresh state

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "stage_mdnrnn", stop)
        assert main([*ARGV, "--run-dir", str(tmp_path / "stopped")]) == 130
    assert (tmp_path / "stopped" / "vae" / "DONE").exists() and not (tmp_path / "stopped" / "mdnrnn" / "DONE").exists()
    main(["collect", "--env", "worldmodels/Catch-v0", "--episodes", "1", "--out", str(tmp_path / "noise")])  # RNG use in between
    assert main([*ARGV, "--run-dir", str(tmp_path / "stopped")]) == 0
    straight, resumed = _outcome(tmp_path / "straight"), _outcome(tmp_path / "stopped")
    for key in straight:
        assert straight[key] == resumed[key], key


