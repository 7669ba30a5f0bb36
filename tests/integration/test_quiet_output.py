"""Ordinary debug runs of both families print what informs and nothing else (issue 14, "output that informs").

Each runs the real ``wm`` command in a subprocess with the interpreter's default warning filters, as a user
would, and checks: no Lightning tips or device lines, no warning text, progress lines with an ETA, KPI tables
without ``_step`` / ``_epoch`` twins, agent vs random at the end, no ``hp_metric`` in TensorBoard, and dream
summaries logged several times although ``--dream-every`` (default 500 / 1000) is longer than the run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainers.modules.dream_callbacks import dream_interval
from worldmodels.envs.toy import CATCH_ID

REPO = Path(__file__).resolve().parents[2]
NOISE = ("Tip:", "GPU available", "TPU available", "LitLogger", "Warning:", "DeprecationWarning", "UserWarning")
TABLE_ROW = re.compile(r"^(kpi|train|val|imag)/\S+\s+\S+$")


def wm(*args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WM_VERBOSE", None)
    result = subprocess.run([sys.executable, "-m", "scripts.cli", *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def assert_quiet(out: str) -> None:
    noisy = [line for line in out.splitlines() if any(word in line for word in NOISE)]
    assert not noisy, noisy
    rows = [line.split()[0] for line in out.splitlines() if TABLE_ROW.match(line)]
    assert rows and not [name for name in rows if name.endswith(("_step", "_epoch"))], rows
    assert "  agent " in out and "  random " in out, out[-2000:]  # the agent-vs-random table ends the run


def events(root: Path) -> tuple[set[str], dict[str, int]]:
    """All scalar tags under ``root``, and how many times each image tag was written."""
    scalars, images = set(), {}
    for path in root.rglob("events.out.tfevents*"):
        accumulator = EventAccumulator(str(path), size_guidance={"images": 0, "scalars": 0})
        accumulator.Reload()
        scalars |= set(accumulator.Tags()["scalars"])
        for tag in accumulator.Tags()["images"]:
            images[tag] = images.get(tag, 0) + len(accumulator.Images(tag))
    return scalars, images


def test_dream_interval_scales_with_the_run():
    assert dream_interval(1000, 100) == 25 and dream_interval(10, 100) == 10  # a quarter of the run at most
    assert dream_interval(500, 2) == 1 and dream_interval(0, 100) == 0 and dream_interval(500, None) == 500


def test_dreamer_debug_run_is_quiet(tmp_path):
    # 240 env steps - 200 prefill at replay ratio 32 with 4 x 8 chunks: 40 gradient steps, under --dream-every 1000.
    out = wm("dreamer", "--preset", "debug", "--env", CATCH_ID, "--steps", "240", "--eval-episodes", "1",
             "--threads", "1", "--run-dir", str(tmp_path / "run"))
    assert_quiet(out)
    assert re.search(r"^dreamer step \d+/40 \(\d+%\), .* steps/s, ETA ", out, re.M), out[-2000:]
    assert "evaluate agent episode 1/1" in out
    scalars, images = events(tmp_path / "run" / "tb")
    assert "hp_metric" not in scalars and not [t for t in scalars if t.endswith(("_step", "_epoch"))], scalars
    assert images.get("dreams/reconstruction", 0) >= 3, images  # every 40 // 4 = 10 gradient steps: 4 times


def test_worldmodels_debug_run_is_quiet(tmp_path):
    out = wm("worldmodels", "--preset", "debug", "--env", CATCH_ID, "--threads", "1", "--run-dir", str(tmp_path / "run"))
    assert_quiet(out)
    for stage in ("collect episode", "vae step", "mdnrnn step", "cma-es generation", "evaluate agent episode"):
        assert re.search(rf"^{stage} \d+/\d+ \(\d+%\), ", out, re.M), (stage, out[-3000:])
    scalars, images = events(tmp_path / "run" / "tb")
    assert "hp_metric" not in scalars and not [t for t in scalars if t.endswith(("_step", "_epoch"))], scalars
    # debug: 4 V steps and 4 M steps, under --dream-every 500: every step, so 4 times each
    assert images.get("dreams/reconstruction", 0) >= 3 and images.get("dreams/open_loop/sample_0", 0) >= 3, images
