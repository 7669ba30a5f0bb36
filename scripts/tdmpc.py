"""Train a TD-MPC2-style value-equivalent model online (MPPI + value bootstrap + policy prior), then evaluate it.

``wm tdmpc --env InvertedPendulum-v5 --steps 10000 --eval-episodes 10 --run-dir runs/tdmpc --seed 0`` acts with
MPPI over the decoder-free latent model, learns from replayed windows (latent consistency + reward + TD value,
TD-MPC2 Sec. 3.1), and ends with ``RUN_DIR/eval.json`` (the planner vs uniform random on the same seeds, and the
prior alone as ``prior_returns``), ``RUN_DIR/results.json``, the weights as ``RUN_DIR/model.safetensors`` and
TensorBoard logs under ``RUN_DIR/tb``. ``--obs pixels`` plans from frames. The loop and its config are
:mod:`trainers.tdmpc_run`.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from trainers.tdmpc_run import TDMPCRunConfig, train_tdmpc
from worldmodels.checkpoint import save_safetensors
from worldmodels.config import save_json_atomic, to_dict
from worldmodels.evaluation import summary_line, write_eval
from worldmodels.locking import exclusive_lock

CONFIG = TDMPCRunConfig


def run(config: TDMPCRunConfig) -> dict:
    run_dir = Path(config.run_dir)
    with exclusive_lock(run_dir, what="run directory"):
        save_json_atomic(run_dir / "config.json", to_dict(config))
        with SummaryWriter(str(run_dir / "tb")) as writer:
            result = train_tdmpc(config, writer=writer)
        record = result["eval"]
        write_eval(run_dir / "eval.json", record)
        tmp = run_dir / ".model.safetensors.tmp"  # temp + rename: a kill never leaves half a weights file
        save_safetensors({name: value.detach().cpu().contiguous() for name, value in result["model"].state_dict().items()},
                         tmp, {})  # the umask's file mode, as every other output
        os.replace(tmp, run_dir / "model.safetensors")
        results = {"eval": record, "train_returns": result["train_returns"], "final_losses": result["final_losses"]}
        save_json_atomic(run_dir / "results.json", results)
    print(f"wm tdmpc: {summary_line(record)} after {record['env_steps']} env steps, {record['wall_s']} s -> "
          f"{run_dir / 'eval.json'}")
    return results
