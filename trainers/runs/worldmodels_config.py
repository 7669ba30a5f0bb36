"""The World Models run config (Ha & Schmidhuber 2018): every stage's settings, presets and up-front checks.

Fields match the stages' constructor arguments (``trainers.runs.worldmodels_stages``); presets are flat
overrides applied in order defaults -> preset -> flags, and no preset inherits from another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from worldmodels.checkpoint import allow_unverified_arg
from worldmodels.config import arg, directory_problem, given, threads_arg
from worldmodels.data.store import EpisodeStore, ensure_writable_dir
from worldmodels.envs import ActionSpec, is_atari, make
from worldmodels.models.conv import check_image_size
from worldmodels.profiling import resolve_device

DEFAULT_DREAM_HORIZON = 1000  # dream steps when neither --dream-horizon nor the env sets a time limit (paper CarRacing)


@dataclass
class WorldModelsConfig:
    env: str = arg("CarRacing-v3", "gymnasium env id (discrete or Box actions)")
    store: str = arg("", "train on this episode store (wm collect / wm import) instead of collecting; no env is made "
                         "for it (see --evaluate, --controller-env real)")
    init_from: str = arg("", "a shipped name or exported World Models model (--from): its V and M are copied, not "
                             "trained, and only C is trained, in its dream; the env, image size and V/M sizes come "
                             "from the model, and --episodes only supplies the dream's start frames")
    allow_unverified: bool = allow_unverified_arg()
    run_dir: str = arg("runs/worldmodels", "directory for every stage's artifacts; rerun to resume",
                       check=lambda c: directory_problem(c.run_dir))
    seed: int = arg(0, "seed for collection, training and CMA-ES", minimum=0, maximum=2**32 - 1)
    device: str = arg("auto", "torch device: auto, cpu or cuda")
    threads: str = threads_arg("0", "1 avoids thread thrashing on a busy, small CPU")
    image_size: int = arg(64, "observation side (multiple of 16)", minimum=16, maximum=1024)
    max_episode_steps: Optional[int] = arg(None, "env option: truncate episodes after this many agent steps", minimum=1,
                                           maximum=10**7)
    frameskip: Optional[int] = arg(None, "env option: agent step = this many env steps (None = env default)", minimum=1,
                                   maximum=1000)
    collect_policy: str = arg("random", "collection policy: random (uniform), sticky (repeats its last action w.p. 0.9) "
                              "or hold (the paper's: each random action held for 1-10 steps)",
                              choices=("random", "sticky", "hold"))
    episodes: int = arg(10_000, "random-policy episodes to collect (paper: 10,000 CarRacing rollouts)", minimum=1,
                        maximum=10**6)
    num_envs: int = arg(8, "parallel envs for collection, real-env fitness and evaluation", minimum=1, maximum=1024)
    # below 1: V and M need episodes to train on
    val_fraction: float = arg(0.1, "fraction of episodes held out for validation (V and M)", minimum=0, maximum=0.99)
    z_dim: int = arg(32, "V latent size (paper: 32)", minimum=1, maximum=65536)
    # channels double per stage: 4096 at the first is already past any GPU's memory at 4 stages
    vae_depth: int = arg(32, "V conv depth of the first stage (paper: 32)", minimum=1, maximum=4096)
    # image_size <= 1024 = 2**10 must be a multiple of 2**stages
    vae_stages: int = arg(4, "V stride-2 conv stages (paper: 4); image_size must be a multiple of 2**stages", minimum=1,
                          maximum=10)
    # nats per latent dimension: a floor of 100 already switches the KL term off
    kl_tolerance: float = arg(0.5, "V free bits: KL floor per latent dimension (paper: 0.5)", minimum=0, maximum=100.0)
    vae_steps: int = arg(20_000, "V optimiser steps", minimum=1, maximum=10**9)
    vae_batch_size: int = arg(100, "V frames per batch (paper: 100)", minimum=1, maximum=65536)
    # Adam moves every weight by about lr per step: past 1 it only diverges
    vae_lr: float = arg(1e-4, "V Adam learning rate (paper: 1e-4)", above=0, maximum=1.0)
    hidden_size: int = arg(256, "M LSTM size (paper: 256)", minimum=1, maximum=65536)
    num_mixtures: int = arg(5, "M Gaussian mixture components (paper: 5)", minimum=1, maximum=1024)
    mdnrnn_steps: int = arg(20_000, "M optimiser steps", minimum=1, maximum=10**9)
    mdnrnn_batch_size: int = arg(100, "M sequences per batch (paper: 100)", minimum=1, maximum=65536)
    mdnrnn_seq_len: int = arg(100, "M sequence length per chunk", minimum=2, maximum=10**5)
    mdnrnn_lr: float = arg(1e-3, "M Adam learning rate (paper: 1e-3)", above=0, maximum=1.0)
    done_pos_weight: float = arg(10.0, "M's done loss: BCE weight of the rare terminal rows (reference Doom code: "
                                 "restart_factor 10; 1 = plain BCE, under which M barely ever predicts a death)", above=0,
                                 maximum=10_000.0)
    controller: str = arg("linear", "controller: linear on [z, h] (paper) or a one-hidden-layer mlp", choices=("linear", "mlp"))
    controller_hidden: int = arg(32, "mlp controller hidden units", minimum=1, maximum=65536)
    controller_env: str = arg("dream", "where CMA-ES evaluates C: dream (inside M) or real (V+M in the real env)", choices=("dream", "real"))
    population: int = arg(64, "CMA-ES population (paper: 64)", minimum=2, maximum=100_000)
    repeats: int = arg(16, "rollouts per candidate per generation (paper: 16)", minimum=1, maximum=10_000)
    generations: int = arg(300, "CMA-ES generations", minimum=1, maximum=10**6)
    # C's weights start at 0 and act through tanh: a step size past 100 only saturates it
    sigma0: float = arg(0.1, "CMA-ES initial step size", above=0, maximum=100.0)
    dream_horizon: Optional[int] = arg(None, "dream rollout length in steps, stopped early by M's predicted episode end "
                                            "(None = the env's time limit in agent steps, e.g. TakeCover 2,100, else 1000)", minimum=1,
                                       maximum=10**7)
    # tau scales the mixture's variance; at 100 the dream is noise
    temperature: float = arg(1.15, "dream sampling temperature tau (paper, Doom: 1.15)", above=0, maximum=100.0)
    sample_done: bool = arg(False, "sample the dream's episode end from sigmoid(done_logit) instead of thresholding at 0.5")
    final_repeats: int = arg(256, "rollouts to re-rank the best candidate against the CMA-ES mean at the end", minimum=1,
                             maximum=10**6)
    real_max_steps: Optional[int] = arg(None, "real-env fitness: cap on steps per episode", minimum=1, maximum=10**7)
    eval_episodes: int = arg(100, "real-env evaluation episodes (paper: 100)", minimum=1, maximum=10**6)
    evaluate: bool = arg(True, "evaluate C against random in the real env at the end; false = no evaluation "
                               "(with --store: no env is made at all)")
    dream_every: int = arg(500, "optimiser steps between dream summaries in TensorBoard (reconstructions, open loop, dreams, "
                                 "KPIs), at most a quarter of the stage's steps so every run logs them a few times; 0 = off",
                             minimum=0, maximum=10**9)
    checkpoint_every: int = arg(500, "Lightning checkpoint interval in optimiser steps", minimum=1, maximum=10**9)
    val_batches: int = arg(8, "validation batches per V / M validation pass", minimum=0, maximum=10**6)
    loader_workers: int = arg(0, "DataLoader worker processes feeding V (0 = main process; 1-4 keep a GPU fed)", minimum=0,
                              maximum=256)
    devices: int = arg(1, "devices (processes) per node for the V and M stages; > 1 trains them with DDP", minimum=1,
                       maximum=1024)
    num_nodes: int = arg(1, "nodes for multi-node DDP of V and M (launch with torchrun or srun, see README)", minimum=1,
                         maximum=10_000)
    strategy: str = arg("auto", "Lightning strategy for V and M: auto or ddp (each rank trains on its own episode shard)")
    precision: Optional[str] = arg(None, "Lightning precision of V; None = bf16-mixed on CUDA, 32-true on CPU "
                                         "(M always trains in 32-true: its LSTM + mixture NLL are untested in bf16)")


# Flat overrides of the defaults, applied in order defaults -> preset -> flags; no preset inherits from another.
# debug: CI-sized, seconds. tiny: ~3-6 min on 2 CPU cores (CarRacing-v3 or ALE/Pong-v5) and prints real return vs
# random. cpu: C trained only in the dream, on any pixel env, in about an hour on 2 CPU cores (100 evaluation
# episodes). paper: Ha & Schmidhuber's CarRacing sizes; the paper trained CarRacing's C in the REAL env
# (add --controller-env real) and Doom's in the dream (the default here).
PRESETS: dict[str, dict] = {
    "debug": dict(episodes=8, num_envs=2, image_size=32, z_dim=8, vae_depth=8, vae_steps=4, vae_batch_size=4,
                  hidden_size=16, num_mixtures=2, mdnrnn_steps=4, mdnrnn_batch_size=2, mdnrnn_seq_len=8,
                  population=4, repeats=2, generations=2, dream_horizon=8, final_repeats=4, eval_episodes=2,
                  max_episode_steps=20, checkpoint_every=2, val_batches=1, device="cpu"),
    "tiny": dict(threads="1", episodes=40, num_envs=4, max_episode_steps=200, z_dim=16, vae_depth=16, vae_steps=1200,
                 vae_batch_size=32, vae_lr=1e-3, hidden_size=64, num_mixtures=5, mdnrnn_steps=1200, mdnrnn_batch_size=16,
                 mdnrnn_seq_len=32, population=16, repeats=8, generations=30, dream_horizon=200, final_repeats=32,
                 eval_episodes=8, checkpoint_every=400, val_batches=4),
    # cpu: sized from throughput measured on 2 shared cores with VizdoomTakeCover-v1 (the paper's dream-trained task),
    # one torch thread: collection ~830 agent steps/s (2 envs), V 0.12-0.14 s/step (32 frames, depth 32), encoding
    # ~1,200 frames/s, M 0.12-0.15 s/step (32 x 100 rows, LSTM 256), dream ~35-50k row-steps/s (32 x 8 rows: ~7 s per
    # generation at TakeCover's 2,100-step horizon). Measured run: collect 5.2, V 9.5, latents 3.6, M 10.1, C 12.7,
    # evaluation 6.0 min (47 min); real return 703 +- 411 vs random 213 +- 94 over the same 100 seeds.
    # Env-specific settings are left to the env: the dream lasts its time limit (dream_horizon None).
    # sample_done: on the same V and M, C trained with M's done thresholded at 0.5 scored 270 +- 54 (same 100 seeds);
    # with small data the thresholded dream also saturated at the horizon (mean 1,800 of 2,100) while the real return
    # stayed at random's. Sampled deaths keep the dream return in the real range (~215 at the start).
    "cpu": dict(device="cpu", threads="1", controller_env="dream", collect_policy="hold", episodes=800, num_envs=2,
                z_dim=32, vae_depth=32, vae_steps=4000, vae_batch_size=32, vae_lr=1e-3, hidden_size=256, num_mixtures=5,
                mdnrnn_steps=4000, mdnrnn_batch_size=32, mdnrnn_seq_len=100, population=32, repeats=8, generations=100,
                temperature=1.15, sample_done=True, final_repeats=64, eval_episodes=100, dream_every=1000,
                checkpoint_every=500, val_batches=4),
    # quick: only C, trained in the dream of a pretrained V + M (`--from NAME`, e.g. takecover-worldmodels-cpu):
    # 24 hold-policy episodes give the dream's start latents, CMA-ES 32 x 8 for 40 generations (the cpu run's dream
    # fitness had risen from ~215 to ~600 by then), 20 evaluation episodes; about 10 min on 2 cores.
    "quick": dict(device="cpu", threads="1", controller_env="dream", collect_policy="hold", episodes=24, num_envs=2,
                  population=32, repeats=8, generations=40, temperature=1.15, sample_done=True, final_repeats=64,
                  eval_episodes=20),
    "paper": dict(episodes=10_000, num_envs=16, z_dim=32, vae_depth=32, vae_batch_size=100, vae_lr=1e-4, vae_steps=100_000,
                  hidden_size=256, num_mixtures=5, mdnrnn_batch_size=100, mdnrnn_seq_len=999, mdnrnn_steps=20_000,
                  population=64, repeats=16, generations=1000, dream_horizon=1000, eval_episodes=100),
}


def pretrained_settings(model: Any) -> dict[str, Any]:
    """The config fields a pretrained World Models model fixes (``--from``): its env and V / M sizes."""
    if model.family != "worldmodels" or "mdnrnn" not in model.components:
        raise ValueError(f"--from {model.path}: a {model.family} model without V and M; want a World Models model "
                         f"with both (e.g. takecover-worldmodels-cpu; `wm checkpoints` lists them)")
    vae, mdnrnn = model.config["sizes"]["vae"], model.config["sizes"]["mdnrnn"]
    return {"env": model.env_id, "image_size": int(model.obs_shape[0]), "z_dim": vae["z_dim"],
            "vae_depth": vae["depth"], "vae_stages": vae["stages"], "hidden_size": mdnrnn["hidden_size"],
            "num_mixtures": mdnrnn["num_mixtures"]}


def env_options(config: WorldModelsConfig) -> dict[str, Any]:
    """The env options of collection, real-env fitness and evaluation (unset ones keep the env's defaults)."""
    return {"image_size": config.image_size,
            **given(max_episode_steps=config.max_episode_steps, frameskip=config.frameskip)}


def validate(config: WorldModelsConfig) -> None:
    """One-line errors for settings that would fail only after collection: sizes, counts, the run directory."""
    if needs_env(config):
        is_atari(config.env)  # unknown env id: one-line error naming close matches
    check_image_size(config.image_size, config.vae_stages)
    resolve_device(config.device)  # `--device tpu` or cuda without a GPU: one line now, not after collection
    for name in ("episodes", "num_envs", "z_dim", "hidden_size", "num_mixtures", "population", "repeats",
                 "eval_episodes"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(config, name)}")
    if config.store:  # before the run directory is created
        check_store(config)
    ensure_writable_dir(config.run_dir)


def needs_env(config: WorldModelsConfig) -> bool:
    """Whether the run makes an env: to collect (no --store), to evaluate, or for C's real-env fitness."""
    return not config.store or config.evaluate or config.controller_env == "real"


def check_store(config: WorldModelsConfig) -> None:
    """``--store`` holds episodes of ``--image-size`` frames (and, when an env is made, of ``--env``'s actions)."""
    spec = EpisodeStore.open(config.store).spec
    if spec.obs_shape[:2] != (config.image_size, config.image_size):
        raise ValueError(f"--store {config.store!r} holds {spec.obs_shape[0]}x{spec.obs_shape[1]} frames, not "
                         f"--image-size {config.image_size}; pass --image-size {spec.obs_shape[0]} (or re-import "
                         f"with wm import --image-size {config.image_size})")
    if needs_env(config):
        env = make(config.env, **env_options(config))
        try:
            actions = ActionSpec.from_space(env.action_space)
        finally:
            env.close()
        if actions != spec.action_spec:
            raise ValueError(f"--env {config.env!r} has {actions.kind}({actions.dim}) actions but --store "
                             f"{config.store!r} holds {spec.action_spec.kind}({spec.action_spec.dim}) (recorded from "
                             f"{spec.env_id!r}); pass the env the data came from, "
                             "or --evaluate false to train without any env")
