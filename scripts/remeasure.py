"""Re-measure a shipped or exported model's held-out open-loop KPIs (with their baselines) in place.

The same measurement as ``wm export`` (:func:`worldmodels.model_card.heldout_card_kpis`: ``wm dream``'s KPIs on fresh episodes with a
seed no run uses, by ``--protocol``: fair by default, first-rows the old one, both), for models that have no run
directory any more. Metrics the measurement does not produce are kept, so a card measured by the old protocol
shows its old table next to the fair one. Only ``config.json``'s
``"metrics"`` and the card's "Measured metrics" section change; ``model.safetensors`` (and the sha256 that
covers it) is never written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from trainers.runs.fidelity import fidelity_kpis
from worldmodels.checkpoint import allow_unverified_arg
from worldmodels.config import arg, read_json, save_json_atomic, threads_arg
from worldmodels.fidelity import MODEL_KEY, add_to_model_config, card_part, metrics
from worldmodels.model_card import CONTEXT, HORIZON, heldout_card_kpis, metrics_section
from worldmodels.open_loop import PROTOCOLS, SAMPLES
from worldmodels.profiling import resolve_device, set_threads
from worldmodels.registry import load, resolve

CARD_SECTION, CARD_SECTION_END = "## Measured metrics", "These are small CPU-trained models"


@dataclass
class RemeasureConfig:
    checkpoint: str = arg("", "a shipped name (`wm checkpoints`) or an exported model directory")
    heldout_episodes: int = arg(8, "fresh episodes per policy (as `wm export`)", minimum=1, maximum=10_000)
    protocol: str = arg("fair", "held-out open-loop KPIs: fair, first-rows (the old protocol) or both (wm dream)",
                        choices=PROTOCOLS)
    samples: int = arg(SAMPLES, "fair protocol: sampled futures per window", minimum=1, maximum=256)
    fidelity_episodes: int = arg(0, "decision fidelity (wm fidelity): real episodes per policy, into config.json "
                                    "metrics and the card; 0 = off (it takes minutes)", minimum=0, maximum=10_000)
    device: str = arg("cpu", "torch device: auto, cpu or cuda (cpu: the figures match across machines)")
    threads: str = threads_arg("0")
    allow_unverified: bool = allow_unverified_arg()


CONFIG = RemeasureConfig


def run(config: RemeasureConfig) -> dict:
    if not config.checkpoint:
        raise ValueError("--checkpoint is required: a shipped name (see `wm checkpoints`) or an exported model directory")
    out = resolve(config.checkpoint)
    obs_shape = read_json(out / "config.json", what="the model's settings").get("obs_shape") or []
    if len(obs_shape) == 1:  # the KPIs score predicted frames (as wm export, which skips them for such a model)
        raise ValueError(f"--checkpoint {config.checkpoint} observes {tuple(obs_shape)} vectors; wm remeasure measures "
                         "the held-out open-loop frame prediction of models of image observations only (evaluate a "
                         "vector model with wm evaluate)")
    set_threads(config.threads)
    device = resolve_device(config.device)
    pretrained = load(out, device, allow_unverified=config.allow_unverified)
    kpis = heldout_card_kpis(pretrained, episodes=config.heldout_episodes, context=CONTEXT,
                             horizon=HORIZON, protocol=config.protocol, samples=config.samples, device=device)
    model_config = read_json(out / "config.json", what="the model's settings")
    model_config["metrics"] = {**model_config.get("metrics", {}), **kpis}
    if config.fidelity_episodes:  # opt-in: every policy of the set plays that many real episodes
        model_config = add_to_model_config(model_config, fidelity_kpis(
            out, episodes=config.fidelity_episodes, device=config.device, threads=config.threads,
            allow_unverified=config.allow_unverified))
        kpis = {**kpis, **metrics(model_config[MODEL_KEY])}
    save_json_atomic(out / "config.json", model_config)
    card_path = out / "README.md"
    card = card_path.read_text() if card_path.is_file() else ""
    if CARD_SECTION in card and CARD_SECTION_END in card:  # a model without an export's card keeps only config.json
        begin, end = card.index(CARD_SECTION), card.index(CARD_SECTION_END)
        section = metrics_section(model_config["metrics"], episodes=config.heldout_episodes,
                                  context=CONTEXT, horizon=HORIZON) + card_part(model_config)
        tmp = card_path.with_name(".README.md.tmp")
        tmp.write_text(card[:begin] + section + "\n" + card[end:])
        tmp.replace(card_path)  # atomic, as export writes its card
    print(json.dumps({"checkpoint": str(out), "kpis": kpis}, indent=2))
    return kpis
