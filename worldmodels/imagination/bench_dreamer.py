"""Throughput of one Dreamer training step (world model + imagination + actor + critic).

``bench_dreamer(preset="S", batch=16, seq=64)`` runs the real ``DreamerModule.training_step`` under a
Lightning Trainer on a fixed synthetic ``(B, T)`` uint8 batch (no env in the loop) and reports::

    grad_steps_per_s      training steps (each = 3 optimiser steps) per second, after warm-up
    replayed_frames_per_s B * T per step
    imagined_steps_per_s  B * T * horizon per step (every replayed state starts a rollout)
    peak_rss_mb           resource.getrusage peak resident memory of this process (whole-process peak:
                          run one preset per process for a per-preset figure)
"""

from __future__ import annotations

import resource
import time
from typing import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset


class _FixedBatches(IterableDataset):
    def __init__(self, batch: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.batch = batch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield self.batch


def synthetic_batch(batch: int, seq: int, side: int, action_dim: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    is_first = torch.zeros(batch, seq, dtype=torch.bool)
    is_first[:, 0] = True
    return {
        "obs": torch.randint(0, 256, (batch, seq, side, side, 3), generator=generator, dtype=torch.uint8),
        "action": torch.nn.functional.one_hot(torch.randint(0, action_dim, (batch, seq), generator=generator),
                                              action_dim).float(),
        "reward": torch.randn(batch, seq, generator=generator),
        "terminated": torch.zeros(batch, seq, dtype=torch.bool),
        "truncated": torch.zeros(batch, seq, dtype=torch.bool),
        "is_first": is_first,
    }


def bench_dreamer(preset: str = "S", batch: int = 16, seq: int = 64, *, steps: int = 3, warmup: int = 1,
                  action_dim: int = 6, accelerator: str = "cpu", precision: str = "32-true",
                  threads: int | None = None) -> dict:
    """Time ``steps`` Dreamer training steps after ``warmup`` on a synthetic batch; returns the figures."""
    import lightning as L

    if threads is not None:
        torch.set_num_threads(threads)

    from scripts.dreamer import CONFIG, PRESETS
    from trainers.dreamer_module import OPTIMISERS_PER_STEP, DreamerAgentConfig, DreamerModule
    from worldmodels.config import build_config, from_dict, to_dict
    from worldmodels.envs.spaces import ActionSpec

    config = build_config(CONFIG, {}, presets=PRESETS, preset=preset)
    side = config.image_size
    module = DreamerModule(obs_shape=(side, side, 3), action_spec=ActionSpec("discrete", action_dim),
                           config=from_dict(DreamerAgentConfig, to_dict(config)))
    stamps: list[float] = []

    class _Clock(L.Callback):
        def on_train_batch_end(self, *args, **kwargs) -> None:
            if torch.cuda.is_available() and accelerator != "cpu":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    trainer = L.Trainer(max_steps=OPTIMISERS_PER_STEP * (steps + warmup), accelerator=accelerator,
                        precision=precision, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[_Clock()])
    trainer.fit(module, train_dataloaders=DataLoader(_FixedBatches(synthetic_batch(batch, seq, side, action_dim)),
                                                     batch_size=None))
    seconds = (stamps[-1] - stamps[warmup - 1]) / steps
    params = sum(p.numel() for n, p in module.named_parameters() if not n.startswith("slow_critic"))
    return {
        "preset": preset, "batch": batch, "seq": seq, "horizon": config.horizon, "params": params,
        "seconds_per_step": seconds, "grad_steps_per_s": 1.0 / seconds,
        "replayed_frames_per_s": batch * seq / seconds,
        "imagined_steps_per_s": batch * seq * config.horizon / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch_threads": torch.get_num_threads(), "accelerator": accelerator, "precision": precision,
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(bench_dreamer(*(sys.argv[1:2] or ["S"])), indent=2))
