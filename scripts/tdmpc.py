"""Train a TD-MPC2-style value-equivalent model online (MPPI + value bootstrap + policy prior), then evaluate it.

``wm tdmpc --env InvertedPendulum-v5 --steps 10000 --eval-episodes 10 --run-dir runs/tdmpc --seed 0`` acts with
MPPI over the decoder-free latent model, learns from replayed windows (latent consistency + reward + TD value,
TD-MPC2 Sec. 3.1), and ends with ``RUN_DIR/eval.json`` (the planner vs uniform random on the same seeds, and the
prior alone as ``prior_returns``), ``RUN_DIR/results.json``, the model as ``RUN_DIR/model`` (safetensors + config.json,
:mod:`worldmodels.tdmpc.family`: ``worldmodels.load(RUN_DIR)``, ``wm evaluate``, ``wm serve`` read it) and
TensorBoard logs under ``RUN_DIR/tb``. ``--obs pixels`` plans from frames. The loop and its config are
:mod:`trainers.tdmpc_run`.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from trainers.tdmpc_run import TDMPCRunConfig, env_options, planner_settings, train_tdmpc
from worldmodels.config import save_json_atomic, to_dict
from worldmodels.evaluation import summary_line, write_eval
from worldmodels.locking import exclusive_lock
from worldmodels.tdmpc.family import MODEL_DIR, save_whole

CONFIG = TDMPCRunConfig


def run(config: TDMPCRunConfig) -> dict:
    run_dir = Path(config.run_dir)
    with exclusive_lock(run_dir, what="run directory"):
        save_json_atomic(run_dir / "config.json", to_dict(config))
        with SummaryWriter(str(run_dir / "tb")) as writer:
            result = train_tdmpc(config, writer=writer)
        record = result["eval"]
        write_eval(run_dir / "eval.json", record)
        # The exchange format (atomic, NaN-refusing): worldmodels.load(RUN) and every wm command read it.
        save_whole(run_dir / MODEL_DIR, result["model"].cpu(), env_id=config.env, env_options=env_options(config),
                   planner=planner_settings(config), training_steps={"env_steps": record["env_steps"],
                                                                     "updates": record["updates"]},
                   metrics={"eval_return": record["return_mean"], "random_return": record["random_mean"]})
        results = {"eval": record, "train_returns": result["train_returns"], "final_losses": result["final_losses"]}
        save_json_atomic(run_dir / "results.json", results)
    print(f"wm tdmpc: {summary_line(record)} after {record['env_steps']} env steps, {record['wall_s']} s -> "
          f"{run_dir / 'eval.json'}")
    return results
