"""Export a finished run to the exchange format, measure it on held-out episodes, and write its model card.

``wm export --run-dir runs/pong --out checkpoints/pong-worldmodels-tiny --command "wm worldmodels ..."``

1. ``worldmodels.pretrained.export_from_run``: safetensors + config.json (never a pickle).
2. Held-out prediction error: ``wm dream`` on ``--heldout-episodes`` fresh episodes (a seed the run never used),
   by ``--protocol``: fair (default; random- and agent-policy episodes, windows anywhere in them, K samples,
   moving pixels, reward events, termination: ``worldmodels.open_loop``, docs/open-loop.md) and / or first-rows
   (the old: open-loop MSE / PSNR of the first rows next to the copy-last-frame and mean-frame baselines on the
   same frames and the ratios to them, ``worldmodels.baselines``; reward error).
3. ``README.md``, the model card: command, data size, steps, wall time, hardware, metrics led by the ratios.

``--format onnx`` instead writes the policy as one recurrent ONNX step (``worldmodels.onnx_export``; docs/onnx.md):
``wm export --format onnx --checkpoint boxing-dreamer-cpu --out DIR`` -> ``DIR/policy.onnx`` + ``policy.onnx.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from trainers.runs.fidelity import fidelity_kpis
from worldmodels.checkpoint import allow_unverified_arg, read_config
from worldmodels.config import arg, directory_problem, read_json, save_json_atomic, threads_arg
from worldmodels.fidelity import add_to_model_config, card_part
from worldmodels.model_card import CONTEXT, HORIZON, heldout_card_kpis, metrics_section
from worldmodels.onnx_export import SPEC_FILE, export_onnx
from worldmodels.open_loop import PROTOCOLS, SAMPLES
from worldmodels.pretrained import export_from_run
from worldmodels.profiling import DEVICES, resolve_device, set_threads
from worldmodels.registry import load

EXPORT_FILES = ("model.safetensors", "config.json", "README.md")  # what an export writes
EXPORTED_FROM = "exported_from"  # config.json key: the resolved run directory an export came from
FORMATS = ("safetensors", "onnx")


@dataclass
class ExportConfig:
    run_dir: str = arg("", "a finished `wm worldmodels` or `wm dreamer` run directory")
    format: str = arg("safetensors", "safetensors: the exchange format + held-out metrics + model card; onnx: the "
                                     "policy as one recurrent ONNX step (policy.onnx + policy.onnx.json)",
                      choices=FORMATS)
    checkpoint: str = arg("", "with --format onnx: the model to export instead of --run-dir (a shipped name, an "
                              "exported directory or a run, as worldmodels.load takes)")
    out: str = arg("", "pretrained directory to write (e.g. checkpoints/NAME); empty = RUN_DIR/export "
                       "(--format onnx: RUN_DIR/onnx)",
                   check=lambda c: directory_problem(c.out))
    train_command: str = arg("", "the exact command that trained the run, quoted in the model card")
    wall_time: str = arg("", "wall time of that command as measured (e.g. '5 min 24 s'), quoted in the card")
    heldout_episodes: int = arg(8, "fresh episodes (per policy: random, and the model's own) for the held-out "
                                   "prediction error", minimum=1, maximum=10_000)
    context: int = arg(CONTEXT, "real context frames before the open-loop prediction", minimum=1, maximum=10_000)
    horizon: int = arg(HORIZON, "predicted frames after the context (KPIs at 1, 5 and 15)", minimum=1, maximum=10_000)
    protocol: str = arg("fair", "held-out open-loop KPIs: fair, first-rows (the old protocol) or both (wm dream)",
                        choices=PROTOCOLS)
    samples: int = arg(SAMPLES, "fair protocol: sampled futures per window", minimum=1, maximum=256)
    fidelity_episodes: int = arg(0, "decision fidelity (wm fidelity): real episodes per policy, into config.json "
                                    "metrics and the card; 0 = off (it takes minutes)", minimum=0, maximum=10_000)
    device: str = arg("cpu", "torch device of the held-out measurement: auto, cpu or cuda (cpu: the card's figures "
                             "match across machines)", choices=DEVICES)
    threads: str = threads_arg("0")
    allow_unverified: bool = allow_unverified_arg()


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


def _card(config: ExportConfig, pretrained: dict, facts: dict) -> str:
    section = metrics_section(pretrained.get("metrics", {}), episodes=config.heldout_episodes, context=config.context,
                              horizon=config.horizon) + card_part(pretrained)
    return f"""# {Path(config.out).name}

A {pretrained.get('family')} world model for `{pretrained.get('env_id')}`, trained by this project on this CPU.
Load it with `worldmodels.load("{config.out}")`; render its dreams with
`wm dream --checkpoint {config.out}`; adapt it with `wm finetune --from {Path(config.out).name} --env ID`.

| | |
|---|---|
| command | `{config.train_command}` |
| export | `wm export --run-dir {config.run_dir} --out {config.out}` |
| data | {facts.get('episodes', 'online replay')} episodes, {facts.get('frames', '?')} frames; episodes capped at {facts.get('max_episode_steps') or 'the env default'} agent steps (training and evaluation) |
| env options | `{json.dumps(pretrained.get('env_options', {}))}` (what `wm evaluate` plays by; absent keys: the env defaults) |
| training steps | `{json.dumps(pretrained.get('training_steps'))}` |
| wall time | {config.wall_time or 'not recorded'} |
| hardware | {_hardware()} |
| components | {', '.join(pretrained.get('components', []))} |
| sizes | `{json.dumps(pretrained.get('sizes', pretrained.get('config', {})))[:400]}` |

{section}
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


def card_kpis(model_dir: str | Path, config: ExportConfig) -> dict[str, float]:
    """The held-out KPIs of the model in ``model_dir`` by ``config``'s measurement flags (``--heldout-episodes``,
    ``--context``, ``--horizon``, ``--protocol``, ``--samples``, ``--device``), on CPU by default so a card's figures
    match across machines."""
    set_threads(config.threads)
    device = resolve_device(config.device)
    pretrained = load(model_dir, device, allow_unverified=config.allow_unverified)
    return heldout_card_kpis(pretrained, episodes=config.heldout_episodes, context=config.context,
                             horizon=config.horizon, protocol=config.protocol, samples=config.samples, device=device)


def run_onnx(config: ExportConfig) -> dict:
    """``--format onnx``: the policy of ``--checkpoint`` (or ``--run-dir``) as ``OUT/policy.onnx`` + its JSON."""
    source = config.checkpoint or config.run_dir
    if not source:
        raise ValueError("--format onnx needs --checkpoint or --run-dir: a shipped name, an exported directory or a run")
    if not config.out and not config.run_dir:
        raise ValueError("--format onnx --checkpoint needs --out DIR (the directory for policy.onnx)")
    out = Path(config.out) if config.out else Path(config.run_dir) / "onnx"
    previous = read_json(out / SPEC_FILE, what="an ONNX policy description", default={}).get("source")
    if previous not in (None, source):
        raise ValueError(f"--out {str(out)!r} already holds the ONNX policy of {previous!r}, not of {source!r}; "
                         "give a new or empty directory")
    result = export_onnx(load(source, allow_unverified=config.allow_unverified), out, source=source)
    print(f"wm export: {result['onnx']} ({result['size_mb']:.1f} MB, exported in {result['export_s']:.1f} s) "
          f"+ {SPEC_FILE}")
    return {"out": str(out), **result}


def run(config: ExportConfig) -> dict:
    if config.format == "onnx":
        return run_onnx(config)
    if config.checkpoint:
        raise ValueError("--checkpoint goes with --format onnx; the safetensors export reads a finished --run-dir")
    run_dir = Path(config.run_dir)
    out = Path(config.out) if config.out else run_dir / "export"
    config = dataclasses.replace(config, out=str(out))  # the model card quotes where it went
    if not run_dir.is_dir():
        raise FileNotFoundError(f"--run-dir {config.run_dir!r} is not a directory; give a finished wm worldmodels / wm dreamer run")
    check_out(out, run_dir)
    export_from_run(run_dir, out, allow_unverified=config.allow_unverified)  # the export itself gets a digest
    # Marks the directory as this run's export, so that a rerun may overwrite it and nothing else.
    save_json_atomic(out / "config.json", {**read_config(out), EXPORTED_FROM: str(run_dir.resolve())})
    vectors = len(read_config(out)["obs_shape"]) == 1  # the held-out KPIs score predicted frames
    kpis = {} if vectors else card_kpis(out, config)
    pretrained = read_config(out)
    pretrained["metrics"] = {**pretrained.get("metrics", {}), **kpis}
    if config.fidelity_episodes:  # opt-in: every policy of the set plays that many real episodes
        pretrained = add_to_model_config(pretrained, fidelity_kpis(
            out, episodes=config.fidelity_episodes, device=config.device, threads=config.threads,
            allow_unverified=config.allow_unverified))
    save_json_atomic(out / "config.json", pretrained)
    card = _card(config, pretrained, _run_facts(run_dir))
    tmp = out / ".README.md.tmp"
    tmp.write_text(card)
    tmp.replace(out / "README.md")
    size_mb = sum(p.stat().st_size for p in out.iterdir() if p.is_file()) / 2**20
    print(f"wm export: {out} ({size_mb:.1f} MB), held-out {kpis}")
    return {"out": str(out), "size_mb": size_mb, "metrics": pretrained["metrics"]}

