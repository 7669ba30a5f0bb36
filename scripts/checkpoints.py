"""List the pretrained world models shipped in ``checkpoints/`` (or another directory)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from worldmodels.checkpoint import CheckpointError, read_config
from worldmodels.config import arg

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"
# The metrics `wm checkpoints` prints per model (all of them are in its config.json and model card).
SUMMARY_METRICS = {"return_mean": "return", "eval_return": "return", "random_mean": "random", "random_return": "random",
                   "kpi/open_loop_psnr_h1": "PSNR h1", "kpi/open_loop_psnr_h15": "PSNR h15"}


@dataclass
class CheckpointsConfig:
    root: str = arg(str(SHIPPED), "directory whose sub-directories are pretrained world models")


CONFIG = CheckpointsConfig


def list_checkpoints(root: str | Path = SHIPPED) -> list[dict]:
    """One row per pretrained directory under ``root``: name, family, env, size, metrics, card path."""
    rows = []
    for directory in sorted(Path(root).iterdir()) if Path(root).is_dir() else []:
        if not (directory / "config.json").is_file():
            continue
        try:
            config = read_config(directory)
        except CheckpointError as error:
            rows.append({"name": directory.name, "error": str(error)})
            continue
        size_mb = sum(p.stat().st_size for p in directory.iterdir() if p.is_file()) / 2**20
        rows.append(
            {
                "name": directory.name,
                "path": str(directory),
                "family": config.get("family"),
                "env_id": config.get("env_id"),
                "steps": config.get("training_steps"),
                "size_mb": round(size_mb, 2),
                "metrics": config.get("metrics", {}),
                "card": str(directory / "README.md") if (directory / "README.md").is_file() else None,
            }
        )
    return rows


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
