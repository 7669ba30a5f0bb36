"""The run skeleton: what every training command does around its family's training, written once.

    lock RUN_DIR                  one writer per run directory (a second one is refused in one line)
    same settings?                a rerun with other settings than config.json's is refused in one line; a run
                                  with results.json already finished: said in one line, nothing is redone
    config.json                   the resolved settings
    train(config, writer)         the family's part: build, train -> Trained (how to save, what it learned);
                                  a killed run resumes inside it from RUN_DIR/resume (trainers.runs.loop_resume)
    RUN_DIR/model                 saved in the exchange format (safetensors + config.json; NaN refused)
    evaluate                      the SAVED model, loaded by worldmodels.load and acting by its family's rule,
                                  vs uniform random on the same seeds seed + 10000 + j (EVAL_SEED_OFFSET)
    eval.json, results.json       the one eval schema; results = {"eval": ..., **what train reported}
    kpi/real_return, kpi/random_return    TensorBoard, at the run's last env step
    summary line                  "wm CMD: agent ... vs random ... after N env steps, S s -> RUN_DIR/eval.json"

Evaluating the model as saved, not the object in memory, makes the run's record the one `wm evaluate --run-dir R
--seed S+10000` reproduces. The plain-loop families (``wm pets``, ``wm mbpo``, ``wm tdmpc``) run on it; the
Lightning pipelines (``wm dreamer``, ``wm worldmodels``) keep their staged skeletons for now (DDP ranks, stage
markers and exact resume), with the same files and the same seed rule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from trainers.runs.loop_resume import remove_checkpoint
from worldmodels.config import check_same_settings, read_json, save_json_atomic, to_dict
from worldmodels.core import Policy
from worldmodels.evaluation import summary_line, write_eval
from worldmodels.locking import exclusive_lock
from worldmodels.model_evaluation import evaluate_model
from worldmodels.profiling import resolve_device
from worldmodels.registry import Pretrained, load

EVAL_SEED_OFFSET = 10_000  # evaluation episode j of a run with --seed S resets with S + 10000 + j
MODEL_DIR = "model"  # RUN_DIR/model: the whole model (worldmodels.registry reads it as the run's layout)


@dataclass
class Trained:
    """What a family's ``train`` hands to the skeleton."""

    save: Callable[[Path], Any]  # writes the whole model into the given directory (exchange format)
    env_steps: int  # real env (agent) steps the training took
    results: dict[str, Any] = field(default_factory=dict)  # the family's results.json entries (curves, losses, ...)
    eval_envs: int = 4  # envs the evaluation steps at once (planners plan for all of them in one batch)
    # Extra eval.json entries, given the loaded model, the policy that was evaluated and the evaluation seed (e.g.
    # TD-MPC's prior alone on the same seeds, a planner's ms per action).
    eval_extra: Callable[[Pretrained, Policy, int], dict[str, Any]] | None = None


def eval_seed(seed: int) -> int:
    return seed + EVAL_SEED_OFFSET


def run_training(config: Any, *, command: str, train: Callable[[Any, Any], Trained], tensorboard: bool = True) -> dict:
    """The module docstring's sequence for ``config`` (a run config with ``run_dir``, ``seed``, ``eval_episodes``
    and ``device``); returns ``results.json``'s dict."""
    run_dir = Path(config.run_dir)
    began = time.perf_counter()
    with exclusive_lock(run_dir, what="run directory"):
        check_same_settings(run_dir, config)  # other settings would mix two runs in one replay and one model
        if (run_dir / "config.json").is_file() and (run_dir / "results.json").is_file():
            results = read_json(run_dir / "results.json", what="the finished run's results")
            remove_checkpoint(run_dir)  # a kill between results.json and this removal left it
            print(f"wm {command}: {run_dir} already finished with this config "
                  f"({results.get('eval', {}).get('env_steps', '?')} env steps); nothing to do")
            return results
        save_json_atomic(run_dir / "config.json", to_dict(config))
        writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # deferred: tensorboard is slow to import, and optional

            writer = SummaryWriter(str(run_dir / "tb"))
        try:
            trained = train(config, writer)
            trained.save(run_dir / MODEL_DIR)
            device = resolve_device(config.device)
            model = load(run_dir, device)
            seed = eval_seed(config.seed)
            policy = model.policy(seed=seed)
            record = evaluate_model(model, episodes=config.eval_episodes, seed=seed, num_envs=trained.eval_envs,
                                    device=device, policy=policy, progress=True)
            if trained.eval_extra is not None:
                record.update(trained.eval_extra(model, policy, seed))
            record.update({"family": model.family, "env_steps": trained.env_steps,
                           "wall_s": round(time.perf_counter() - began, 1)})
            write_eval(run_dir / "eval.json", record)
            if writer is not None:
                writer.add_scalar("kpi/real_return", record["return_mean"], trained.env_steps)
                writer.add_scalar("kpi/random_return", record["random_mean"], trained.env_steps)
            results = {"eval": record, **trained.results}
            save_json_atomic(run_dir / "results.json", results)
            remove_checkpoint(run_dir)
        finally:
            if writer is not None:
                writer.close()
    print(f"wm {command}: {summary_line(record)} after {trained.env_steps} env steps, {record['wall_s']} s -> "
          f"{run_dir / 'eval.json'}")
    return results
