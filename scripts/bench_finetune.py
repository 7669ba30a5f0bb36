"""Benchmark (JSON): steps for a fine-tuned vs a from-scratch world model to reach the same validation loss.

``wm bench-finetune --from checkpoints/NAME --env ALE/Breakout-v5``; the measurement is
:func:`trainers.bench.finetune.bench_finetune` (its docstring says what is compared and how).
"""

from __future__ import annotations

from trainers.bench.finetune import BenchFinetuneConfig, bench_finetune

CONFIG = BenchFinetuneConfig
CLI_ALIASES = {"--from": "source"}  # as in `wm finetune`: `from` is a Python keyword, so the field is `source`
DEFAULT_PRESET = "default"
PRESETS: dict[str, dict] = {"default": {}, "debug": dict(family_preset="debug", steps=6, eval_every=2, episodes=4,
                                                         max_episode_steps=20, device="cpu")}


def run(config: BenchFinetuneConfig) -> dict:
    return bench_finetune(config)
