"""Lightning callbacks that show what a world model dreams, the world-model KPIs, and the fit's progress.

Every callback here is OPTIONAL behaviour (STYLE.md): it never touches the loss, runs under
``torch.no_grad`` in eval mode with the global RNG state saved and restored (so a run with and
without it trains identically), and writes only on global rank zero. Each one works every
``every_n_steps`` optimiser steps on ONE fixed held-out batch: the batch handed to its
constructor, else the first batch of ``trainer.datamodule.val_dataloader()`` (DESIGN.md batch:
``obs (B, T, H, W, C) uint8, action (B, T, A), reward (B, T), terminated (B, T), is_first (B, T)``).

Online training without a val set (Dreamer) falls back to a copy of the first training batch the
callback sees. The callbacks render ``(model, head)``: a :class:`~worldmodels.core.WorldModel` (or V
alone, a ``ConvVAE``) and the latent policy that acts in its dreams (``None``: random actions), given by
``models_fn(pl_module)`` if set, else by the module's own ``dream_models()``. They draw through
:mod:`worldmodels.dreams`, i.e. only through the protocol's ``observe`` / ``imagine`` / ``decode``.
Images go to every ``TensorBoardLogger`` of the trainer (other loggers get the scalars only).

Tags: ``dreams/open_loop/sample_<i>``, ``dreams/reconstruction``, ``dreams/latent_traversal``,
``dreams/imagined/sample_<i>``, ``kpi/open_loop_mse_h<h>``, ``kpi/open_loop_psnr_h<h>``, the baselines and
ratios of :mod:`worldmodels.baselines` (``kpi/copy_last_mse_h<h>``, ``kpi/open_loop_vs_copy_h<h>``, ...),
``kpi/reward_mae``, ``kpi/reward_at_events`` (rows with a non-zero reward), ``kpi/termination_accuracy``, ``kpi/return_vs_env_steps``.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from worldmodels import dreams, viz
from worldmodels.dreams import latent_traversal_grid
from worldmodels.kpis import as_numpy, format_kpi_table, open_loop_kpis
from worldmodels.core import LatentPolicy
from worldmodels.progress import Progress

ModelsFn = Callable[[LightningModule], tuple[dreams.DreamModel, LatentPolicy | None]]
"""``pl_module -> (model, head)``: what a callback renders and who acts in its dreams (``None``: random)."""


def dream_models(pl_module: LightningModule) -> tuple[dreams.DreamModel, LatentPolicy | None]:
    """The module's ``dream_models()`` (``DreamerModule``, ``VAEModule``); other modules need ``models_fn=``."""
    if not hasattr(pl_module, "dream_models"):
        raise TypeError(f"{type(pl_module).__name__} has no dream_models(): pass models_fn= to the callback")
    return pl_module.dream_models()


def tensorboard_writers(trainer: Trainer) -> list[Any]:
    """The torch ``SummaryWriter`` of every TensorBoardLogger of ``trainer`` (empty on other loggers)."""
    return [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


@rank_zero_only
def print_kpi_table(metrics: Mapping[str, float], logdir: str | None) -> str:
    """Print (on rank zero) and return the end-of-stage KPI table; any stage can call it."""
    table = format_kpi_table(metrics, logdir)
    print(table)
    return table


@contextlib.contextmanager
def _isolated(pl_module: LightningModule) -> Iterator[None]:
    """no_grad + eval mode + saved/restored RNG state, so a callback cannot change training."""
    was_training = pl_module.training
    devices = [pl_module.device] if pl_module.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        pl_module.eval()
        try:
            yield
        finally:
            pl_module.train(was_training)


class _EveryNSteps(Callback, abc.ABC):
    """Shared plumbing: step schedule, rank-zero guard, held-out batch, model lookup."""

    def __init__(self, *, every_n_steps: int = 500, batch: Mapping[str, Any] | None = None,
                 num_samples: int = 2, models_fn: ModelsFn | None = None) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.models_fn = models_fn
        self._batch = dict(batch) if batch is not None else None
        self._last_bucket = 0

    def heldout_batch(self, trainer: Trainer, train_batch: Any = None) -> dict[str, torch.Tensor] | None:
        """The fixed batch (first ``num_samples`` rows): given, else the val loader's first, else ``train_batch``'s copy."""
        if self._batch is None:
            datamodule = getattr(trainer, "datamodule", None)
            if datamodule is not None and hasattr(datamodule, "val_dataloader"):
                self._batch = dict(next(iter(datamodule.val_dataloader())))
            elif isinstance(train_batch, Mapping) and "obs" in train_batch:
                self._batch = {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in train_batch.items()}
            else:
                return None
        return {k: v[: self.num_samples] if torch.is_tensor(v) else v for k, v in self._batch.items()}

    def models(self, pl_module: LightningModule) -> tuple[dreams.DreamModel, LatentPolicy | None]:
        return (self.models_fn or dream_models)(pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        # Run when global_step enters a new multiple of every_n_steps. Not ``step % n == 0``: with manual
        # optimisation one training step may add several optimiser steps (Dreamer: 3) and skip the multiple.
        bucket = step // self.every_n_steps
        if bucket == self._last_bucket:
            return
        self._last_bucket = bucket
        if not trainer.is_global_zero:
            return
        self._run(trainer, pl_module, step, batch)

    @rank_zero_only
    def _run(self, trainer: Trainer, pl_module: LightningModule, step: int, train_batch: Any = None) -> None:
        with _isolated(pl_module):  # also around the fetch: a DataLoader iterator draws a seed from the global RNG
            batch = self.heldout_batch(trainer, train_batch)
            # Vector observations (B, T, D): these callbacks score and draw decoded frames, so vector runs log
            # losses and returns but no open-loop KPIs yet.
            if batch is not None and batch["obs"].dim() != 3:
                self.render(trainer, pl_module, batch, step)

    @abc.abstractmethod
    def render(self, trainer: Trainer, pl_module: LightningModule, batch: dict[str, torch.Tensor], step: int) -> None:
        """Write this callback's summaries for the held-out ``batch`` at ``step``."""


def _inputs(batch: Mapping[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    obs = batch["obs"].to(device)  # (B, T, H, W, C) uint8
    action = batch["action"].to(device).float()  # (B, T, A)
    is_first = batch["is_first"].to(device).bool()  # (B, T)
    return obs, action, is_first


class OpenLoopCallback(_EveryNSteps):
    """``context`` real frames, then ``horizon`` frames predicted under the real actions; true | pred | |error| GIFs.

    Tags ``dreams/open_loop/sample_<i>``; frames before ``context`` show the real frame as the prediction
    (green border), imagined frames have a red border.
    """

    def __init__(self, *, context: int = 5, horizon: int = 15, fps: float = 8.0, scale: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.context, self.horizon, self.fps, self.scale = context, horizon, fps, scale

    def render(self, trainer, pl_module, batch, step):
        obs, action, is_first = _inputs(batch, pl_module.device)
        T = min(obs.shape[1], self.context + self.horizon)
        model, _ = self.models(pl_module)
        out = dreams.open_loop(model, obs[:, :T], action[:, :T], is_first[:, :T], context=self.context)
        true = viz.as_uint8(obs[:, :T])  # (B, T, H, W, C)
        pred = np.concatenate([true[:, : self.context], viz.as_uint8(out["frames"])], axis=1)  # (B, T, H, W, C)
        for writer in tensorboard_writers(trainer):
            for i in range(true.shape[0]):
                strip = viz.compare_strip(true[i], pred[i], self.context, scale=self.scale)
                viz.add_gif_summary(writer, f"dreams/open_loop/sample_{i}", strip, step, self.fps)


class ReconstructionCallback(_EveryNSteps):
    """Grid of real frames (top row) over their reconstructions (bottom row); tag ``dreams/reconstruction``."""

    def __init__(self, *, frames_per_sample: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.frames_per_sample = frames_per_sample

    def render(self, trainer, pl_module, batch, step):
        obs = batch["obs"][:, : self.frames_per_sample].to(pl_module.device)  # (B, F, H, W, C)
        real = obs.reshape(-1, *obs.shape[2:])  # (B * F, H, W, C)
        recon = viz.as_uint8(dreams.reconstruct(self.models(pl_module)[0], real))  # (B * F, H, W, C)
        grid = viz.image_grid(np.stack([viz.as_uint8(real), recon]))  # rows: real, reconstructed
        for writer in tensorboard_writers(trainer):
            viz.add_image_summary(writer, "dreams/reconstruction", grid, step)


class LatentTraversalCallback(_EveryNSteps):
    """World Models: the ``dims`` most active latent dimensions swept over +-``sigma``; tag ``dreams/latent_traversal``.

    One row per dimension, ``steps`` columns from -sigma to +sigma, decoded around the first held-out frame.
    """

    def __init__(self, *, dims: int = 6, steps: int = 7, sigma: float = 3.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dims, self.steps, self.sigma = dims, steps, sigma

    def render(self, trainer, pl_module, batch, step):
        obs = batch["obs"].to(pl_module.device)  # (B, T, H, W, C)
        grid = latent_traversal_grid(self.models(pl_module)[0], obs[:1, 0], obs.flatten(0, 1), dims=self.dims,
                                     steps=self.steps, sigma=self.sigma)
        for writer in tensorboard_writers(trainer) if grid is not None else []:
            viz.add_image_summary(writer, "dreams/latent_traversal", grid, step)


class DreamCallback(_EveryNSteps):
    """``context`` real frames, then ``horizon`` frames the model imagines under its own policy.

    GIF with the predicted reward and end probability drawn under each frame; tags ``dreams/imagined/sample_<i>``.
    """

    def __init__(self, *, context: int = 5, horizon: int = 15, fps: float = 8.0, scale: int = 2,
                 reward_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.context, self.horizon, self.fps, self.scale, self.reward_scale = context, horizon, fps, scale, reward_scale

    def render(self, trainer, pl_module, batch, step):
        obs, action, is_first = _inputs(batch, pl_module.device)
        K = self.context
        model, head = self.models(pl_module)
        out = dreams.dream(model, head, obs[:, :K], action[:, :K], is_first[:, :K], horizon=self.horizon)
        frames = np.concatenate([viz.as_uint8(obs[:, :K]), viz.as_uint8(out["frames"])], axis=1)  # (B, K + H, ...)
        reward = np.concatenate([np.zeros((frames.shape[0], K)), as_numpy(out["reward"])], axis=1)  # (B, K + H)
        end = np.concatenate([np.zeros((frames.shape[0], K)), as_numpy(out["end"])], axis=1)  # (B, K + H)
        for writer in tensorboard_writers(trainer):
            for i in range(frames.shape[0]):
                shown = viz.dream_frames(frames[i], reward[i], end[i], context=K, scale=self.scale, reward_scale=self.reward_scale)
                viz.add_gif_summary(writer, f"dreams/imagined/sample_{i}", shown, step, self.fps)


class WorldModelKPICallback(_EveryNSteps):
    """Open-loop prediction KPIs on the held-out batch, as scalars on every logger (see :func:`open_loop_kpis`).

    ``last_metrics`` keeps the latest values for :class:`KPISummary`.
    """

    def __init__(self, *, context: int = 5, horizons: tuple[int, ...] = (1, 5, 15), num_samples: int = 16,
                 **kwargs: Any) -> None:
        super().__init__(num_samples=num_samples, **kwargs)
        self.context, self.horizons = context, tuple(horizons)
        self.last_metrics: dict[str, float] = {}

    def render(self, trainer, pl_module, batch, step):
        obs, action, is_first = _inputs(batch, pl_module.device)
        T = min(obs.shape[1], self.context + max(self.horizons))
        out = dreams.open_loop(self.models(pl_module)[0], obs[:, :T], action[:, :T], is_first[:, :T],
                               context=self.context)
        metrics = open_loop_kpis(batch, out, self.context, self.horizons)
        self.last_metrics.update(metrics)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)


class KPISummary(Callback):
    """At the end of ``fit``, print the last value of every KPI and the ``tensorboard --logdir`` line.

    Collects ``trainer.callback_metrics`` whose names start with one of ``prefixes`` plus the
    ``last_metrics`` of every callback that keeps them (:class:`WorldModelKPICallback`).
    """

    def __init__(self, prefixes: tuple[str, ...] = ("kpi/", "train/", "val/", "imag/")) -> None:
        self.prefixes = prefixes
        self.table: str | None = None

    def collect(self, trainer: Trainer) -> dict[str, float]:
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items()
                   if name.startswith(self.prefixes) and torch.as_tensor(value).numel() == 1}
        for callback in trainer.callbacks:
            metrics.update(getattr(callback, "last_metrics", {}) or {})
        return metrics

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        logger = trainer.logger
        logdir = None if logger is None else getattr(logger, "root_dir", None) or logger.log_dir
        self.table = print_kpi_table(self.collect(trainer), logdir)


class ProgressLog(Callback):
    """The one progress display of a fit (Lightning's own bar is off): :class:`worldmodels.progress.Progress`.

    Counts the stage's steps, ``global_step // steps_per_update`` (Dreamer: 3 optimiser steps per gradient
    step), up to ``max_steps`` (else the Trainer's estimate), from where a resumed fit starts; shows the last
    value of each of ``metrics`` that was logged. Rank zero only.
    """

    def __init__(self, stage: str, *, steps_per_update: int = 1, metrics: tuple[str, ...] = ("train/loss",),
                 **progress_options: Any) -> None:
        self.stage, self.steps_per_update, self.metrics = stage, steps_per_update, metrics
        self.progress_options = progress_options
        self.progress: Progress | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        total = trainer.max_steps if trainer.max_steps > 0 else int(trainer.estimated_stepping_batches)
        self.progress = Progress(self.stage, total // self.steps_per_update,
                                 initial=trainer.global_step // self.steps_per_update, **self.progress_options)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.progress is not None:
            self.progress.set(trainer.global_step // self.steps_per_update, detail=self.detail(trainer))

    def detail(self, trainer: Trainer) -> str:
        values = [(name, trainer.callback_metrics.get(name)) for name in self.metrics]
        return ", ".join(f"{name} {float(value):.4g}" for name, value in values
                         if value is not None and torch.as_tensor(value).numel() == 1)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)
