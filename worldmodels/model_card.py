"""A model card's measured part: the held-out open-loop KPIs on fresh episodes (``wm export``, ``wm remeasure``)
and the card's ``## Measured metrics`` section built from a ``config.json`` ``metrics`` dict.

The measurement is :func:`worldmodels.heldout.heldout_kpis` at :data:`HELDOUT_SEED`, a seed no collection, training
or evaluation uses. It takes a loaded model: the commands load.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import torch

from worldmodels.dreams import dream_models
from worldmodels.heldout import HeldoutProtocol, heldout_kpis
from worldmodels.open_loop import card_section

if TYPE_CHECKING:  # the type only
    from worldmodels.registry import Pretrained

HELDOUT_SEED = 987_654  # never a collection, training or evaluation seed of any preset
CONTEXT, HORIZON = 5, 15  # the cards' windows: real context rows, then predicted rows (KPIs at 1, 5 and 15)


def heldout_card_kpis(pretrained: Pretrained, *, episodes: int, context: int, horizon: int, protocol: str,
                      samples: int, device: torch.device) -> dict[str, float]:
    """The card's held-out open-loop KPIs of ``pretrained`` on its own env, rounded to 5 significant digits (the
    MSEs are ~1e-4)."""
    torch.manual_seed(HELDOUT_SEED)
    settings = HeldoutProtocol(protocol=protocol, context=context, horizon=horizon, episodes=episodes,
                               seed=HELDOUT_SEED, samples=samples)
    kpis = heldout_kpis(pretrained, dream_models(pretrained)[0], pretrained.env_id, settings, device)
    return {k: float(f"{v:.5g}") for k, v in kpis.items()}


# Columns of the card's open-loop table: header -> metric key at horizon k. The ratios lead: a bare MSE or PSNR
# flatters a model whose frames are mostly static background.
OPEN_LOOP_COLUMNS = {"model / copy-last": "kpi/open_loop_vs_copy_h{k}", "model / mean frame": "kpi/open_loop_vs_mean_h{k}",
                     "model MSE": "kpi/open_loop_mse_h{k}", "copy-last MSE": "kpi/copy_last_mse_h{k}",
                     "mean-frame MSE": "kpi/mean_frame_mse_h{k}", "model PSNR (dB)": "kpi/open_loop_psnr_h{k}"}


def open_loop_table(metrics: dict) -> str:
    """Markdown table, one row per horizon ``k`` with a ``kpi/open_loop_mse_h{k}`` in ``metrics``; '-' where absent."""
    horizons = sorted(int(m.group(1)) for key in metrics if (m := re.fullmatch(r"kpi/open_loop_mse_h(\d+)", key)))
    lines = ["| steps ahead | " + " | ".join(OPEN_LOOP_COLUMNS) + " |", "|---" * (len(OPEN_LOOP_COLUMNS) + 1) + "|"]
    for k in horizons:
        cells = [metrics.get(key.format(k=k)) for key in OPEN_LOOP_COLUMNS.values()]
        lines.append(f"| {k} | " + " | ".join("-" if v is None else f"{v:.3g}" for v in cells) + " |")
    return "\n".join(lines)


def metrics_section(metrics: dict, *, episodes: int, context: int, horizon: int) -> str:
    """The card's ``## Measured metrics``: the fair protocol's tables and the old protocol's table against the
    baselines (each where ``metrics`` hold it), then every value."""
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, (int, float)) else f"| {k} | {v} |"
                     for k, v in sorted(metrics.items()))
    parts = ["## Measured metrics"]
    if card_section(metrics):
        parts.append(f"""### Fair protocol (the default; docs/open-loop.md)

{episodes} fresh episodes of a uniform random policy and, where the model has one, {episodes} of its own policy
(reset seeds {HELDOUT_SEED} + i). Windows of {context} real context rows, then {horizon} rows predicted under the
real actions, start anywhere in the episodes (seeded, uniform). Each window gets K sampled futures: "mean" is the
error of their mean frame, "best of K" the closest sample's, "one sample" the average sample's. "moving" scores
only the pixels that changed from the real frame before, where copying the last frame cannot be right; copy-last
and the mean frame are scored on the same pixels. A moving mean / copy-last ratio below 1 beats "nothing moves".

{card_section(metrics)}""")
    if "kpi/open_loop_mse_h1" in metrics:
        parts.append(f"""### Old protocol: the first rows of each episode

Held-out open-loop prediction: {episodes} fresh random-policy episodes (seed {HELDOUT_SEED}), {context} real context
frames from row 0, then {horizon} frames predicted under the real actions (one forecast). The model's error stands
next to two baselines on the same frames: copying the last context frame forward, and the mean frame (the per-pixel
mean of the evaluated real frames). A ratio below 1 beats that baseline. A copy-last ratio near 1 or above means the
model predicts no better than "nothing moves", however high its PSNR (a forecast that loses Pong's ball and paddles
still scores ~35 dB: the background is nearly every pixel).

{open_loop_table(metrics)}

`-`: undefined, that baseline is exact on these frames (its error is 0).""")
    parts.append(f"""Every value, as in config.json `metrics`. Real-env returns are from the run's own evaluation (same seeds for the
agent and a random policy); `kpi/*` are the held-out open-loop figures above.

| metric | value |
|---|---|
{rows}
""")
    return "\n\n".join(parts)
