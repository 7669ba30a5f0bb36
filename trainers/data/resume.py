"""Exact resume (DESIGN.md "Exact resume"): every draw after a checkpoint is a function of (seed, stage, step).

A Lightning resume restores weights, optimiser states and loop counters, but not where a sampler stood
in its epoch nor the global random generators. Instead of saving stream histories, the World Models
stages make them pure functions of the step, so the step a resumed fit runs next draws what the
uninterrupted fit drew there:

- :class:`StepBatchSampler`: batch ``k`` of the fit is a slice of the permutation of epoch ``k // E``,
  seeded from ``(seed, epoch)``; a sampler built at the resumed step yields the rest of that epoch.
- :class:`StepSeeds`: torch, numpy and ``random`` reseeded from ``(seed, stage, rank, step)`` before every
  training step (the VAE's and the MDN-RNN's noise).
- :class:`CheckpointWhenReady`: ``last.ckpt`` every ``n`` steps, each save postponed to a step where the
  state can be resumed exactly (Dreamer's online replay: between two episodes of its one env).
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader, Sampler

from trainers.data.distributed import stage_seed


class StepBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` indices into ``size`` items, ``num_samples`` items per epoch (``None``: ``size``).

    Like ``RandomSampler`` (no replacement: whole permutations laid end to end) with ``drop_last=False``, except
    that batch ``k`` counted over the whole fit is a pure function of ``(seed, k)``. Iterating starts at batch
    ``start`` (the resumed step) and runs to the end of its epoch; the next iteration starts the next epoch.
    """

    def __init__(self, size: int, *, batch_size: int, num_samples: int | None = None, seed: int = 0,
                 start: int = 0) -> None:
        if size < 1 or batch_size < 1:
            raise ValueError(f"StepBatchSampler needs size >= 1 and batch_size >= 1, got {size}, {batch_size}")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.num_samples = num_samples or size
        self.per_epoch = math.ceil(self.num_samples / batch_size)
        self.position = start  # batches of the fit yielded so far (or the step resumed at)

    def __len__(self) -> int:
        return self.per_epoch

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The ``(num_samples,)`` item order of ``epoch``."""
        generator = torch.Generator().manual_seed(stage_seed(self.seed, f"epoch {epoch}"))
        repeats = math.ceil(self.num_samples / self.size)
        return torch.cat([torch.randperm(self.size, generator=generator) for _ in range(repeats)])[: self.num_samples]

    def __iter__(self) -> Iterator[list[int]]:
        epoch, first = divmod(self.position, self.per_epoch)
        order = self.epoch_order(epoch)
        for batch in range(first, self.per_epoch):
            self.position = epoch * self.per_epoch + batch + 1
            yield order[batch * self.batch_size: (batch + 1) * self.batch_size].tolist()


class StepLoader(DataLoader):
    """A ``DataLoader`` over a :class:`StepBatchSampler` built at the restored step. Its position needs no saving,
    so its state is empty; having the ``state_dict`` interface tells Lightning it resumes mid-epoch exactly."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        """Nothing to restore: the sampler starts at ``trainer.global_step``."""


class StepSeeds(Callback):
    """Reseeds torch, numpy and ``random`` before every training step from ``(seed, stage, rank, global_step)``."""

    def __init__(self, seed: int, stage: str) -> None:
        self.seed, self.stage = seed, stage

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        step_seed = stage_seed(self.seed, f"{self.stage} rank {trainer.global_rank} step {trainer.global_step}")
        torch.manual_seed(step_seed)
        np.random.seed(step_seed)
        random.seed(step_seed)


class CheckpointWhenReady(Callback):
    """Writes ``path`` once ``every_n_steps`` optimiser steps are due, at the first step where ``ready(pl_module)``.

    The schedule is ``k * every_n_steps`` whatever the resume point, so a resumed fit saves where an uninterrupted
    one does. Under DDP the ranks save together (the save gathers every rank's state), on schedule.
    """

    def __init__(self, path: str | Path, *, every_n_steps: int, ready: Callable[[LightningModule], bool]) -> None:
        self.path, self.every_n_steps, self.ready = Path(path), every_n_steps, ready
        self._due = every_n_steps

    def _next_due(self, step: int) -> int:
        return (step // self.every_n_steps + 1) * self.every_n_steps

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._due = self._next_due(trainer.global_step)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step < self._due or (trainer.world_size == 1 and not self.ready(pl_module)):
            return
        # The full state (optimisers, replay position); saying so keeps Lightning's per-save log line out of the run's log.
        trainer.save_checkpoint(str(self.path), weights_only=False)
        self._due = self._next_due(trainer.global_step)
