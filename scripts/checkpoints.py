"""List the pretrained world models shipped in ``checkpoints/`` (or another directory)."""

from __future__ import annotations

from dataclasses import dataclass

from worldmodels.config import arg
from worldmodels.registry import SHIPPED, list_checkpoints

# The metrics `wm checkpoints` prints per model (all of them are in its config.json and model card).
SUMMARY_METRICS = {"return_mean": "return", "eval_return": "return", "random_mean": "random", "random_return": "random",
                   "kpi/open_loop_psnr_h1": "PSNR h1", "kpi/open_loop_psnr_h15": "PSNR h15"}


@dataclass
class CheckpointsConfig:
    root: str = arg(str(SHIPPED), "directory whose sub-directories are pretrained world models")


CONFIG = CheckpointsConfig


def run(config: CheckpointsConfig) -> list[dict]:
    rows = list_checkpoints(config.root)
    if not rows:
        print(f"no pretrained world models under {config.root}")
    for row in rows:
        if "error" in row:
            print(f"{row['name']:<28} unreadable: {row['error']}")
            continue
        shown = {k: v for k, v in row["metrics"].items() if k in SUMMARY_METRICS}
        metrics = ", ".join(f"{SUMMARY_METRICS[k]} {v:.3g}" for k, v in shown.items() if isinstance(v, (int, float)))
        print(f"{row['name']:<28} {row['family']:<12} {row['env_id']:<14} {row['size_mb']:>5.1f} MB  {metrics}  card: {row['card']}")
    return rows
