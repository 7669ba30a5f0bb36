"""The online DreamerV3 run (Hafner et al. 2023): its config and presets, the agent + replay, the Trainer, fit and evaluation.

``wm dreamer`` (``scripts/dreamer.py``) and ``wm finetune`` drive these. ``wm dreamer --env ALE/Pong-v5 --preset tiny --steps 100000 --run-dir runs/pong`` logs to TensorBoard
under ``RUN_DIR/tb``, keeps ``RUN_DIR/checkpoints/last.ckpt`` (agent + replay position), writes finished
episodes to ``RUN_DIR/episodes`` (an EpisodeStore) and resumes from ``last.ckpt`` when rerun.

Presets (64x64 images, 4 conv stages; parameter counts for 6 actions, slow critic excluded)::

    debug  deter 32,   hidden 32,  4x4 latents, depth 8,  1 layer   16x16 images, 2 stages (tests, CI)
    tiny   deter 128,  hidden 128, 16x16,       depth 16, 1 layer   1.9M, CPU-sized
    XS-v1  deter 256,  hidden 256, 32x32,       depth 24, 1 layer   8.3M  = sheeprl dreamer_v3_XS (arXiv v1 "XS", 8M)
    S      deter 512,  hidden 256, 32x32,       depth 32, 2 layers  12.9M ~ DreamerV3 "12M" (units 256)
    S-v1   deter 512,  hidden 512, 32x32,       depth 32, 2 layers  17.9M = sheeprl dreamer_v3_S (arXiv v1 "S", 18M)
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
from typing import Any, Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from trainers.modules.callbacks import ProgressLog
from trainers.runs.checkpoint_io import AtomicCheckpointIO, resume_checkpoint
from trainers.data.distributed import lightning_strategy, rank_seed
from trainers.modules.dream_callbacks import dream_callbacks
from trainers.modules.dreamer import OPTIMISERS_PER_STEP, DreamerAgentConfig, DreamerModule
from trainers.data.online import BatchRequests, OnlineReplay
from trainers.runs.performance import use_channels_last
from trainers.data.resume import CheckpointWhenReady
from worldmodels.config import arg, directory_problem, from_dict, given, threads_arg, to_dict
from worldmodels.data.frame_ring import FRAME_MODES
from worldmodels.envs import ATARI_PROTOCOLS, make_vector, protocol_options
from worldmodels.envs.toy import register_toy_envs
from worldmodels.evaluation import evaluate_against_random
from worldmodels.policies import ActorHead, ModelPolicy


@dataclass
class DreamerRunConfig(DreamerAgentConfig):
    """Agent hyperparameters (inherited) plus the env, replay and run settings."""

    env: str = arg("worldmodels/Catch-v0", "gymnasium env id (ALE/Pong-v5, CarRacing-v3, worldmodels/Catch-v0, ...)")
    steps: int = arg(100_000, "agent (env) steps to train for, prefill included; frames = steps * frameskip", minimum=1,
                     maximum=10**9)
    store: str = arg("", "pretrain on this episode store (wm collect / wm import), with no env, before acting online")
    pretrain_steps: int = arg(1000, "gradient steps on --store before the online phase (only with --store)", minimum=1,
                              maximum=10**9)
    online: bool = arg(True, "after pretraining on --store, train online for --steps env steps; false = offline only "
                             "(no env is made, unless --evaluate)")
    run_dir: str = arg("runs/dreamer", "TensorBoard logs, checkpoints/last.ckpt, episodes/ and results.json",
                       check=lambda c: directory_problem(c.run_dir))
    image_size: int = arg(64, "observation side in pixels (multiple of 2**stages)", minimum=16, maximum=1024)
    obs: str = arg("auto", "observations: auto (the env's own vector if it is a 1-D Box, MLP encoder; else frames), "
                           "pixels or vector (worldmodels.envs.factory.observation_kind)", choices=("auto", "pixels", "vector"))
    frameskip: Optional[int] = arg(None, "action repeat; None = env default (4 for ALE)", minimum=1, maximum=1000)
    max_episode_steps: Optional[int] = arg(None, "truncate episodes after this many agent steps, in training and evaluation "
                                                 "(saved with the model); None = the env's own limit", minimum=1,
                                           maximum=10**7)
    atari_protocol: str = arg("machado", "ALE only: machado = sticky actions 0.25, no no-op starts, last frame (Machado et "
                                         "al. 2018, the env default); atari100k = no sticky actions, up to 30 no-op starts, "
                                         "max over the last two frames (DreamerV3's Atari-100k setting)",
                              choices=tuple(ATARI_PROTOCOLS))
    num_envs: int = arg(1, "parallel envs stepped by the online dataset", minimum=1, maximum=1024)
    batch_size: int = arg(16, "replayed chunks per gradient step (B)", minimum=1, maximum=65536)
    seq_len: int = arg(64, "chunk length (T)", minimum=2, maximum=10_000)
    # DreamerV3 goes up to 1024 replayed steps per env step
    replay_ratio: float = arg(32.0, "replayed steps per env step (B*T per gradient step)", above=0, maximum=10_000.0)
    prefill: int = arg(2500, "random-action env steps before training", minimum=0,
                       check=lambda c: None if c.prefill < c.steps else "must be below --steps, or no gradient step runs",
                       maximum=10**9)
    # Each env's stream holds capacity // num_envs rows; a stream shorter than one window would never yield a batch.
    # no ring is larger than a run's 10**9 steps; frames past 12 GB are kept on disk
    capacity: int = arg(100_000, "replay capacity in rows (all envs)", minimum=1,
                        check=lambda c: None if c.capacity // c.num_envs >= c.seq_len else
                        f"must hold one --seq-len window per env: at least seq_len * num_envs = {c.seq_len * c.num_envs}",
                        maximum=10**9)
    replay_frames: str = arg("auto", "where the replay keeps its frames: ram, disk (one preallocated file per env under "
                                     "RUN_DIR/replay/, read with preadv: RAM use stays flat at any --capacity), or auto "
                                     "(disk when they exceed 2 GiB)", choices=FRAME_MODES)
    seed: int = arg(0, "seed of torch, envs and the replay sampler", minimum=0, maximum=2**32 - 1)
    eval_episodes: int = arg(10, "episodes of the trained actor (and of a random policy on the same seeds)", minimum=1,
                             maximum=10**6)
    evaluate: bool = arg(True, "evaluate the actor against random in the real env at the end; false = no evaluation")
    eval_sample: bool = arg(False, "evaluate with sampled actions instead of the actor's mode")
    device: str = arg("auto", "torch device: auto, cpu or cuda (gpu = cuda, Lightning's name; --accelerator: the old "
                             "spelling of this flag)", choices=("auto", "cpu", "cuda", "gpu"))
    precision: Optional[str] = arg(None, "Lightning precision; None = bf16-mixed on GPU, 32-true on CPU")
    checkpoint_every: int = arg(1000, "gradient steps between checkpoints", minimum=1, maximum=10**9)
    log_every: int = arg(50, "gradient steps between log rows", minimum=1, maximum=10**9)
    dream_every: int = arg(1000, "gradient steps between dream summaries in TensorBoard (reconstructions, open loop, dreams, "
                                  "KPIs), at most a quarter of the run's gradient steps so every run logs them a few times; "
                                  "0 = off", minimum=0, maximum=10**9)
    devices: int = arg(1, "devices (processes) per node; > 1 trains with DDP, each rank with its own envs and replay", minimum=1,
                       maximum=1024)
    num_nodes: int = arg(1, "nodes for multi-node DDP (launch with torchrun or srun, see README)", minimum=1,
                         maximum=10_000)
    strategy: str = arg("auto", "Lightning strategy: auto, ddp (per rank: env seed + 1000*rank, episodes-rank<r>/)")
    threads: str = threads_arg("0", "per process")


PRESETS: dict[str, dict] = {
    "debug": {"deter": 32, "hidden": 32, "stoch": 4, "classes": 4, "depth": 8, "stages": 2, "layers": 1, "steps": 400,
              "image_size": 16, "batch_size": 4, "seq_len": 8, "horizon": 5, "prefill": 200,
              "replay_ratio": 32.0, "capacity": 20_000, "checkpoint_every": 100, "log_every": 10,
              "eval_episodes": 5},
    "tiny": {"deter": 128, "hidden": 128, "stoch": 16, "classes": 16, "depth": 16, "stages": 4, "layers": 1,
             "image_size": 64, "batch_size": 8, "seq_len": 32},
    # cpu: the Atari-100k protocol (64x64, action repeat 4, DreamerV3's atari100k env: no sticky actions, no-op starts)
    # sized for 2 CPU cores and 2 h: tiny widths, B 8 x T 32 and replay ratio 192 (DreamerV3: 256 at B 16 x T 64 on a
    # GPU), so 20k agent steps are ~14k gradient steps at ~2.4 steps/s. At equal wall time, halving the batch and
    # doubling the world model's learning rate (4e-4; actor 4e-5 and critic 1e-4 as DreamerV2 on Atari) lowered the
    # reconstruction loss faster than B 16 at 2e-4 (README, "Boxing"): a 1.9M-parameter model gets a few thousand
    # updates here, not DreamerV3's 100k. The reward term of Eq. 5 is weighted 10 (DreamerV3: 1): next to a
    # reconstruction error summed over 12,288 pixels, a reward that is non-zero on ~3% of the rows sends the shared
    # representation almost no gradient in a few thousand updates. On Boxing at weight 10 the reward head's filtered
    # prediction correlated 0.97 with the real reward of the run's own episodes after 2,750 updates; at weight 1 it
    # was 0.54 after 4,750 (README, "Boxing"). ``--loss-scales`` replaces the whole dict, so keep reward=10 in it.
    "cpu": {"deter": 128, "hidden": 128, "stoch": 16, "classes": 16, "depth": 16, "stages": 4, "layers": 1,
            "image_size": 64, "batch_size": 8, "seq_len": 32, "replay_ratio": 192.0, "prefill": 1000,
            "atari_protocol": "atari100k", "model_lr": 4e-4, "actor_lr": 4e-5, "critic_lr": 1e-4,
            "loss_scales": {"reward": 10.0}, "threads": "2", "checkpoint_every": 250, "eval_episodes": 10},
    "S": {"deter": 512, "hidden": 256, "stoch": 32, "classes": 32, "depth": 32, "stages": 4, "layers": 2,
          "image_size": 64, "batch_size": 16, "seq_len": 64},
    # DreamerV3 arXiv v1 "S" = sheeprl's dreamer_v3_S (dense 512, 17.9M parameters): equal work for side-by-side speed.
    "S-v1": {"deter": 512, "hidden": 512, "stoch": 32, "classes": 32, "depth": 32, "stages": 4, "layers": 2,
             "image_size": 64, "batch_size": 16, "seq_len": 64},
    # DreamerV3 arXiv v1 "XS" = sheeprl's dreamer_v3_XS (dense 256, 1 layer, CNN x24, deter 256): the second size of
    # the side-by-side speed comparison (``../shared/peers/sheeprl_dreamerv3.sh`` runs XS by default).
    "XS-v1": {"deter": 256, "hidden": 256, "stoch": 32, "classes": 32, "depth": 24, "stages": 4, "layers": 1,
              "image_size": 64, "batch_size": 16, "seq_len": 64},
    "M": {"deter": 1024, "hidden": 512, "stoch": 32, "classes": 32, "depth": 32, "stages": 4, "layers": 2,
          "image_size": 64, "batch_size": 16, "seq_len": 64},
    "L": {"deter": 1536, "hidden": 512, "stoch": 32, "classes": 32, "depth": 64, "stages": 4, "layers": 3,
          "image_size": 64, "batch_size": 16, "seq_len": 64},
}


def env_options(config: DreamerRunConfig) -> dict:
    """The env options of training and evaluation (an unset frameskip keeps the env's default).

    They are saved with the model (``env_options``), so ``wm evaluate`` and ``wm plan`` play by the same protocol.
    """
    return {"image_size": config.image_size, "obs": config.obs,
            **given(frameskip=config.frameskip, max_episode_steps=config.max_episode_steps),
            **protocol_options(config.env, config.atari_protocol)}


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
                          env_options=env_options(config), frames=config.replay_frames,
                          frames_dir=Path(config.run_dir) / "replay" / f"rank-{rank}")
    module = DreamerModule(obs_shape=replay.obs_shape, action_spec=replay.action_spec,
                           config=from_dict(DreamerAgentConfig, to_dict(config)))
    replay.agent = ModelPolicy(module.world_model, ActorHead(module.actor, module.action_spec))
    replay.checkpoint_every = config.checkpoint_every  # in batches = gradient steps (see make_trainer)
    replay.max_env_steps = config.steps  # "trained within --steps agent steps" holds, checkpoints included
    module.attach_replay(replay)
    return module, replay


def _replay_ready(replay: Any) -> bool:
    """Whether a checkpoint may be written now: always, except for one online env in the middle of an episode."""
    return replay is None or not hasattr(replay, "resumable") or replay.num_envs > 1 or replay.resumable


def gradient_steps(config: DreamerRunConfig) -> int:
    """Gradient steps that make the dataset reach ``config.steps`` env steps at ``replay_ratio``."""
    return math.ceil(max(0, config.steps - config.prefill) * config.replay_ratio / (config.batch_size * config.seq_len))


def evaluate(module: DreamerModule, env_id: str, *, episodes: int, seed: int, options: dict,
             sample: bool = False) -> dict:
    """The actor (its mode, or samples) vs uniform random on the same seeds ``seed + j``: the eval.json record."""
    torch.manual_seed(seed)  # the model's samples depend on the evaluation seed, not on how training got here
    policy = ModelPolicy(module.world_model, ActorHead(module.actor, module.action_spec, sample=sample))
    env = make_vector(env_id, 1, seed=seed, **options)
    try:
        return evaluate_against_random(env, policy, env_id=env_id, episodes=episodes, seed=seed, device=module.device,
                                       progress=True)
    finally:
        env.close()


def on_gpu(config: DreamerRunConfig) -> bool:
    """Whether the run trains on a GPU (bf16 precision, channels-last convolutions, pinned batches)."""
    return torch.cuda.is_available() and config.device in ("auto", "gpu", "cuda")


def make_trainer(config: DreamerRunConfig, run_dir: Path, *, callbacks: Sequence[L.Callback] = (),
                 max_gradient_steps: int | None = None) -> L.Trainer:
    """The one Trainer set-up for Dreamer training (``wm dreamer`` online and offline, ``wm finetune``).

    ``max_gradient_steps`` (offline pretraining) replaces the count derived from ``--steps``.
    """
    total = gradient_steps(config) if max_gradient_steps is None else max_gradient_steps
    precision = config.precision or ("bf16-mixed" if on_gpu(config) else "32-true")
    progress = ProgressLog("dreamer" if max_gradient_steps is None else "dreamer offline",
                           steps_per_update=OPTIMISERS_PER_STEP, metrics=("train/loss/model", "env/steps"))
    # One env: saved between two episodes, where the replay resumes exactly; the batch that makes a save due plays on
    # to the end of its episode (OnlineReplay.checkpoint_every), so the save comes on schedule. More envs never
    # resume exactly (one is always mid-episode): saved on schedule anyway, so a kill loses at most that interval.
    checkpoints = CheckpointWhenReady(run_dir / "checkpoints" / "last.ckpt",
                                      every_n_steps=config.checkpoint_every * OPTIMISERS_PER_STEP,
                                      ready=lambda module: _replay_ready(getattr(module, "replay", None)))
    return L.Trainer(
        plugins=[AtomicCheckpointIO()],  # last.ckpt is never left half-written by a kill
        max_steps=total * OPTIMISERS_PER_STEP,  # global_step counts every optimiser step
        max_epochs=-1, accelerator={"cuda": "gpu"}.get(config.device, config.device), precision=precision,
        devices=config.devices, num_nodes=config.num_nodes,
        # three backward passes per step, each through one part (world model / actor / critic)
        strategy=lightning_strategy(config.strategy, find_unused_parameters=True),
        logger=TensorBoardLogger(str(run_dir), name="tb", version=0, default_hp_metric=False),
        callbacks=[checkpoints, progress,
                   *dream_callbacks("dreamer", every_n_steps=config.dream_every * OPTIMISERS_PER_STEP,
                                    total_steps=total * OPTIMISERS_PER_STEP),
                   *callbacks],
        # ProgressLog is the one progress display; CheckpointWhenReady the one checkpoint (no default ModelCheckpoint)
        log_every_n_steps=config.log_every, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False,
    )


def fit_online(trainer: L.Trainer, module: DreamerModule, replay: OnlineReplay, config: DreamerRunConfig) -> None:
    """Fit on the online replay, resuming from ``last.ckpt``; the final state (replay position included) is saved."""
    gpu = on_gpu(config)
    if gpu:
        use_channels_last(module)
    last = Path(config.run_dir) / "checkpoints" / "last.ckpt"
    resume = resume_checkpoint(last)  # falls back to the previous checkpoint when last.ckpt is damaged
    if resume is None and replay.store is not None:
        # A run killed before its first checkpoint left episodes no checkpoint knows of: this run plays those env
        # steps again from step 0, so they would be stored and replayed twice. (A resume sets aside the same way.)
        replay.store.set_aside_after(0)
    replay.pin_memory = gpu
    trainer.fit(module, train_dataloaders=DataLoader(BatchRequests(), batch_size=None),  # module.replay acts per step
                ckpt_path=str(resume) if resume else None, weights_only=True)
    trainer.save_checkpoint(str(last), weights_only=False)
