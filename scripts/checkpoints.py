"""List the shipped pretrained world models (every shipped NAME, see :mod:`worldmodels.shipped`) or another directory's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from worldmodels.config import arg
from worldmodels.registry import list_checkpoints

# The metrics `wm checkpoints` prints per model, in this order (all of them are in its config.json and model card).
# The open-loop ratios to the copy-last-frame / mean-frame baselines come before PSNR, which alone flatters.
SUMMARY_METRICS = {"return_mean": "return", "eval_return": "return", "random_mean": "random", "random_return": "random",
                   "kpi/open_loop_vs_copy_h1": "vs copy h1", "kpi/open_loop_vs_copy_h15": "vs copy h15",
                   "kpi/open_loop_vs_mean_h15": "vs mean h15",
                   "kpi/open_loop_psnr_h1": "PSNR h1", "kpi/open_loop_psnr_h15": "PSNR h15"}


@dataclass
class CheckpointsConfig:
    root: str = arg("", "directory whose sub-directories are pretrained world models; empty = every shipped NAME "
                        "($WM_CHECKPOINTS, the source tree's checkpoints/, the installed wheel's copy)",
                    check=lambda c: None if not c.root or Path(c.root).is_dir() else
                    "is not a directory; give one whose sub-directories are pretrained models, or leave --root empty "
                    "for every shipped NAME")


CONFIG = CheckpointsConfig


def run(config: CheckpointsConfig) -> list[dict]:
    rows = list_checkpoints(config.root or None)
    if not rows:
        print(f"no pretrained world models under {config.root or 'the shipped roots (set WM_CHECKPOINTS=DIR)'}")
    for row in rows:
        if "error" in row:
            print(f"{row['name']:<28} unreadable: {row['error']}")
            continue
        shown = {k: row["metrics"][k] for k in SUMMARY_METRICS if k in row["metrics"]}
        metrics = ", ".join(f"{SUMMARY_METRICS[k]} {v:.3g}" for k, v in shown.items() if isinstance(v, (int, float)))
        print(f"{row['name']:<28} {row['family']:<12} {row['env_id']:<14} {row['size_mb']:>5.1f} MB  {metrics}  card: {row['card']}")
    return rows
