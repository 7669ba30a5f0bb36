"""Train a DreamerV3 agent online in a pixel env, then evaluate it against a random policy.

``wm dreamer --env ALE/Pong-v5 --preset tiny --steps 100000 --run-dir runs/pong`` logs to TensorBoard
under ``RUN_DIR/tb``, keeps ``RUN_DIR/checkpoints/last.ckpt`` (agent + replay position), writes finished
episodes to ``RUN_DIR/episodes`` (an EpisodeStore) and resumes from ``last.ckpt`` when rerun.

Presets (64x64 images, 4 conv stages; parameter counts for 6 actions, slow critic excluded)::

    debug  deter 32,   hidden 32,  4x4 latents, depth 8,  1 layer   16x16 images, 2 stages (tests, CI)
    tiny   deter 128,  hidden 128, 16x16,       depth 16, 1 layer   1.9M, CPU-sized
    S      deter 512,  hidden 256, 32x32,       depth 32, 2 layers  12.9M ~ DreamerV3 "12M" (units 256)
    M      deter 1024, hidden 512, 32x32,       depth 32, 2 layers  24.7M ~ DreamerV3 "25M"
    L      deter 1536, hidden 512, 32x32,       depth 64, 3 layers  50.9M ~ DreamerV3 "50M"

DreamerV3's published sizes (12M, 25M, 50M, ... in the 2025 paper; XS-XL of arXiv v1) use a
block-diagonal GRU; ours is a dense LayerNorm GRU, so the presets match the parameter budgets
with smaller recurrent widths rather than copying the widths.

``tests/test_dreamer_models.py::test_preset_param_counts`` prints and pins the parameter counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from worldmodels.config import arg, from_dict, save_json_atomic, to_dict
from worldmodels.envs import is_atari, make
from worldmodels.envs.toy import register_toy_envs
from worldmodels.models.conv import check_image_size
from trainers.checkpoint_io import AtomicCheckpointIO
from trainers.dream_callbacks import dream_callbacks
from trainers.dreamer_module import OPTIMISERS_PER_STEP, DreamerAgentConfig, DreamerModule
from trainers.distributed import lightning_strategy, rank_seed, rank_store_dir
from trainers.online import OnlineReplay


@dataclass
class DreamerRunConfig(DreamerAgentConfig):
    """Agent hyperparameters (inherited) plus the env, replay and run settings."""

    env: str = arg("worldmodels/Catch-v0", "gymnasium env id (ALE/Pong-v5, CarRacing-v3, worldmodels/Catch-v0, ...)")
    steps: int = arg(100_000, "agent (env) steps to train for, prefill included; frames = steps * frameskip")
    run_dir: str = arg("runs/dreamer", "TensorBoard logs, checkpoints/last.ckpt, episodes/ and results.json")
    image_size: int = arg(64, "observation side in pixels (multiple of 2**stages)")
    frameskip: Optional[int] = arg(None, "action repeat; None = env default (4 for ALE)")
    num_envs: int = arg(1, "parallel envs stepped by the online dataset")
    batch_size: int = arg(16, "replayed chunks per gradient step (B)")
    seq_len: int = arg(64, "chunk length (T)")
    replay_ratio: float = arg(32.0, "replayed steps per env step (B*T per gradient step)")
    prefill: int = arg(2500, "random-action env steps before training")
    capacity: int = arg(100_000, "replay capacity in rows (all envs)")
    seed: int = arg(0, "seed of torch, envs and the replay sampler")
    eval_episodes: int = arg(10, "episodes of the trained actor (and of a random policy on the same seeds)")
    eval_sample: bool = arg(False, "evaluate with sampled actions instead of the actor's mode")
    accelerator: str = arg("auto", "Lightning accelerator (auto, cpu, gpu)")
    precision: Optional[str] = arg(None, "Lightning precision; None = bf16-mixed on GPU, 32-true on CPU")
    checkpoint_every: int = arg(1000, "gradient steps between checkpoints")
    log_every: int = arg(50, "gradient steps between log rows")
    dream_every: int = arg(1000, "gradient steps between dream summaries in TensorBoard (reconstructions, open loop, dreams, KPIs); 0 = off")
    devices: int = arg(1, "devices (processes) per node; > 1 trains with DDP, each rank with its own envs and replay")
    num_nodes: int = arg(1, "nodes for multi-node DDP (launch with torchrun or srun, see README)")
    strategy: str = arg("auto", "Lightning strategy: auto, ddp (per rank: env seed + 1000*rank, episodes-rank<r>/)")
    threads: int = arg(0, "torch CPU threads per process (0 = torch's default; 1 is much faster on a busy 2-core CPU)")


CONFIG = DreamerRunConfig
DEFAULT_PRESET = "tiny"
PRESETS: dict[str, dict] = {
    "debug": {"deter": 32, "hidden": 32, "stoch": 4, "classes": 4, "depth": 8, "stages": 2, "layers": 1,
              "image_size": 16, "batch_size": 4, "seq_len": 8, "horizon": 5, "prefill": 200,
              "replay_ratio": 32.0, "capacity": 20_000, "checkpoint_every": 100, "log_every": 10,
              "eval_episodes": 5},
    "tiny": {"deter": 128, "hidden": 128, "stoch": 16, "classes": 16, "depth": 16, "stages": 4, "layers": 1,
             "image_size": 64, "batch_size": 8, "seq_len": 32},
    "S": {"deter": 512, "hidden": 256, "stoch": 32, "classes": 32, "depth": 32, "stages": 4, "layers": 2,
          "image_size": 64, "batch_size": 16, "seq_len": 64},
    "M": {"deter": 1024, "hidden": 512, "stoch": 32, "classes": 32, "depth": 32, "stages": 4, "layers": 2,
          "image_size": 64, "batch_size": 16, "seq_len": 64},
    "L": {"deter": 1536, "hidden": 512, "stoch": 32, "classes": 32, "depth": 64, "stages": 4, "layers": 3,
          "image_size": 64, "batch_size": 16, "seq_len": 64},
}


def env_options(config: DreamerRunConfig) -> dict:
    options = {"image_size": config.image_size}
    if config.frameskip is not None:
        options["frameskip"] = config.frameskip
    return options


def build(config: DreamerRunConfig, *, store_dir: str | None = None,
          rank: int = 0) -> tuple[DreamerModule, OnlineReplay]:
    """The agent and its online replay dataset, attached to each other.

    ``rank`` (DDP): envs and the replay sampler use ``seed + 1000 * rank``, so ranks collect and replay
    different data; the weights start equal anyway (DDP broadcasts rank 0's at the start of fit).
    """
    register_toy_envs()
    torch.manual_seed(config.seed)
    replay = OnlineReplay(config.env, None, num_envs=config.num_envs, batch_size=config.batch_size,
                          seq_len=config.seq_len, replay_ratio=config.replay_ratio, prefill=config.prefill,
                          capacity=config.capacity, seed=rank_seed(config.seed, rank), store_dir=store_dir,
                          env_options=env_options(config))
    module = DreamerModule(obs_shape=replay.obs_shape, action_spec=replay.action_spec,
                           config=from_dict(DreamerAgentConfig, to_dict(config)))
    replay.agent = module
    module.attach_replay(replay)
    return module, replay


def gradient_steps(config: DreamerRunConfig) -> int:
    """Gradient steps that make the dataset reach ``config.steps`` env steps at ``replay_ratio``."""
    return math.ceil(max(0, config.steps - config.prefill) * config.replay_ratio / (config.batch_size * config.seq_len))


@torch.no_grad()
def evaluate(module: DreamerModule | None, env_id: str, *, episodes: int, seed: int, options: dict,
             sample: bool = False) -> list[float]:
    """Returns of ``episodes`` real-env episodes (seeds ``seed + i``); ``module=None`` = uniform random policy."""
    env = make(env_id, seed=seed, **options)
    rng = np.random.default_rng(seed)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        state, prev_action, is_first, total, done = None, None, True, 0.0, False
        while not done:
            if module is None:
                action = env.action_space.sample() if not hasattr(env.action_space, "n") else int(rng.integers(env.action_space.n))
            else:
                obs_t = torch.as_tensor(np.asarray(obs), device=module.device).unsqueeze(0)
                prev_action_model, state = module.act(obs_t, torch.tensor([is_first], device=module.device), state,
                                                      prev_action, sample=sample)
                prev_action = prev_action_model
                action = module.action_spec.to_env(prev_action_model)[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done, is_first = terminated or truncated, False
        returns.append(total)
    env.close()
    return returns


def _on_gpu(config: DreamerRunConfig) -> bool:
    return torch.cuda.is_available() and config.accelerator in ("auto", "gpu", "cuda")


def make_trainer(config: DreamerRunConfig, run_dir: Path, *, callbacks: Sequence[L.Callback] = ()) -> L.Trainer:
    """The one Trainer set-up for online Dreamer training (``wm dreamer``, ``wm finetune``)."""
    precision = config.precision or ("bf16-mixed" if _on_gpu(config) else "32-true")
    checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0,
                                  every_n_train_steps=config.checkpoint_every * OPTIMISERS_PER_STEP)
    return L.Trainer(
        plugins=[AtomicCheckpointIO()],  # last.ckpt is never left half-written by a kill
        max_steps=gradient_steps(config) * OPTIMISERS_PER_STEP,  # global_step counts every optimiser step
        max_epochs=-1, accelerator=config.accelerator, precision=precision,
        devices=config.devices, num_nodes=config.num_nodes,
        # three backward passes per step, each through one part (world model / actor / critic)
        strategy=lightning_strategy(config.strategy, find_unused_parameters=True),
        logger=TensorBoardLogger(str(run_dir), name="tb", version=0),
        callbacks=[checkpoints, *dream_callbacks("dreamer", every_n_steps=config.dream_every * OPTIMISERS_PER_STEP),
                   *callbacks],
        log_every_n_steps=config.log_every, enable_progress_bar=False, enable_model_summary=False,
    )


def fit_online(trainer: L.Trainer, module: DreamerModule, replay: OnlineReplay, config: DreamerRunConfig) -> None:
    """Fit on the online replay, resuming from ``last.ckpt``; the final state (replay position included) is saved."""
    on_gpu = _on_gpu(config)
    if on_gpu:
        from trainers.performance import use_channels_last

        use_channels_last(module)
    last = Path(config.run_dir) / "checkpoints" / "last.ckpt"
    trainer.fit(module, train_dataloaders=DataLoader(replay, batch_size=None, pin_memory=on_gpu),
                ckpt_path=str(last) if last.exists() else None, weights_only=True)
    trainer.save_checkpoint(str(last), weights_only=False)


def run(config: DreamerRunConfig, *, callbacks: Sequence[L.Callback] = ()) -> dict:
    """Train, then (rank zero only) evaluate against random and write ``results.json``; returns the result.

    Under DDP (``--devices``/``--num-nodes``/``--strategy ddp``) every rank runs this function: each acts
    in its own envs into its own replay and ``episodes-rank<r>/`` store, gradients are all-reduced, and
    ``--steps`` counts env steps PER RANK (the effective batch is ``world_size * batch_size``).
    Logger and checkpoint writes happen on rank zero (Lightning); non-zero ranks return ``{"rank": r}``.
    """
    register_toy_envs()
    is_atari(config.env)  # an unknown env id is a one-line error before the Trainer or any env starts
    check_image_size(config.image_size, config.stages)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    steps = gradient_steps(config)
    trainer = make_trainer(config, run_dir, callbacks=callbacks)
    # The Trainer knows this process's rank from the launcher's environment before fit starts.
    rank, world_size = trainer.global_rank, trainer.world_size
    module, replay = build(config, store_dir=str(rank_store_dir(run_dir / "episodes", rank, world_size)), rank=rank)
    if steps > 0:
        fit_online(trainer, module, replay, config)
    if rank != 0:
        return {"rank": rank, "env_steps": replay.env_steps}
    options = env_options(config)
    module.eval()
    agent_returns = evaluate(module, config.env, episodes=config.eval_episodes, seed=config.seed + 10_000,
                             options=options, sample=config.eval_sample)
    random_returns = evaluate(None, config.env, episodes=config.eval_episodes, seed=config.seed + 10_000,
                              options=options)
    result = {"env": config.env, "env_steps": replay.env_steps, "gradient_steps": steps,
              "episodes_stored": len(replay.store) if replay.store is not None else 0,
              "eval_return": float(np.mean(agent_returns)), "random_return": float(np.mean(random_returns)),
              "eval_returns": agent_returns, "random_returns": random_returns}
    save_json_atomic(run_dir / "results.json", result)
    if trainer.logger is not None:  # evaluation KPIs at x = env steps, next to the training curves
        trainer.logger.log_metrics({"kpi/real_return": result["eval_return"], "kpi/random_return": result["random_return"]},
                                   step=replay.env_steps)
        trainer.logger.save()
    print(f"wm dreamer: agent return {result['eval_return']:.3f} vs random {result['random_return']:.3f} "
          f"over {config.eval_episodes} episodes ({replay.env_steps} env steps)")
    return result
