"""``scripts/gpu_check.sh --dry-run``: the GPU check's plan, tested on the CPU for the day a GPU is lent.

Every ``wm`` command the check would run must parse (``--print-config``: the flags exist, the values are in
range), the plan covers what the check promises (the GPU tests, dreamer / imagine / dream benches at S and M in
fp32 and bf16-mixed with --compile off and on, a Boxing run), and its timeouts fit the 8-minute budget order.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from scripts import cli

ROOT = Path(__file__).resolve().parents[3]


def _plan() -> list[tuple[str, int, list[str]]]:
    out = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    rows = []
    for line in out.splitlines():
        name, limit, command = line.split("\t")
        rows.append((name, int(limit.removeprefix("timeout ").removesuffix("s")), shlex.split(command)))
    return rows


def test_every_wm_command_of_the_gpu_check_parses(capsys):
    plan = _plan()
    commands = [argv[3:] for _, _, argv in plan if argv[1:3] == ["-m", "scripts.cli"]]
    assert len(commands) == len(plan) - 1  # all but the pytest step
    for argv in commands:
        assert cli.main([*argv, "--print-config"]) == 0, argv
    capsys.readouterr()


def test_the_plan_covers_sizes_precisions_and_compile():
    names = [name for name, _, _ in _plan()]
    assert names[0] == "tests-gpu" and "boxing-S" in names
    for what in ("dreamer", "imagine", "dream"):
        for preset in ("S", "M"):
            for precision in ("32-true", "bf16-mixed"):
                assert f"bench-{what}-{preset}-{precision}-compile-false" in names
                if what != "dream":  # --compile applies to the Dreamer kinds
                    assert f"bench-{what}-{preset}-{precision}-compile-true" in names
    # The Boxing run comes before the compiled benches, so the budget never skips it for them.
    assert names.index("boxing-S") < min(i for i, n in enumerate(names) if n.endswith("compile-true"))


def test_a_dry_run_writes_nothing(tmp_path):
    subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run"], capture_output=True, check=True,
                   timeout=60, env={"OUT": str(tmp_path / "out"), "PATH": "/usr/bin:/bin"})
    assert not (tmp_path / "out").exists()
