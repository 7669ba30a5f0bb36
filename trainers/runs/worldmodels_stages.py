"""The World Models stages (Ha & Schmidhuber 2018): collect -> V -> latents -> M -> C, each resumable.

Every stage writes its artifacts under ``RUN_DIR`` and is skipped when its ``DONE`` marker exists, so a
killed run resumes where it stopped (Lightning stages from ``ckpt/last.ckpt``, CMA-ES from
``controller/es_state.*``)::

    RUN_DIR/episodes/        random-policy episode store (+ DONE)
    RUN_DIR/vae/             model.safetensors + config.json (+ ckpt/last.ckpt, DONE)
    RUN_DIR/latents/         V's mu / logvar per episode (re-encoded only if older than vae/model.safetensors)
    RUN_DIR/mdnrnn/          model.safetensors + config.json (+ ckpt/last.ckpt, DONE)
    RUN_DIR/controller/      model.safetensors + config.json (+ es_state.npz/json, DONE)
    RUN_DIR/tb/              TensorBoard: vae/, mdnrnn/, controller/, evaluate/

The stage directories are the exchange format's World Models layout (:mod:`worldmodels.families.vm`):
``worldmodels.load(RUN_DIR)`` reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from trainers.modules.callbacks import print_kpi_table
from trainers.data.datamodule import ChunkDataModule
from trainers.data.distributed import barrier, is_rank_zero, stage_seed, wait_for_file
from trainers.modules.dream_callbacks import dream_callbacks, heldout_episodes, with_vae
from trainers.data.latents import LatentDataModule
from trainers.modules.mdnrnn import MDNRNNModule
from trainers.runs.performance import default_precision, use_channels_last
from trainers.data.resume import StepSeeds
from trainers.runs.trainer_factory import fit_resuming, last_metric, stage_trainer
from trainers.modules.vae import VAEModule
from trainers.runs.worldmodels_config import DEFAULT_DREAM_HORIZON, WorldModelsConfig, env_options
from worldmodels.checkpoint import allowing_unverified
from worldmodels.config import given, save_json_atomic
from worldmodels.controllers.cmaes import train_cmaes
from worldmodels.controllers.linear import make_controller
from worldmodels.controllers.real_env import real_fitness
from worldmodels.data.collect import collect_episodes, store_spec_for
from worldmodels.data.latents import load_latents, start_latents
from worldmodels.data.store import EpisodeStore
from worldmodels.envs import agent_frameskip, make, make_vector
from worldmodels.envs.options import resolve_options
from worldmodels.envs.spaces import ActionSpec
from worldmodels.families.vm import DONE, read_layout, save_controller, save_stage
from worldmodels.imagination.cmaes_dream import dream_fitness
from worldmodels.models.mdnrnn import MDNRNN
from worldmodels.models.vae import ConvVAE
from worldmodels.models.vm_world_model import VMWorldModel
from worldmodels.profiling import resolve_device
from worldmodels.registry import assemble
from worldmodels.kpis import log_return_vs_env_steps


def vae_module(config: WorldModelsConfig) -> VAEModule:
    """V's LightningModule with the config's sizes (the one place its constructor is called from a config)."""
    return VAEModule(image_size=config.image_size, z_dim=config.z_dim, depth=config.vae_depth, stages=config.vae_stages,
                     kl_tolerance=config.kl_tolerance, learning_rate=config.vae_lr)


def mdnrnn_module(config: WorldModelsConfig, action_dim: int, *, loss_scales: dict | None = None) -> MDNRNNModule:
    """M's LightningModule with the config's sizes."""
    return MDNRNNModule(z_dim=config.z_dim, action_dim=action_dim, hidden_size=config.hidden_size,
                        num_mixtures=config.num_mixtures, learning_rate=config.mdnrnn_lr, loss_scales=loss_scales,
                        done_pos_weight=config.done_pos_weight)


def vae_datamodule(config: WorldModelsConfig, store_dir: Path) -> ChunkDataModule:
    """Single frames (``seq_len`` 1) of the store for V."""
    return ChunkDataModule(str(store_dir), seq_len=1, batch_size=config.vae_batch_size, val_fraction=config.val_fraction,
                           seed=config.seed, samples_per_epoch=config.vae_batch_size * min(config.vae_steps, 500),
                           num_workers=config.loader_workers, pin_memory=resolve_device(config.device).type == "cuda")


def mdnrnn_datamodule(config: WorldModelsConfig, latent_dir: Path) -> LatentDataModule:
    """``(B, T)`` chunks of the latent cache for M."""
    return LatentDataModule(str(latent_dir), seq_len=config.mdnrnn_seq_len, batch_size=config.mdnrnn_batch_size,
                            val_fraction=config.val_fraction, seed=config.seed,
                            samples_per_epoch=config.mdnrnn_batch_size * min(config.mdnrnn_steps, 500))


def trainer_for(config: WorldModelsConfig, stage: str, max_steps: int, *, precision: str = "32-true",
                callbacks: Sequence[L.Callback] = ()) -> L.Trainer:
    """The stage Trainer (:func:`trainers.runs.trainer_factory.stage_trainer`) with the run's device and DDP settings.

    Every step is reseeded from ``(seed, stage, step)`` (:class:`~trainers.data.resume.StepSeeds`), so a fit resumed from
    ``ckpt/last.ckpt`` draws the noise of an uninterrupted one.
    """
    return stage_trainer(run_dir=config.run_dir, stage_dir=Path(config.run_dir) / stage, name=stage, max_steps=max_steps,
                         device=resolve_device(config.device), checkpoint_every=config.checkpoint_every,
                         val_batches=config.val_batches, devices=config.devices, num_nodes=config.num_nodes,
                         strategy=config.strategy, precision=precision,
                         callbacks=[StepSeeds(config.seed, stage), *callbacks])


def load_stage(config: WorldModelsConfig, stage: str) -> torch.nn.Module:
    """A finished stage's component (``vae`` or ``mdnrnn``), through the one loader, on the run's device."""
    with allowing_unverified(config.allow_unverified):  # a run written before digests existed, resumed
        layout, tensors = read_layout(Path(config.run_dir))
    layout = {**layout, "sizes": {stage: layout["sizes"][stage]}}
    return assemble("worldmodels", layout, {stage: tensors[stage]}, device=resolve_device(config.device)).components[stage]


def stage_collect(config: WorldModelsConfig) -> Path:
    """Random-policy rollouts into RUN_DIR/episodes (the collector itself resumes to the target total); ``--store``: that store."""
    if config.store:  # offline: train on the given store, make no env
        return Path(config.store)
    store_dir = Path(config.run_dir) / "episodes"
    if not is_rank_zero():  # torchrun / srun start every rank at once: rank zero collects, the others wait
        wait_for_file(store_dir / DONE)
    if (store_dir / DONE).exists():
        return store_dir
    vec_env = make_vector(config.env, config.num_envs, seed=config.seed, **env_options(config))
    try:
        spec = store_spec_for(vec_env, config.env)
        store = EpisodeStore.create(store_dir, env_id=spec.env_id, obs_shape=spec.obs_shape, action_spec=spec.action_spec)
        stats = collect_episodes(vec_env, store, episodes=config.episodes, policy=config.collect_policy, seed=config.seed)
    finally:
        vec_env.close()
    save_json_atomic(store_dir / DONE, stats.to_dict())
    return store_dir


def fit_stage(config: WorldModelsConfig, stage: str, module: L.LightningModule, datamodule: L.LightningDataModule,
              max_steps: int, *, precision: str = "32-true", callbacks: Sequence[L.Callback] = (),
              done: dict | None = None) -> dict[str, float]:
    """Fit ``module`` (resuming), then on rank zero save its component to ``RUN_DIR/<stage>/`` and mark it done."""
    out = Path(config.run_dir) / stage
    trainer = trainer_for(config, stage, max_steps, precision=precision, callbacks=callbacks)
    fit_resuming(trainer, module, datamodule, out)
    metrics = {f"{stage}_val_loss": last_metric(trainer, "val/loss")}
    if is_rank_zero():
        save_stage(out, stage, getattr(module, stage))
        save_json_atomic(out / DONE, {"steps": max_steps, **(done or {}), **metrics})
    barrier()  # other ranks load the component only after rank zero wrote it
    return metrics


def copy_pretrained(config: WorldModelsConfig, components: dict[str, torch.nn.Module]) -> None:
    """``--from``: a pretrained model's V and M become this run's finished ``vae`` and ``mdnrnn`` stages."""
    for stage in ("vae", "mdnrnn"):
        out = Path(config.run_dir) / stage
        if not (out / DONE).exists():
            save_stage(out, stage, components[stage].cpu())
            save_json_atomic(out / DONE, {"steps": 0, "from": config.init_from})


def stage_vae(config: WorldModelsConfig, store_dir: Path) -> ConvVAE:
    """Fit V on single frames, export it to RUN_DIR/vae."""
    if not (Path(config.run_dir) / "vae" / DONE).exists():
        module = vae_module(config)
        device = resolve_device(config.device)
        if device.type == "cuda":
            use_channels_last(module)  # NHWC conv kernels; frames are NHWC in storage already
        fit_stage(config, "vae", module, vae_datamodule(config, store_dir), config.vae_steps,
                  precision=config.precision or default_precision(device),
                  callbacks=dream_callbacks("vae", every_n_steps=config.dream_every, total_steps=config.vae_steps))
    return load_stage(config, "vae")


def frame_batch(config: WorldModelsConfig, store_dir: Path, length: int = 20) -> dict | None:
    """Real frames for M's dream summaries: the first held-out (B, T) chunk, or None if episodes are too short."""
    datamodule = ChunkDataModule(str(store_dir), seq_len=length, batch_size=4, val_fraction=config.val_fraction,
                                 seed=config.seed)
    try:
        datamodule.setup("fit")
        loader = datamodule.val_dataloader() or datamodule.train_dataloader()
        return dict(next(iter(loader)))
    except (ValueError, StopIteration):
        return None  # stores whose episodes are shorter than the window: no dream summaries, training goes on


def stage_mdnrnn(config: WorldModelsConfig, latent_dir: Path, action_spec: ActionSpec, *, vae: ConvVAE,
                 store_dir: Path) -> MDNRNN:
    """Fit M on (B, T) chunks of cached latents, export it to RUN_DIR/mdnrnn."""
    if not (Path(config.run_dir) / "mdnrnn" / DONE).exists():
        callbacks = dream_callbacks("mdnrnn", every_n_steps=config.dream_every, total_steps=config.mdnrnn_steps,
                                    batch=frame_batch(config, store_dir),
                                    episodes=heldout_episodes(store_dir, val_fraction=config.val_fraction,
                                                              seed=config.seed),
                                    models_fn=with_vae(vae, action_spec))
        fit_stage(config, "mdnrnn", mdnrnn_module(config, action_spec.dim), mdnrnn_datamodule(config, latent_dir),
                  config.mdnrnn_steps, callbacks=callbacks)
    return load_stage(config, "mdnrnn")


def dream_horizon(config: WorldModelsConfig) -> int:
    """Dream steps per rollout: ``--dream-horizon``, else the env's time limit in agent steps, else the default.

    A dream longer than the real episode can be would reward surviving past a limit the real env enforces.
    """
    if config.dream_horizon is not None:
        return config.dream_horizon
    if config.store:  # offline: the longest recorded episode stands in for the env's limit (rows = steps + 1)
        return max(info.length for info in EpisodeStore.open(config.store).episodes) - 1
    env = make(config.env, **env_options(config))
    try:
        limit = env.spec.max_episode_steps if env.spec is not None else None  # env steps (frameskip included)
    finally:
        env.close()
    frameskip = agent_frameskip(config.env, resolve_options(config.image_size, given(frameskip=config.frameskip)))
    return limit // frameskip if limit else DEFAULT_DREAM_HORIZON


def stage_controller(config: WorldModelsConfig, vae: ConvVAE, mdnrnn: MDNRNN, latent_dir: Path,
                     action_spec: ActionSpec) -> dict:
    """CMA-ES on C, with fitness from the dream (default) or the real env; exports the chosen parameters."""
    out = Path(config.run_dir) / "controller"
    if (out / DONE).exists():  # the DONE marker holds the selection summary: a rerun reports the same one
        return json.loads((out / DONE).read_text())
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    controller = make_controller(config.controller, config.z_dim + config.hidden_size, action_spec,
                                 hidden_size=config.controller_hidden).to(device)
    vec_env = None
    if config.controller_env == "dream":
        start_mu, start_logvar = (x.to(device) for x in start_latents(load_latents(latent_dir)))
        world_model = VMWorldModel(vae, mdnrnn, action_spec, temperature=config.temperature)
        horizon = dream_horizon(config)
        print(f"dream horizon {horizon} steps, temperature {config.temperature}")

        def fitness(params: torch.Tensor, repeats: int = config.repeats) -> torch.Tensor:
            return dream_fitness(world_model, controller, params, start_mu, start_logvar, repeats=repeats,
                                 horizon=horizon, sample_done=config.sample_done)
    else:
        vec_env = make_vector(config.env, config.num_envs, seed=config.seed, **env_options(config))
        # Built once: each call moves on to fresh episode seeds.
        fitness = real_fitness(vec_env, vae, mdnrnn, controller, repeats=config.repeats, seed=config.seed + 1_000_000,
                               max_steps=config.real_max_steps)

    writer = SummaryWriter(str(Path(config.run_dir) / "tb" / "controller"))

    def log(generation: int, record: dict) -> None:
        for key in ("best", "mean", "worst", "sigma", "best_ever"):
            writer.add_scalar(f"cmaes/{key}", record[key], generation)

    try:  # progress: the generations with an ETA and the latest best / mean / sigma
        result = train_cmaes(fitness, controller.num_params, generations=config.generations, population=config.population,
                             sigma0=config.sigma0, seed=config.seed, checkpoint_dir=out, device=device, log=log,
                             progress=True)
        # The best candidate's score is one noisy draw; re-rank it against the distribution mean with more rollouts.
        candidates = torch.as_tensor(np.stack([result["best_params"], result["mean"]]), dtype=torch.float32, device=device)
        final_repeats = config.final_repeats if config.controller_env == "dream" else config.repeats
        torch.manual_seed(stage_seed(config.seed, "controller selection"))  # the same draws after a resume
        scores = fitness(candidates, final_repeats).cpu()
    finally:
        writer.close()
        if vec_env is not None:
            vec_env.close()
    chosen = int(scores.argmax())
    summary = {"chosen": ("best_candidate", "cmaes_mean")[chosen], "fitness_best_candidate": float(scores[0]),
               "fitness_cmaes_mean": float(scores[1]), "generations": result["generation"]}
    # The dream C was trained in travels with the model: wm dream and wm play imagine at the same temperature.
    dream = ({"temperature": config.temperature, "sample_done": config.sample_done, "horizon": dream_horizon(config)}
             if config.controller_env == "dream" else None)
    save_controller(out, controller.cpu(), candidates[chosen].cpu(),
                    extra={"selection": summary, **({"dream": dream} if dream else {})})
    save_json_atomic(out / DONE, summary)
    return summary


def log_real_return(run_dir: Path, store_dir: Path, result: dict) -> None:
    """Real-env KPIs to TensorBoard (tb/evaluate): return, random return, and return vs the env steps collected."""
    env_steps = EpisodeStore.open(store_dir).num_frames  # C never touches the real env: only V/M's data counts
    with SummaryWriter(str(run_dir / "tb" / "evaluate")) as writer:
        writer.add_scalar("kpi/real_return", result["return_mean"], env_steps)
        writer.add_scalar("kpi/random_return", result["random_mean"], env_steps)
        log_return_vs_env_steps(writer, env_steps, result["return_mean"])
    print_kpi_table({"kpi/real_return": result["return_mean"], "kpi/random_return": result["random_mean"],
                     "kpi/env_steps": float(env_steps)}, str(run_dir / "tb"))
