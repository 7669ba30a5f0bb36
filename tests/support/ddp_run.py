"""Train one family for a few steps under Lightning DDP with a :class:`RankReport`; run by ``tests/integration/test_ddp.py``.

    python tests/support/ddp_run.py dreamer RUN_DIR [--devices 2]
    python tests/support/ddp_run.py vae RUN_DIR --store STORE_DIR [--devices 2]

Lightning's DDP launcher re-executes this same command line once per extra rank (with ``LOCAL_RANK`` set),
so every rank builds its own data and writes ``RUN_DIR/ranks/rank<r>.json`` at the end of fit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run_dreamer(run_dir: Path, devices: int) -> None:
    from scripts import dreamer
    from trainers.data.distributed import RankReport
    from worldmodels.config import build_config

    # debug preset: prefill 200 random steps, then B*T / replay_ratio = 1 env step per gradient step,
    # so 204 env steps per rank = 4 gradient steps = 12 optimiser steps.
    config = build_config(dreamer.CONFIG, {"steps": 204, "run_dir": str(run_dir), "eval_episodes": 1,
                                           "device": "cpu", "devices": devices, "strategy": "ddp"},
                          presets=dreamer.PRESETS, preset="debug")
    dreamer.run(config, callbacks=[RankReport(run_dir / "ranks")])


def run_vae(run_dir: Path, store_dir: str, devices: int) -> None:
    import lightning as L

    from trainers.data.datamodule import ChunkDataModule
    from trainers.data.distributed import RankReport, lightning_strategy
    from trainers.modules.vae import VAEModule

    L.seed_everything(0, verbose=False)
    module = VAEModule(image_size=16, z_dim=4, depth=4, stages=2)
    datamodule = ChunkDataModule(store_dir, seq_len=1, batch_size=4, val_fraction=0.0, seed=0, samples_per_epoch=16)
    trainer = L.Trainer(max_steps=4, max_epochs=-1, accelerator="cpu", devices=devices,
                        strategy=lightning_strategy("ddp"), use_distributed_sampler=False, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[RankReport(run_dir / "ranks")])
    trainer.fit(module, datamodule=datamodule)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("family", choices=("dreamer", "vae"))
    parser.add_argument("run_dir")
    parser.add_argument("--store")
    parser.add_argument("--devices", type=int, default=2)
    args = parser.parse_args(argv)
    if args.family == "dreamer":
        run_dreamer(Path(args.run_dir), args.devices)
    else:
        run_vae(Path(args.run_dir), args.store, args.devices)
    return 0


if __name__ == "__main__":
    sys.exit(main())
