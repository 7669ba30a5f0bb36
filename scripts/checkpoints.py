"""List the shipped pretrained world models (every shipped NAME, see :mod:`worldmodels.shipped`) or another directory's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from worldmodels.config import arg
from worldmodels.shipped import list_checkpoints

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


def table(rows: list[dict]) -> str:
    """The rows as one aligned table: name, family, env, size, then :data:`SUMMARY_METRICS` ('-' where absent)."""
    columns = list(dict.fromkeys(SUMMARY_METRICS.values()))
    header = ["name", "family", "env", "MB", *columns, "card"]
    body = []
    for row in rows:
        if "error" in row:
            body.append([row["name"], "unreadable: " + row["error"]])
            continue
        shown = {SUMMARY_METRICS[k]: v for k, v in row["metrics"].items() if k in SUMMARY_METRICS and isinstance(v, (int, float))}
        card = row["card"] or "-"
        with_cwd = Path(card).resolve()
        card = str(with_cwd.relative_to(Path.cwd())) if with_cwd.is_relative_to(Path.cwd()) else card
        body.append([row["name"], str(row["family"]), str(row["env_id"]), f"{row['size_mb']:.1f}",
                     *[f"{shown[c]:.3g}" if c in shown else "-" for c in columns], card])
    full = [r for r in body if len(r) == len(header)]
    widths = [max(len(r[i]) for r in [header, *full]) for i in range(len(header))]
    numeric = {3, *range(4, 4 + len(columns))}  # right-aligned columns

    def line(cells: list[str]) -> str:
        if len(cells) != len(header):  # an unreadable model: its name and the error
            return f"{cells[0]:<{widths[0]}}  {cells[1]}"
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, body)])


def run(config: CheckpointsConfig) -> list[dict]:
    rows = list_checkpoints(config.root or None)
    if not rows:
        print(f"no pretrained world models under {config.root or 'the shipped roots (set WM_CHECKPOINTS=DIR)'}")
        return rows
    print(table(rows))
    return rows
