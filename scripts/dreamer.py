"""Train a DreamerV3 agent online in a pixel env, then evaluate it against a random policy.

``wm dreamer --env ALE/Pong-v5 --preset tiny --steps 100000 --run-dir runs/pong`` logs to TensorBoard
under ``RUN_DIR/tb``, keeps ``RUN_DIR/checkpoints/last.ckpt`` (agent + replay position), writes finished
episodes to ``RUN_DIR/episodes`` (an EpisodeStore), ``RUN_DIR/eval.json`` (the one evaluation schema) and
``RUN_DIR/results.json``, and resumes from ``last.ckpt`` when rerun (a finished run, rerun with
the same config, is left as it is). The config, presets (sizes and
parameter counts), Trainer and fit are :mod:`trainers.dreamer_run`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import lightning as L

from trainers.distributed import is_rank_zero, rank_store_dir
from trainers.dreamer_run import PRESETS, DreamerRunConfig, build, env_options, evaluate, fit_online, gradient_steps, make_trainer
from trainers.performance import keep_cpu_heap
from worldmodels import profiling
from worldmodels.config import save_json_atomic, to_dict
from worldmodels.envs import is_atari
from worldmodels.envs.toy import register_toy_envs
from worldmodels.evaluation import summary_line, write_eval
from worldmodels.locking import exclusive_lock
from worldmodels.models.conv import check_image_size

CONFIG = DreamerRunConfig
DEFAULT_PRESET = "tiny"
__all__ = ["CONFIG", "DEFAULT_PRESET", "PRESETS", "DreamerRunConfig", "run"]


def run(config: DreamerRunConfig, *, callbacks: Sequence[L.Callback] = ()) -> dict:
    """:func:`train` while holding the run directory's and its episode store's locks (rank zero; others share them)."""
    if not is_rank_zero():
        return train(config, callbacks=callbacks)
    run_dir = Path(config.run_dir)
    with exclusive_lock(run_dir, what="run directory"), exclusive_lock(run_dir / "episodes", what="episode store"):
        return train(config, callbacks=callbacks)


def finished_result(run_dir: Path, config: DreamerRunConfig) -> dict | None:
    """``results.json`` of a run in ``run_dir`` that finished with exactly ``config``, else ``None``."""
    try:
        same = json.loads((run_dir / "config.json").read_text()) == to_dict(config)
        return json.loads((run_dir / "results.json").read_text()) if same else None
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
    is_atari(config.env)  # an unknown env id is a one-line error before the Trainer or any env starts
    check_image_size(config.image_size, config.stages)
    keep_cpu_heap()  # activations reuse heap blocks instead of fresh pages each step (trainers/performance.py)
    profiling.set_threads(config.threads, rows=config.batch_size * config.seq_len, width=config.hidden)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    finished = finished_result(run_dir, config)
    if finished is not None:  # resuming a finished fit would still step the envs once and re-draw the evaluation
        print(f"wm dreamer: {run_dir} already finished with this config ({finished['env_steps']} env steps); nothing to do")
        return finished
    steps = gradient_steps(config)
    trainer = make_trainer(config, run_dir, callbacks=callbacks)
    # The Trainer knows this process's rank from the launcher's environment before fit starts.
    rank, world_size = trainer.global_rank, trainer.world_size
    if rank == 0:
        save_json_atomic(run_dir / "config.json", to_dict(config))
    module, replay = build(config, store_dir=str(rank_store_dir(run_dir / "episodes", rank, world_size)), rank=rank)
    if steps > 0:
        fit_online(trainer, module, replay, config)
    if rank != 0:
        return {"rank": rank, "env_steps": replay.env_steps}
    module.eval()
    record = evaluate(module, config.env, episodes=config.eval_episodes, seed=config.seed + 10_000,
                      options=env_options(config), sample=config.eval_sample)
    write_eval(run_dir / "eval.json", record)
    result = {"env": config.env, "env_steps": replay.env_steps, "gradient_steps": steps,
              "episodes_stored": len(replay.store) if replay.store is not None else 0,
              "eval_return": record["return_mean"], "random_return": record["random_mean"],
              "eval_returns": record["returns"], "random_returns": record["random_returns"]}
    save_json_atomic(run_dir / "results.json", result)
    if trainer.logger is not None:  # evaluation KPIs at x = env steps, next to the training curves
        trainer.logger.log_metrics({"kpi/real_return": result["eval_return"], "kpi/random_return": result["random_return"]},
                                   step=replay.env_steps)
        trainer.logger.save()
    print(f"wm dreamer: {summary_line(record)} ({replay.env_steps} env steps)")
    return result
