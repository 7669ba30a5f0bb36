"""The one Lightning ``Trainer`` set-up of the World Models stages (V and M) and their resumable fit.

Every stage trainer writes ``STAGE_DIR/ckpt/last.ckpt`` atomically (a kill never leaves it half-written),
logs to ``RUN_DIR/tb/<name>`` (no ``hp_metric``), shows its progress (:class:`~trainers.modules.callbacks.ProgressLog`) and counts ``max_steps`` in optimiser steps. Dreamer's online trainer is
:func:`trainers.runs.dreamer.make_trainer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from trainers.modules.callbacks import ProgressLog
from trainers.runs.checkpoint_io import AtomicCheckpointIO, resume_checkpoint
from trainers.data.distributed import lightning_strategy
from trainers.modules.guards import FiniteGuard


def stage_trainer(*, run_dir: str | Path, stage_dir: Path, name: str, max_steps: int, device: torch.device,
                  checkpoint_every: int, val_batches: int, devices: int = 1, num_nodes: int = 1, strategy: str = "auto",
                  precision: str = "32-true", callbacks: Sequence[L.Callback] = ()) -> L.Trainer:
    """A Trainer for one stage: checkpoints every ``checkpoint_every`` steps into ``stage_dir/ckpt``."""
    return L.Trainer(
        plugins=[AtomicCheckpointIO()],  # last.ckpt is never left half-written by a kill
        precision=precision,
        max_steps=max_steps, max_epochs=-1, accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=devices, num_nodes=num_nodes, strategy=lightning_strategy(strategy),
        use_distributed_sampler=False,  # the data modules shard episodes by rank themselves
        logger=TensorBoardLogger(str(Path(run_dir) / "tb"), name=name, version=0, default_hp_metric=False),
        callbacks=[FiniteGuard(name, hint="a lower learning rate usually fixes this"),  # before any checkpoint of a bad step
                   ModelCheckpoint(dirpath=stage_dir / "ckpt", save_last=True, save_top_k=0,
                                   every_n_train_steps=checkpoint_every), ProgressLog(name), *callbacks],
        limit_val_batches=val_batches, log_every_n_steps=min(50, max(1, max_steps // 10)),
        enable_progress_bar=False, enable_model_summary=False,  # ProgressLog is the one progress display
    )


def fit_resuming(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule, stage_dir: Path) -> None:
    """``trainer.fit``, resuming from ``stage_dir/ckpt/last.ckpt`` (or the previous one, if it is damaged) when a killed run left one."""
    resume = resume_checkpoint(stage_dir / "ckpt" / "last.ckpt")
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None, weights_only=True)


def last_metric(trainer: L.Trainer, key: str) -> float:
    """The last logged value of ``key`` (``nan`` if it was never logged)."""
    value = trainer.callback_metrics.get(key)
    return float(value) if value is not None else float("nan")
