"""World Models end to end (Ha & Schmidhuber 2018): collect -> V -> M -> C in the dream -> evaluate.

Every stage writes its artifacts under ``--run-dir`` and is skipped when its ``DONE`` marker
exists, so a killed run resumes where it stopped (Lightning stages from ``ckpt/last.ckpt``,
CMA-ES from ``controller/es_state.*``)::

    RUN_DIR/episodes/        random-policy episode store (+ DONE)
    RUN_DIR/vae/             model.safetensors + config.json (+ ckpt/last.ckpt, DONE)
    RUN_DIR/latents/         V's mu / logvar per episode (re-encoded only if older than vae/model.safetensors)
    RUN_DIR/mdnrnn/          model.safetensors + config.json (+ ckpt/last.ckpt, DONE)
    RUN_DIR/controller/      model.safetensors + config.json (+ es_state.npz/json, DONE)
    RUN_DIR/eval.json        real-env return vs random on the same seeds
    RUN_DIR/tb/              TensorBoard: vae/, mdnrnn/, controller/
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from scripts import evaluate as evaluate_script
from trainers.checkpoint_io import AtomicCheckpointIO
from trainers.distributed import barrier, is_rank_zero, lightning_strategy, rank_and_world_size, wait_for_file
from trainers.dream_callbacks import dream_callbacks
from trainers.performance import default_precision
from trainers.views import WorldModelsView
from worldmodels.config import arg, save_json_atomic, to_dict
from worldmodels.data.store import EpisodeStore
from worldmodels.profiling import resolve_device

DONE = "DONE"


@dataclass
class WorldModelsConfig:
    env: str = arg("CarRacing-v3", "gymnasium env id (discrete or Box actions)")
    run_dir: str = arg("runs/worldmodels", "directory for every stage's artifacts; rerun to resume")
    seed: int = arg(0, "seed for collection, training and CMA-ES")
    device: str = arg("auto", "torch device: auto, cpu or cuda")
    threads: int = arg(0, "torch CPU threads (0 = torch's default; 1 avoids thread thrashing on a busy, small CPU)")
    image_size: int = arg(64, "observation side (multiple of 16)")
    max_episode_steps: Optional[int] = arg(None, "env option: truncate episodes after this many agent steps")
    frameskip: Optional[int] = arg(None, "env option: agent step = this many env steps (None = env default)")
    collect_policy: str = arg("random", "collection policy: random (uniform) or sticky (repeats its last action w.p. 0.9)",
                              choices=("random", "sticky"))
    episodes: int = arg(10_000, "random-policy episodes to collect (paper: 10,000 CarRacing rollouts)")
    num_envs: int = arg(8, "parallel envs for collection, real-env fitness and evaluation")
    val_fraction: float = arg(0.1, "fraction of episodes held out for validation (V and M)")
    z_dim: int = arg(32, "V latent size (paper: 32)")
    vae_depth: int = arg(32, "V conv depth of the first stage (paper: 32)")
    vae_stages: int = arg(4, "V stride-2 conv stages (paper: 4); image_size must be a multiple of 2**stages")
    kl_tolerance: float = arg(0.5, "V free bits: KL floor per latent dimension (paper: 0.5)")
    vae_steps: int = arg(20_000, "V optimiser steps")
    vae_batch_size: int = arg(100, "V frames per batch (paper: 100)")
    vae_lr: float = arg(1e-4, "V Adam learning rate (paper: 1e-4)")
    hidden_size: int = arg(256, "M LSTM size (paper: 256)")
    num_mixtures: int = arg(5, "M Gaussian mixture components (paper: 5)")
    mdnrnn_steps: int = arg(20_000, "M optimiser steps")
    mdnrnn_batch_size: int = arg(100, "M sequences per batch (paper: 100)")
    mdnrnn_seq_len: int = arg(100, "M sequence length per chunk")
    mdnrnn_lr: float = arg(1e-3, "M Adam learning rate (paper: 1e-3)")
    controller: str = arg("linear", "controller: linear on [z, h] (paper) or a one-hidden-layer mlp", choices=("linear", "mlp"))
    controller_hidden: int = arg(32, "mlp controller hidden units")
    controller_env: str = arg("dream", "where CMA-ES evaluates C: dream (inside M) or real (V+M in the real env)", choices=("dream", "real"))
    population: int = arg(64, "CMA-ES population (paper: 64)")
    repeats: int = arg(16, "rollouts per candidate per generation (paper: 16)")
    generations: int = arg(300, "CMA-ES generations")
    sigma0: float = arg(0.1, "CMA-ES initial step size")
    dream_horizon: int = arg(1000, "dream rollout length in steps (stopped early by M's predicted episode end)")
    temperature: float = arg(1.15, "dream sampling temperature tau (paper, Doom: 1.15)")
    sample_done: bool = arg(False, "sample the dream's episode end from sigmoid(done_logit) instead of thresholding at 0.5")
    final_repeats: int = arg(256, "rollouts to re-rank the best candidate against the CMA-ES mean at the end")
    real_max_steps: Optional[int] = arg(None, "real-env fitness: cap on steps per episode")
    eval_episodes: int = arg(100, "real-env evaluation episodes (paper: 100)")
    dream_every: int = arg(500, "optimiser steps between dream summaries in TensorBoard (reconstructions, open loop, dreams, KPIs); 0 = off")
    checkpoint_every: int = arg(500, "Lightning checkpoint interval in optimiser steps")
    val_batches: int = arg(8, "validation batches per V / M validation pass")
    loader_workers: int = arg(0, "DataLoader worker processes feeding V (0 = main process; 1-4 keep a GPU fed)")
    devices: int = arg(1, "devices (processes) per node for the V and M stages; > 1 trains them with DDP")
    num_nodes: int = arg(1, "nodes for multi-node DDP of V and M (launch with torchrun or srun, see README)")
    strategy: str = arg("auto", "Lightning strategy for V and M: auto or ddp (each rank trains on its own episode shard)")
    precision: Optional[str] = arg(None, "Lightning precision of V; None = bf16-mixed on CUDA, 32-true on CPU "
                                         "(M always trains in 32-true: its LSTM + mixture NLL are untested in bf16)")


CONFIG = WorldModelsConfig
DEFAULT_PRESET = "tiny"
# Flat overrides of the defaults, applied in order defaults -> preset -> flags; no preset inherits from another.
# debug: CI-sized, seconds. tiny: ~3-6 min on 2 CPU cores (CarRacing-v3 or ALE/Pong-v5) and prints real return vs
# random. paper: Ha & Schmidhuber's CarRacing sizes; the paper trained CarRacing's C in the REAL env
# (add --controller-env real) and Doom's in the dream (the default here).
PRESETS: dict[str, dict] = {
    "debug": dict(episodes=8, num_envs=2, image_size=32, z_dim=8, vae_depth=8, vae_steps=4, vae_batch_size=4,
                  hidden_size=16, num_mixtures=2, mdnrnn_steps=4, mdnrnn_batch_size=2, mdnrnn_seq_len=8,
                  population=4, repeats=2, generations=2, dream_horizon=8, final_repeats=4, eval_episodes=2,
                  max_episode_steps=20, checkpoint_every=2, val_batches=1, device="cpu"),
    "tiny": dict(threads=1, episodes=40, num_envs=4, max_episode_steps=200, z_dim=16, vae_depth=16, vae_steps=1200,
                 vae_batch_size=32, vae_lr=1e-3, hidden_size=64, num_mixtures=5, mdnrnn_steps=1200, mdnrnn_batch_size=16,
                 mdnrnn_seq_len=32, population=16, repeats=8, generations=30, dream_horizon=200, final_repeats=32,
                 eval_episodes=8, checkpoint_every=400, val_batches=4),
    "paper": dict(episodes=10_000, num_envs=16, z_dim=32, vae_depth=32, vae_batch_size=100, vae_lr=1e-4, vae_steps=100_000,
                  hidden_size=256, num_mixtures=5, mdnrnn_batch_size=100, mdnrnn_seq_len=999, mdnrnn_steps=20_000,
                  population=64, repeats=16, generations=1000, dream_horizon=1000, eval_episodes=100),
}


def _device(config: WorldModelsConfig) -> torch.device:
    return resolve_device(config.device)


def _trainer(config: WorldModelsConfig, stage_dir: Path, name: str, max_steps: int, *,
             precision: str = "32-true", callbacks: tuple = ()) -> L.Trainer:
    device = _device(config)
    return L.Trainer(
        plugins=[AtomicCheckpointIO()],  # last.ckpt is never left half-written by a kill
        precision=precision,
        max_steps=max_steps, max_epochs=-1, accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=config.devices, num_nodes=config.num_nodes, strategy=lightning_strategy(config.strategy),
        use_distributed_sampler=False,  # the data modules shard episodes by rank themselves
        logger=TensorBoardLogger(str(Path(config.run_dir) / "tb"), name=name, version=0),
        callbacks=[ModelCheckpoint(dirpath=stage_dir / "ckpt", save_last=True, save_top_k=0,
                                   every_n_train_steps=config.checkpoint_every), *callbacks],
        limit_val_batches=config.val_batches, log_every_n_steps=min(50, max(1, max_steps // 10)),
        enable_progress_bar=False, enable_model_summary=False,
    )


def _fit(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule, stage_dir: Path) -> None:
    last = stage_dir / "ckpt" / "last.ckpt"
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last.exists() else None, weights_only=True)


def _frame_batch(config: WorldModelsConfig, store_dir: Path, length: int = 20) -> dict | None:
    """Real frames for M's dream summaries: the first held-out (B, T) chunk, or None if episodes are too short."""
    from trainers.datamodule import ChunkDataModule

    datamodule = ChunkDataModule(str(store_dir), seq_len=length, batch_size=4, val_fraction=config.val_fraction,
                                 seed=config.seed)
    try:
        datamodule.setup("fit")
        loader = datamodule.val_dataloader() or datamodule.train_dataloader()
        return dict(next(iter(loader)))
    except (ValueError, StopIteration):
        return None  # stores whose episodes are shorter than the window: no dream summaries, training goes on


def _log_real_return(run_dir: Path, store_dir: Path, result: dict) -> None:
    """Real-env KPIs to TensorBoard (tb/evaluate): return, random return, and return vs the env steps collected."""
    from torch.utils.tensorboard import SummaryWriter

    from trainers.callbacks import log_return_vs_env_steps, print_kpi_table

    env_steps = EpisodeStore.open(store_dir).num_frames  # C never touches the real env: only V/M's data counts
    logdir = run_dir / "tb" / "evaluate"
    with SummaryWriter(str(logdir)) as writer:
        writer.add_scalar("kpi/real_return", result["return_mean"], env_steps)
        writer.add_scalar("kpi/random_return", result["random_mean"], env_steps)
        log_return_vs_env_steps(writer, env_steps, result["return_mean"])
    print_kpi_table({"kpi/real_return": result["return_mean"], "kpi/random_return": result["random_mean"],
                     "kpi/env_steps": float(env_steps)}, str(run_dir / "tb"))


def stage_collect(config: WorldModelsConfig) -> Path:
    """Random-policy rollouts into RUN_DIR/episodes (the collector itself resumes to the target total)."""
    from worldmodels.data.collect import collect_episodes, store_spec_for
    from worldmodels.envs import make_vector

    store_dir = Path(config.run_dir) / "episodes"
    if not is_rank_zero():  # torchrun / srun start every rank at once: rank zero collects, the others wait
        wait_for_file(store_dir / DONE)
    if (store_dir / DONE).exists():
        return store_dir
    vec_env = make_vector(config.env, config.num_envs, image_size=config.image_size, seed=config.seed,
                          **evaluate_script.env_options(config.max_episode_steps, config.frameskip))
    try:
        spec = store_spec_for(vec_env, config.env)
        store = EpisodeStore.create(store_dir, env_id=spec.env_id, obs_shape=spec.obs_shape, action_spec=spec.action_spec)
        stats = collect_episodes(vec_env, store, episodes=config.episodes, policy=config.collect_policy, seed=config.seed,
                                 progress=False)
    finally:
        vec_env.close()
    save_json_atomic(store_dir / DONE, stats.to_dict())
    return store_dir


def stage_vae(config: WorldModelsConfig, store_dir: Path):
    """Fit V on single frames (ChunkDataModule with seq_len 1), export safetensors."""
    from trainers.datamodule import ChunkDataModule
    from trainers.vae_module import VAEModule

    out = Path(config.run_dir) / "vae"
    if not (out / DONE).exists():
        module = VAEModule(image_size=config.image_size, z_dim=config.z_dim, depth=config.vae_depth, stages=config.vae_stages,
                           kl_tolerance=config.kl_tolerance, learning_rate=config.vae_lr)
        datamodule = ChunkDataModule(str(store_dir), seq_len=1, batch_size=config.vae_batch_size, val_fraction=config.val_fraction,
                                     seed=config.seed, samples_per_epoch=config.vae_batch_size * min(config.vae_steps, 500),
                                     num_workers=config.loader_workers, pin_memory=_device(config).type == "cuda")
        if _device(config).type == "cuda":
            from trainers.performance import use_channels_last

            use_channels_last(module)  # NHWC conv kernels; frames are NHWC in storage already
        precision = config.precision or default_precision(_device(config))
        spec = EpisodeStore.open(store_dir).spec.action_spec
        callbacks = dream_callbacks("vae", every_n_steps=config.dream_every,
                                    view_fn=lambda m: WorldModelsView(m.vae, action_spec=spec))
        _fit(_trainer(config, out, "vae", config.vae_steps, precision=precision, callbacks=callbacks), module, datamodule, out)
        if is_rank_zero():
            evaluate_script.save_component(out, "vae", module.vae, dict(in_channels=3, image_size=config.image_size,
                                                                        z_dim=config.z_dim, depth=config.vae_depth,
                                                                        stages=config.vae_stages))
            save_json_atomic(out / DONE, {"steps": config.vae_steps})
        barrier()  # other ranks load V only after rank zero wrote it
    return evaluate_script.load_vae(out, _device(config))


def stage_mdnrnn(config: WorldModelsConfig, latent_dir: Path, action_dim: int, *, vae=None, store_dir: Path | None = None,
                 action_spec=None):
    """Fit M on (B, T) chunks of cached latents, export safetensors."""
    from trainers.latents import LatentDataModule
    from trainers.mdnrnn_module import MDNRNNModule

    out = Path(config.run_dir) / "mdnrnn"
    kwargs = dict(z_dim=config.z_dim, action_dim=action_dim, hidden_size=config.hidden_size, num_mixtures=config.num_mixtures)
    if not (out / DONE).exists():
        module = MDNRNNModule(**kwargs, learning_rate=config.mdnrnn_lr)
        datamodule = LatentDataModule(str(latent_dir), seq_len=config.mdnrnn_seq_len, batch_size=config.mdnrnn_batch_size,
                                      val_fraction=config.val_fraction, seed=config.seed,
                                      samples_per_epoch=config.mdnrnn_batch_size * min(config.mdnrnn_steps, 500))
        callbacks = dream_callbacks("mdnrnn", every_n_steps=config.dream_every if vae is not None else 0,
                                    batch=_frame_batch(config, store_dir) if vae is not None else None,
                                    view_fn=lambda m: WorldModelsView(vae, m.mdnrnn, action_spec=action_spec))
        _fit(_trainer(config, out, "mdnrnn", config.mdnrnn_steps, callbacks=callbacks), module, datamodule, out)
        if is_rank_zero():
            evaluate_script.save_component(out, "mdnrnn", module.mdnrnn, kwargs)
            save_json_atomic(out / DONE, {"steps": config.mdnrnn_steps})
        barrier()
    return evaluate_script.load_mdnrnn(out, _device(config))


def stage_controller(config: WorldModelsConfig, vae, mdnrnn, latent_dir: Path, action_spec) -> dict:
    """CMA-ES on C, with fitness from the dream (default) or the real env; exports the chosen parameters."""
    from torch.utils.tensorboard import SummaryWriter

    from trainers.latents import load_latents, start_latents
    from worldmodels.controllers.cmaes import train_cmaes
    from worldmodels.controllers.linear import make_controller
    from worldmodels.controllers.real_env import real_fitness
    from worldmodels.imagination.dream import dream_fitness

    out = Path(config.run_dir) / "controller"
    if (out / DONE).exists():
        return {}
    device = _device(config)
    torch.manual_seed(config.seed)
    controller = make_controller(config.controller, config.z_dim + config.hidden_size, action_spec,
                                 hidden_size=config.controller_hidden).to(device)
    vec_env = None
    if config.controller_env == "dream":
        start_mu, start_logvar = (x.to(device) for x in start_latents(load_latents(latent_dir)))

        def fitness(params: torch.Tensor, repeats: int = config.repeats) -> torch.Tensor:
            return dream_fitness(mdnrnn, controller, params, start_mu, start_logvar, repeats=repeats,
                                 horizon=config.dream_horizon, temperature=config.temperature, sample_done=config.sample_done)
    else:
        from worldmodels.envs import make_vector

        vec_env = make_vector(config.env, config.num_envs, image_size=config.image_size, seed=config.seed,
                              **evaluate_script.env_options(config.max_episode_steps, config.frameskip))

        # Built once: each call moves on to fresh episode seeds.
        fitness = real_fitness(vec_env, vae, mdnrnn, controller, repeats=config.repeats, seed=config.seed + 1_000_000,
                               max_steps=config.real_max_steps)

    writer = SummaryWriter(str(Path(config.run_dir) / "tb" / "controller"))

    def log(generation: int, record: dict) -> None:
        for key in ("best", "mean", "worst", "sigma", "best_ever"):
            writer.add_scalar(f"cmaes/{key}", record[key], generation)
        print(f"generation {generation}: best {record['best']:.3f} mean {record['mean']:.3f} sigma {record['sigma']:.3f} "
              f"({record['seconds']:.1f}s)")

    try:
        result = train_cmaes(fitness, controller.num_params, generations=config.generations, population=config.population,
                             sigma0=config.sigma0, seed=config.seed, checkpoint_dir=out, device=device, log=log)
        # The best candidate's score is one noisy draw; re-rank it against the distribution mean with more rollouts.
        candidates = torch.as_tensor(np.stack([result["best_params"], result["mean"]]), dtype=torch.float32, device=device)
        final_repeats = config.final_repeats if config.controller_env == "dream" else config.repeats
        scores = fitness(candidates, final_repeats).cpu()
    finally:
        writer.close()
        if vec_env is not None:
            vec_env.close()
    chosen = int(scores.argmax())
    summary = {"chosen": ("best_candidate", "cmaes_mean")[chosen], "fitness_best_candidate": float(scores[0]),
               "fitness_cmaes_mean": float(scores[1]), "generations": result["generation"]}
    evaluate_script.save_controller(out, candidates[chosen].cpu().numpy(), kind=config.controller,
                                    input_dim=config.z_dim + config.hidden_size, action_spec=action_spec,
                                    hidden_size=config.controller_hidden, extra={"selection": summary})
    save_json_atomic(out / DONE, summary)
    return summary


def validate(config: WorldModelsConfig) -> None:
    """One-line errors for settings that would fail only after collection: sizes, counts, the run directory."""
    from worldmodels.data.store import ensure_writable_dir
    from worldmodels.envs import is_atari
    from worldmodels.models.conv import check_image_size

    is_atari(config.env)  # unknown env id: one-line error naming close matches
    check_image_size(config.image_size, config.vae_stages)
    for name in ("episodes", "num_envs", "z_dim", "hidden_size", "num_mixtures", "population", "repeats",
                 "eval_episodes"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(config, name)}")
    ensure_writable_dir(config.run_dir)


def run(config: WorldModelsConfig) -> dict:
    """All stages in order (each skipped when done); returns the real-env evaluation next to random."""
    from trainers.latents import encode_store
    from worldmodels.envs.toy import register_toy_envs

    register_toy_envs()
    validate(config)  # before anything is collected or written
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_rank_zero():
        save_json_atomic(run_dir / "config.json", to_dict(config))
    L.seed_everything(config.seed, workers=True, verbose=False)
    timings: dict[str, float] = {}
    began = time.perf_counter()
    store_dir = stage_collect(config)
    action_spec = EpisodeStore.open(store_dir).spec.action_spec
    timings["collect"] = time.perf_counter() - began
    vae = stage_vae(config, store_dir)
    timings["vae"] = time.perf_counter() - began - sum(timings.values())
    latent_dir = run_dir / "latents"
    if is_rank_zero():
        encode_store(vae, store_dir, latent_dir, vae_weights=run_dir / "vae" / "model.safetensors", device=_device(config))
    barrier()
    timings["latents"] = time.perf_counter() - began - sum(timings.values())
    mdnrnn = stage_mdnrnn(config, latent_dir, action_spec.dim, vae=vae, store_dir=store_dir, action_spec=action_spec)
    timings["mdnrnn"] = time.perf_counter() - began - sum(timings.values())
    if not is_rank_zero():  # DDP covers V and M; C (CMA-ES) and the evaluation run on rank zero only
        return {"rank": rank_and_world_size()[0], "seconds": timings}
    selection = stage_controller(config, vae, mdnrnn, latent_dir, action_spec)
    timings["controller"] = time.perf_counter() - began - sum(timings.values())
    result = evaluate_script.run(evaluate_script.EvaluateConfig(
        run_dir=str(run_dir), env=config.env, episodes=config.eval_episodes, seed=config.seed + 10_000,
        num_envs=config.num_envs, max_episode_steps=config.max_episode_steps, frameskip=config.frameskip, device=config.device))
    timings["evaluate"] = time.perf_counter() - began - sum(timings.values())
    result = {**result, "selection": selection, "seconds": timings}
    save_json_atomic(run_dir / "eval.json", result)
    _log_real_return(run_dir, store_dir, result)
    print(f"wm worldmodels: real-env return {result['return_mean']:.3f} ± {result['return_std']:.3f} vs random "
          f"{result['random_mean']:.3f} ± {result['random_std']:.3f}; stage seconds {({k: round(v) for k, v in timings.items()})}")
    return result
