"""Export a finished run to the exchange format, measure it on held-out episodes, and write its model card.

``wm export --run-dir runs/pong --out checkpoints/pong-worldmodels-tiny --command "wm worldmodels ..."``

1. ``worldmodels.pretrained.export_from_run``: safetensors + config.json (never a pickle).
2. Held-out prediction error: ``wm dream`` on ``--heldout-episodes`` fresh random-policy episodes
   (a seed the run never used): open-loop MSE / PSNR at horizons 1, 5 and 15, reward error.
3. ``README.md``, the model card: command, data size, steps, wall time, hardware, metrics.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from scripts import dream
from worldmodels.checkpoint import read_config
from worldmodels.config import arg, directory_problem, read_json, save_json_atomic
from worldmodels.pretrained import export_from_run

HELDOUT_SEED = 987_654  # never a collection, training or evaluation seed of any preset
EXPORT_FILES = ("model.safetensors", "config.json", "README.md")  # what an export writes
EXPORTED_FROM = "exported_from"  # config.json key: the resolved run directory an export came from


@dataclass
class ExportConfig:
    run_dir: str = arg("", "a finished `wm worldmodels` or `wm dreamer` run directory")
    out: str = arg("", "pretrained directory to write (e.g. checkpoints/NAME); empty = RUN_DIR/export",
                   check=lambda c: directory_problem(c.out))
    train_command: str = arg("", "the exact command that trained the run, quoted in the model card")
    wall_time: str = arg("", "wall time of that command as measured (e.g. '5 min 24 s'), quoted in the card")
    heldout_episodes: int = arg(8, "fresh random-policy episodes for the held-out prediction error", minimum=1)
    context: int = arg(5, "real context frames before the open-loop prediction", minimum=1)
    horizon: int = arg(15, "predicted frames after the context (KPIs at 1, 5 and 15)", minimum=1)
    device: str = arg("cpu", "torch device of the held-out measurement: auto, cpu or cuda (cpu: the card's figures "
                             "match across machines)", choices=dream.DEVICES)
    threads: str = arg("0", "torch CPU threads: 'auto' (the fastest count, measured), 0 (torch's default) or n")


CONFIG = ExportConfig


def _hardware() -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU only, {os.cpu_count()} cores"
    return f"{device}; {platform.platform()}; Python {platform.python_version()}; torch {torch.__version__}"


def _run_facts(run_dir: Path) -> dict:
    """Data size and steps, read from what the run wrote."""
    facts: dict = {}
    index = read_json(run_dir / "episodes" / "index.json", what="an episode index", default=None)
    if index is not None:
        episodes = index.get("episodes", [])
        facts["episodes"] = len(episodes)
        facts["frames"] = sum(int(e.get("length", 0)) for e in episodes)
    facts["max_episode_steps"] = read_json(run_dir / "config.json", default={}).get("max_episode_steps")
    for name in ("eval.json", "results.json"):
        if (run_dir / name).is_file():
            facts[name] = read_json(run_dir / name, what="an evaluation record")
    return facts


def _card(config: ExportConfig, pretrained: dict, facts: dict, kpis: dict) -> str:
    metrics = pretrained.get("metrics", {})
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, (int, float)) else f"| {k} | {v} |"
                     for k, v in {**metrics, **kpis}.items())
    return f"""# {Path(config.out).name}

A {pretrained.get('family')} world model for `{pretrained.get('env_id')}`, trained by this project on this CPU.
Load it with `worldmodels.load("{config.out}")`; render its dreams with
`wm dream --checkpoint {config.out}`; adapt it with `wm finetune --from {Path(config.out).name} --env ID`.

| | |
|---|---|
| command | `{config.train_command}` |
| export | `wm export --run-dir {config.run_dir} --out {config.out}` |
| data | {facts.get('episodes', 'online replay')} episodes, {facts.get('frames', '?')} frames; episodes capped at {facts.get('max_episode_steps') or 'the env default'} agent steps (training and evaluation) |
| training steps | `{json.dumps(pretrained.get('training_steps'))}` |
| wall time | {config.wall_time or 'not recorded'} |
| hardware | {_hardware()} |
| components | {', '.join(pretrained.get('components', []))} |
| sizes | `{json.dumps(pretrained.get('sizes', pretrained.get('config', {})))[:400]}` |

## Measured metrics

Real-env returns are from the run's own evaluation (same seeds for the agent and a random
policy). `kpi/*` are held-out: {config.heldout_episodes} fresh random-policy episodes (seed {HELDOUT_SEED}),
{config.context} real context frames, then open-loop prediction under the real actions.

| metric | value |
|---|---|
{rows}

These are small CPU-trained models: treat them as starting points for fine-tuning and as
working examples of the format, not as competitive agents.
"""


def check_out(out: Path, run_dir: Path) -> None:
    """Refuse to overwrite any file in ``out`` unless ``out`` holds a previous export of this same run.

    Without ``--out`` the export used to land in the current directory: from the repo root it would have
    replaced the project's README.md and config.json.
    """
    existing = [name for name in EXPORT_FILES if (out / name).exists()]
    if not existing:
        return
    try:
        previous = json.loads((out / "config.json").read_text()).get(EXPORTED_FROM)
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous != str(run_dir.resolve()):
        raise ValueError(f"--out {str(out)!r} already holds {', '.join(existing)}, not an export of {str(run_dir)!r}; "
                         "give a new or empty directory (or leave --out empty for RUN_DIR/export)")


def run(config: ExportConfig) -> dict:
    run_dir = Path(config.run_dir)
    out = Path(config.out) if config.out else run_dir / "export"
    config = dataclasses.replace(config, out=str(out))  # the model card quotes where it went
    if not run_dir.is_dir():
        raise FileNotFoundError(f"--run-dir {config.run_dir!r} is not a directory; give a finished wm worldmodels / wm dreamer run")
    check_out(out, run_dir)
    export_from_run(run_dir, out)
    # Marks the directory as this run's export, so that a rerun may overwrite it and nothing else.
    save_json_atomic(out / "config.json", {**read_config(out), EXPORTED_FROM: str(run_dir.resolve())})
    with tempfile.TemporaryDirectory() as logdir:
        heldout = dream.run(dream.DreamConfig(checkpoint=str(out), logdir=logdir, context=config.context,
                                              horizon=config.horizon, episodes=config.heldout_episodes,
                                              seed=HELDOUT_SEED, mp4=False, device=config.device,
                                              threads=config.threads))
    kpis = {k: round(v, 5) for k, v in heldout["kpis"].items()}
    pretrained = read_config(out)
    pretrained["metrics"] = {**pretrained.get("metrics", {}), **kpis}
    save_json_atomic(out / "config.json", pretrained)
    card = _card(config, pretrained, _run_facts(run_dir), {})
    tmp = out / ".README.md.tmp"
    tmp.write_text(card)
    tmp.replace(out / "README.md")
    size_mb = sum(p.stat().st_size for p in out.iterdir() if p.is_file()) / 2**20
    print(f"wm export: {out} ({size_mb:.1f} MB), held-out {kpis}")
    return {"out": str(out), "size_mb": size_mb, "metrics": pretrained["metrics"]}

