"""The fine-tuning benchmark of ``wm bench-finetune``: does fine-tuning a pretrained world model reach the from-scratch validation loss in fewer steps?

On a held-out env (default ALE/Breakout-v5, in no shipped checkpoint) one random-policy data set is
collected; then each model is trained twice with the SAME data, sizes, seed and Trainer settings: once
from a fresh initialisation, once from ``--from`` (action layers re-initialised as in ``wm finetune``).
The validation loss is measured every ``--eval-every`` optimiser steps (and at step 0). Reported per
model: both curves, the from-scratch final loss, the first step at which each run reaches it, and

    ratio = steps_finetune / steps_scratch        (< 1: fine-tuning is faster; null: never reached)

World Models: V (``val/loss`` = rec + kl), then M on latents of the fine-tuned V for BOTH runs (same
inputs, so the M curves compare initialisations only). Dreamer: the world model's weighted Eq. 5 loss
on held-out chunks, trained offline through ``DreamerModule`` (its actor-critic trains alongside).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import lightning as L
import torch

from trainers.data.datamodule import ChunkDataModule
from trainers.modules.dreamer import DreamerModule
from trainers.runs.finetune import FinetuneConfig, resolve_source, target_action_spec, worldmodels_config
from trainers.data.latents import LatentDataModule
from trainers.modules.losses import weighted_sum
from trainers.runs.worldmodels_stages import mdnrnn_module, stage_collect, vae_module
from worldmodels.checkpoint import allow_unverified_arg, allowing_unverified, read_config
from worldmodels.config import arg, file_problem, save_json_atomic, threads_arg
from worldmodels.data.latents import encode_store
from worldmodels.envs.toy import register_toy_envs
from worldmodels.pretrained import ACTION_LAYERS, DREAMER, WORLDMODELS, transfer
from worldmodels.profiling import resolve_device, set_threads


@dataclass
class BenchFinetuneConfig:
    source: str = arg("", "pretrained model (--from): a directory, or NAME / checkpoints/NAME of a shipped one")
    env: str = arg("ALE/Breakout-v5", "held-out env id, in no shipped checkpoint")
    steps: int = arg(2000, "optimiser steps of each run (scratch and fine-tune, per model)")
    eval_every: int = arg(100, "validation every this many optimiser steps")
    family_preset: str = arg("tiny", "the family script's preset for data and batch settings; sizes come from the checkpoint")
    episodes: int = arg(0, "random episodes collected in the held-out env (0 = the preset's)")
    max_episode_steps: int = arg(0, "truncate episodes after this many agent steps (0 = the preset's / env default)")
    run_dir: str = arg("runs/bench_finetune", "data and per-run logs")
    seed: int = arg(0, "seed of collection, initialisation and batches (both runs)")
    device: str = arg("auto", "auto, cpu or cuda")
    threads: str = threads_arg("", "empty = the family preset's", empty_ok=True)
    allow_unverified: bool = allow_unverified_arg()
    out: Optional[str] = arg(None, "also write the JSON record to this path (atomically)",
                             check=lambda c: file_problem(c.out))


class ValHistory(L.Callback):
    """``(optimiser step, loss)`` after every validation; ``loss_fn(module)`` overrides the logged ``val/loss``."""

    def __init__(self, loss_fn: Callable[[L.LightningModule], float] | None = None, every: int = 0) -> None:
        self.points: list[tuple[int, float]] = []
        self.loss_fn, self.every, self.batches = loss_fn, every, 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.loss_fn is None and not trainer.sanity_checking and "val/loss" in trainer.callback_metrics:
            self.points.append((trainer.global_step, float(trainer.callback_metrics["val/loss"])))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.loss_fn is not None:
            self.points.append((0, self.loss_fn(pl_module)))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1
        if self.loss_fn is not None and self.batches % self.every == 0:
            self.points.append((self.batches, self.loss_fn(pl_module)))


def steps_to_reach(points: list[tuple[int, float]], target: float) -> int | None:
    return next((step for step, loss in points if loss <= target), None)


def compare(scratch: list[tuple[int, float]], finetune: list[tuple[int, float]]) -> dict:
    target = scratch[-1][1]
    s, f = steps_to_reach(scratch, target), steps_to_reach(finetune, target)
    return {"scratch_final_loss": target, "finetune_final_loss": finetune[-1][1], "steps_scratch": s, "steps_finetune": f,
            "ratio": (f / s if s else 0.0) if f is not None else None, "scratch_curve": scratch, "finetune_curve": finetune}


def _fit_curve(module: L.LightningModule, datamodule, *, steps: int, eval_every: int, accelerator: str, validate: bool,
               history: ValHistory | None = None) -> list[tuple[int, float]]:
    """Train ``module`` with the Trainer for ``steps``; the validation curve (step 0 included)."""
    history = history or ValHistory()
    trainer = L.Trainer(max_steps=steps, max_epochs=-1, accelerator=accelerator, devices=1, logger=False,
                        enable_checkpointing=False, callbacks=[history], num_sanity_val_steps=0,
                        val_check_interval=eval_every if validate else None, check_val_every_n_epoch=None if validate else 1,
                        limit_val_batches=1.0 if validate else 0, enable_progress_bar=False, enable_model_summary=False)
    if validate:
        trainer.validate(module, datamodule=datamodule, verbose=False)
        history.points = [(0, history.points[-1][1])]
    trainer.fit(module, datamodule=datamodule)
    return history.points


def bench_finetune(config: BenchFinetuneConfig) -> dict:
    """Both runs of every model of ``config.source`` on the held-out env; returns (and optionally writes) the record."""
    with allowing_unverified(config.allow_unverified):  # the source's weights are read by several transfers
        return _bench_finetune(config)


def _bench_finetune(config: BenchFinetuneConfig) -> dict:
    register_toy_envs()
    source = resolve_source(config.source)
    pretrained = read_config(source)
    family = pretrained["family"]
    if config.env == pretrained["env_id"]:
        raise ValueError(f"--env {config.env} is the checkpoint's own env; the benchmark needs a held-out env")
    run_dir = Path(config.run_dir)
    ft = FinetuneConfig(source=str(source), env=config.env, updates=config.steps, run_dir=str(run_dir / "data"),
                        family_preset=config.family_preset, episodes=config.episodes,
                        max_episode_steps=config.max_episode_steps, seed=config.seed, device=config.device)
    wm = worldmodels_config(ft, {**pretrained, "sizes": pretrained.get("sizes") if family == WORLDMODELS else _vae_like(pretrained)},
                            config.env)
    set_threads(config.threads or wm.threads)
    store_dir = stage_collect(wm)  # one data set for every run (resumable)
    spec = target_action_spec(config.env, int(pretrained["obs_shape"][0]))
    accelerator = "gpu" if resolve_device(wm.device).type == "cuda" else "cpu"
    models: dict[str, dict] = {}
    if family == WORLDMODELS:
        models = _bench_worldmodels(config, source, wm, store_dir, spec, accelerator)
    elif family == DREAMER:
        batch, seq_len = wm.mdnrnn_batch_size, wm.mdnrnn_seq_len
        runs = {}
        for name in ("scratch", "finetune"):
            L.seed_everything(config.seed, verbose=False)
            module = DreamerModule(obs_shape=pretrained["obs_shape"], action_spec=spec, config=pretrained["config"])
            if name == "finetune":
                transfer(source, {"world_model": module.world_model, "actor": module.actor, "critic": module.critic},
                         reinit=ACTION_LAYERS[DREAMER],
                         keep_columns={"world_model.rssm.img_in.0.weight": module.config.stoch * module.config.classes})
            data = ChunkDataModule(str(store_dir), seq_len=seq_len, batch_size=batch, val_fraction=wm.val_fraction,
                                   seed=config.seed, samples_per_epoch=batch * config.steps)
            data.setup("fit")
            val_batches = list(data.val_dataloader())[: wm.val_batches]
            history = ValHistory(lambda m, vb=val_batches: _dreamer_val_loss(m, vb), every=config.eval_every)
            runs[name] = _fit_curve(module, data, steps=config.steps * 3, eval_every=config.eval_every, accelerator=accelerator,
                                    validate=False, history=history)
        models["world_model"] = compare(runs["scratch"], runs["finetune"])
    result = {"bench": "finetune", "source": str(source), "family": family, "source_env": pretrained["env_id"],
              "env": config.env, "steps": config.steps, "eval_every": config.eval_every, "models": models}
    print(json.dumps({k: v for k, v in result.items() if k != "models"} |
                     {name: {k: v for k, v in m.items() if not k.endswith("curve")} for name, m in models.items()}))
    if config.out:
        save_json_atomic(config.out, result)
    return result


def _bench_worldmodels(config, source, wm, store_dir, spec, accelerator) -> dict:
    models, vae_modules, curves = {}, {}, {}
    for name in ("scratch", "finetune"):
        L.seed_everything(config.seed, verbose=False)
        module = vae_module(wm)
        if name == "finetune":
            transfer(source, {"vae": module.vae})
        data = ChunkDataModule(str(store_dir), seq_len=1, batch_size=wm.vae_batch_size, val_fraction=wm.val_fraction,
                               seed=config.seed, samples_per_epoch=wm.vae_batch_size * config.steps)
        curves[name] = _fit_curve(module, data, steps=config.steps, eval_every=config.eval_every, accelerator=accelerator,
                                  validate=True)
        vae_modules[name] = module
    models["vae"] = compare(curves["scratch"], curves["finetune"])
    latent_dir = Path(config.run_dir) / "latents"
    encode_store(vae_modules["finetune"].vae.cpu(), store_dir, latent_dir, device="cpu")
    for name in ("scratch", "finetune"):
        L.seed_everything(config.seed, verbose=False)
        module = mdnrnn_module(wm, spec.dim)
        if name == "finetune":
            transfer(source, {"mdnrnn": module.mdnrnn}, reinit=ACTION_LAYERS[WORLDMODELS],
                     keep_columns={"mdnrnn.lstm.weight_ih_l0": wm.z_dim})
        data = LatentDataModule(str(latent_dir), seq_len=wm.mdnrnn_seq_len, batch_size=wm.mdnrnn_batch_size,
                                val_fraction=wm.val_fraction, seed=config.seed,
                                samples_per_epoch=wm.mdnrnn_batch_size * config.steps)
        curves[name] = _fit_curve(module, data, steps=config.steps, eval_every=config.eval_every, accelerator=accelerator,
                                  validate=True)
    models["mdnrnn"] = compare(curves["scratch"], curves["finetune"])
    return models


@torch.no_grad()
def _dreamer_val_loss(module, batches) -> float:
    """Weighted Eq. 5 world-model loss of ``module`` on held-out chunks (the training weights)."""
    total = 0.0
    for batch in batches:
        batch = {k: v.to(module.device) for k, v in batch.items()}
        batch["is_first"] = batch["is_first"].clone()
        batch["is_first"][:, 0] = True
        parts, _, _ = module.world_model.loss(batch)
        total += float(weighted_sum(parts, module.loss_scales))
    return total / max(1, len(batches))


def _vae_like(pretrained: dict) -> dict:
    """Data settings for a Dreamer checkpoint: only the image size matters for collection."""
    side = int(pretrained["obs_shape"][0])
    return {"vae": {"image_size": side, "z_dim": 1, "depth": 1, "stages": 1}, "mdnrnn": {"hidden_size": 1, "num_mixtures": 1}}
