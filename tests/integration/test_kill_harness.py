"""Issue 15: SIGKILL each pipeline at random points, rerun until it finishes, and count what the kills cost.

``WM_KILLS`` kills per pipeline (default 3; the issue's acceptance run uses 20). Each kill lands at a random time
after start; the same command is rerun until it exits 0. Checked after the last rerun: the run finished, no
episode was lost and none stored twice (every Catch episode is 10 rows, so the store's size follows from the env
steps), and no temp file or directory is left behind.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from worldmodels.data.store import EpisodeStore

ROOT = Path(__file__).resolve().parents[2]
CATCH_ROWS = 10
KILLS = int(os.environ.get("WM_KILLS", "3"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def kill_and_rerun(command: list[str], *, kills: int, window: tuple[float, float], seed: int) -> int:
    """Start ``command`` ``kills`` times, SIGKILL it after a random delay in ``window`` (unless it ended first),
    then run it to completion. Returns the number of kills that landed."""
    rng, landed = random.Random(seed), 0
    for _ in range(kills):
        process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(*window))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            landed += 1
        process.wait()
    done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return landed


def _no_leftovers(root: Path) -> None:
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".tmp-")]


@pytest.mark.slow
def test_collect_survives_kills(tmp_path):
    out = tmp_path / "store"
    command = [sys.executable, "-m", "scripts.cli", "collect", "--env", "worldmodels/Catch-v0", "--episodes", "300",
               "--num-envs", "2", "--image-size", "16", "--out", str(out)]
    landed = kill_and_rerun(command, kills=KILLS, window=(1.5, 3.0), seed=1)
    store = EpisodeStore.open(out)
    # Exactly the target: none lost, no overshoot. (Indices may skip one a kill left half-written: names are never reused.)
    assert len(store) == 300 and store.num_frames == 300 * CATCH_ROWS
    _no_leftovers(out)
    print(f"\ncollect: {landed} kills, 0 episodes lost, 0 duplicated")


@pytest.mark.slow
def test_dreamer_survives_kills(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "scripts.cli", "dreamer", "--preset", "debug", "--env", "worldmodels/Catch-v0",
               "--steps", "500", "--checkpoint-every", "20", "--eval-episodes", "1", "--run-dir", str(run_dir)]
    landed = kill_and_rerun(command, kills=KILLS, window=(3.0, 9.0), seed=2)
    results = json.loads((run_dir / "results.json").read_text())
    store = EpisodeStore.open(run_dir / "episodes")
    assert results["gradient_steps"] == 300 and 500 <= results["env_steps"] <= 503
    assert len(store) == results["episodes_stored"] == results["env_steps"] // CATCH_ROWS
    _no_leftovers(run_dir / "episodes")
    print(f"\ndreamer: {landed} kills, 0 episodes lost, 0 duplicated")


@pytest.mark.slow
def test_worldmodels_survives_kills(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "scripts.cli", "worldmodels", "--preset", "debug", "--env", "worldmodels/Catch-v0",
               "--episodes", "20", "--vae-steps", "30", "--mdnrnn-steps", "30", "--generations", "4",
               "--run-dir", str(run_dir)]
    landed = kill_and_rerun(command, kills=KILLS, window=(2.0, 8.0), seed=3)
    assert len(EpisodeStore.open(run_dir / "episodes")) == 20
    for stage in ("vae", "mdnrnn", "controller"):
        assert (run_dir / stage / "DONE").exists()
    assert json.loads((run_dir / "eval.json").read_text())["selection"]
    _no_leftovers(run_dir)
    print(f"\nworldmodels: {landed} kills, 0 episodes lost, 0 duplicated")
