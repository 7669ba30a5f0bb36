"""Train a DreamerV3 agent online in a pixel env, then evaluate it against a random policy.

``wm dreamer --env ALE/Pong-v5 --preset tiny --steps 100000 --run-dir runs/pong`` logs to TensorBoard
under ``RUN_DIR/tb``, keeps ``RUN_DIR/checkpoints/last.ckpt`` (agent + replay position), writes finished
episodes to ``RUN_DIR/episodes`` (an EpisodeStore), ``RUN_DIR/eval.json`` (the one evaluation schema) and
``RUN_DIR/results.json``, and resumes from ``last.ckpt`` when rerun (a finished run, rerun with
the same config, is left as it is). The config, presets (sizes and
parameter counts), Trainer and fit are :mod:`trainers.runs.dreamer`.

``--store DIR`` first pretrains on a recorded episode store with no env (:mod:`trainers.runs.offline`,
``--pretrain-steps`` gradient steps into ``RUN_DIR/offline/``), then goes on online from those weights;
``--online false --evaluate false`` trains offline only and makes no env at all.
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

import lightning as L

from trainers.data.distributed import is_rank_zero, rank_store_dir
from trainers.runs.dreamer import PRESETS, DreamerRunConfig, build, env_options, evaluate, fit_online, gradient_steps, make_trainer
from trainers.modules.dreamer import DreamerModule
from trainers.runs.offline import pretrain
from trainers.data.online import OnlineReplay, StreamReplay
from trainers.runs.performance import keep_cpu_heap
from worldmodels import profiling
from worldmodels.config import check_same_settings, save_json_atomic, to_dict
from worldmodels.data.frame_ring import ring_bytes
from worldmodels.data.store import EpisodeStore, env_of_store
from worldmodels.envs import is_atari
from worldmodels.envs.toy import register_toy_envs
from worldmodels.evaluation import result_table, write_eval
from worldmodels.locking import exclusive_lock
from worldmodels.models.conv import check_image_size

CONFIG = DreamerRunConfig
ENV_DEFAULT = DreamerRunConfig.__dataclass_fields__["env"].default
CLI_ALIASES = {"--accelerator": "device"}  # the flag's old spelling; --device as on every other command
DEFAULT_PRESET = "tiny"
__all__ = ["CONFIG", "DEFAULT_PRESET", "PRESETS", "DreamerRunConfig", "run"]


def run(config: DreamerRunConfig, *, callbacks: Sequence[L.Callback] = ()) -> dict:
    """:func:`train` while holding the run directory's and its episode store's locks (rank zero; others share them)."""
    if config.store and not config.online:  # trained on the store alone: the run records (and plays) its env
        config = dataclasses.replace(config, env=env_of_store(config.store, config.env, default=ENV_DEFAULT))
    if not is_rank_zero():
        return train(config, callbacks=callbacks)
    run_dir = Path(config.run_dir)
    # Offline only, nothing is written to RUN_DIR/episodes; a --store is only read (other runs may share it).
    collecting = nullcontext() if config.store and not config.online else exclusive_lock(run_dir / "episodes", what="episode store")
    with exclusive_lock(run_dir, what="run directory"), collecting:
        return train(config, callbacks=callbacks)


def replay_summary(replay: StreamReplay, steps: int) -> str:
    """One line: how many rows the replay keeps, where its frames live, and whether ``steps`` fits in it."""
    rows = replay.capacity * len(replay.count)
    where = f"on disk in {replay.frames[0].path.parent}" if replay.frames_on_disk else "in RAM"
    size = ring_bytes(rows, replay.obs_shape, replay.obs_dtype) / 1e9
    fits = (f"--steps {steps:,} fits" if steps <= rows else
            f"--steps {steps:,} exceeds it: training replays only the last {rows:,} rows ({rows / steps:.0%} of the run)")
    return f"replay capacity {rows:,} rows, frames {where} ({size:.1f} GB); {fits}"


def finished_result(run_dir: Path) -> dict | None:
    """``results.json`` of a run that finished in ``run_dir`` (with this run's settings: see :func:`train`), else ``None``."""
    try:
        return json.loads((run_dir / "results.json").read_text()) if (run_dir / "config.json").is_file() else None
    except (OSError, ValueError):
        return None


def train(config: DreamerRunConfig, *, callbacks: Sequence[L.Callback] = ()) -> dict:
    """Train, then (rank zero only) evaluate against random and write ``eval.json`` + ``results.json``.

    Under DDP (``--devices``/``--num-nodes``/``--strategy ddp``) every rank runs this function: each acts
    in its own envs into its own replay and ``episodes-rank<r>/`` store, gradients are all-reduced, and
    ``--steps`` counts env steps PER RANK (the effective batch is ``world_size * batch_size``).
    Logger and checkpoint writes happen on rank zero (Lightning); non-zero ranks return ``{"rank": r}``.
    """
    register_toy_envs()
    if config.online or not config.store or config.evaluate:
        is_atari(config.env)  # an unknown env id is a one-line error before the Trainer or any env starts
    check_image_size(config.image_size, config.stages)
    profiling.resolve_device({"gpu": "cuda"}.get(config.device, config.device))  # no GPU: one line, not Lightning's traceback
    keep_cpu_heap(mmap=False)  # activations reuse heap blocks instead of fresh pages each step (trainers/runs/performance.py)
    profiling.set_threads(config.threads, rows=config.batch_size * config.seq_len, width=config.hidden)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # Other settings in a used run directory would mix two runs (or fail on a size mismatch deep in the resume).
    # A larger --steps trains a finished run on from its last checkpoint; any other change is refused.
    grown = check_same_settings(run_dir, config, may_grow=frozenset({"steps"}))
    finished = finished_result(run_dir)
    if finished is not None and not grown:  # resuming a finished fit would still step the envs once and re-draw the evaluation
        print(f"wm dreamer: {run_dir} already finished with this config ({finished['env_steps']} env steps); nothing to do")
        return finished
    logger = None
    if config.store and not config.online:  # offline only: no Trainer of the online phase, no env
        if is_rank_zero():
            save_json_atomic(run_dir / "config.json", to_dict(config))
        module = pretrain(config, callbacks=callbacks)
        replay, steps = module.replay, 0
    else:
        steps = gradient_steps(config)
        trainer = make_trainer(config, run_dir, callbacks=callbacks)
        logger = trainer.logger
        # The Trainer knows this process's rank from the launcher's environment before fit starts.
        rank, world_size = trainer.global_rank, trainer.world_size
        if rank == 0:
            save_json_atomic(run_dir / "config.json", to_dict(config))
        module, replay = build(config, store_dir=str(rank_store_dir(run_dir / "episodes", rank, world_size)), rank=rank)
        if config.store:  # pretrain offline, then go on online from those weights (a resume: from last.ckpt)
            module.load_state_dict(pretrained_for(config, replay, callbacks).state_dict())
        if rank == 0:
            print(f"wm dreamer: {replay_summary(replay.replay, config.steps)}")
        if steps > 0:
            fit_online(trainer, module, replay, config)
        replay.replay.close()  # the frames are no longer needed (a disk ring's files go: this run wrote them)
        if rank != 0:
            return {"rank": rank, "env_steps": replay.env_steps}
    module.eval()
    result = {"env": config.env, "env_steps": replay.env_steps, "gradient_steps": steps,
              "pretrain_steps": config.pretrain_steps if config.store else 0,
              "episodes_stored": len(replay.store) if replay.store is not None else 0,
              "online_loop": online_loop_figures(replay)}
    if not config.evaluate:
        save_json_atomic(run_dir / "results.json", result)
        print(f"wm dreamer: trained without evaluation (--evaluate false); evaluate with "
              f"wm evaluate --run-dir {run_dir} --env ENV")
        return result
    record = evaluate(module, config.env, episodes=config.eval_episodes, seed=config.seed + 10_000,
                      options=env_options(config), sample=config.eval_sample)
    write_eval(run_dir / "eval.json", record)
    result.update({"eval_return": record["return_mean"], "random_return": record["random_mean"],
                   "eval_returns": record["returns"], "random_returns": record["random_returns"]})
    save_json_atomic(run_dir / "results.json", result)
    if logger is not None:  # evaluation KPIs at x = env steps, next to the training curves
        logger.log_metrics({"kpi/real_return": result["eval_return"], "kpi/random_return": result["random_return"]},
                           step=replay.env_steps)
        logger.save()
    print(f"wm dreamer: {replay.env_steps} env steps\n{result_table(record)}\n-> {run_dir / 'eval.json'}")
    return result


def online_loop_figures(replay: OnlineReplay) -> dict[str, float]:
    """This process's online loop after the prefill: wall-time share of the updates, env steps/s, updates/s."""
    figures = replay.metrics()
    if "update_share" not in figures:
        return {}
    wall = figures["acting_seconds"] + figures["training_seconds"]
    return {"update_share": round(figures["update_share"], 4), "acting_seconds": round(figures["acting_seconds"], 1),
            "training_seconds": round(figures["training_seconds"], 1), "wall_seconds": round(wall, 1),
            "env_steps_per_s": round(figures["timed_env_steps"] / wall, 2),
            "updates_per_s": round(figures["timed_batches"] / wall, 3)}


def pretrained_for(config: DreamerRunConfig, replay: OnlineReplay, callbacks: Sequence[L.Callback]) -> DreamerModule:
    """The module pretrained on ``--store`` (:func:`trainers.runs.offline.pretrain`), refused when its data cannot be the env's."""
    stored = EpisodeStore.open(config.store).spec
    if tuple(stored.obs_shape) != tuple(replay.obs_shape) or stored.action_spec != replay.action_spec:
        have, want = stored.action_spec, replay.action_spec
        raise ValueError(f"--store {config.store!r} holds {tuple(stored.obs_shape)} frames and {have.kind}({have.dim}) "
                         f"actions (from {stored.env_id!r}), --env {config.env!r} gives {tuple(replay.obs_shape)} and "
                         f"{want.kind}({want.dim}); pass the env the data came from and --image-size {stored.obs_shape[0]}")
    return pretrain(config, callbacks=callbacks)
