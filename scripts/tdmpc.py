"""Train a TD-MPC2-style value-equivalent model online (MPPI + value bootstrap + policy prior), then evaluate it.

``wm tdmpc --env InvertedPendulum-v5 --steps 10000 --eval-episodes 10 --run-dir runs/tdmpc --seed 0`` acts with
MPPI over the decoder-free latent model, learns from replayed windows (latent consistency + reward + TD value,
TD-MPC2 Sec. 3.1), and ends with the run skeleton's files (:mod:`trainers.runs.skeleton`): ``RUN_DIR/model`` (safetensors +
config.json, :mod:`worldmodels.tdmpc.family`: ``worldmodels.load(RUN_DIR)``, ``wm evaluate``, ``wm serve`` read it),
``RUN_DIR/eval.json`` (the saved planner vs uniform random on the same seeds, and the prior alone as
``prior_returns``), ``RUN_DIR/results.json`` and TensorBoard logs under ``RUN_DIR/tb``. ``--obs pixels`` plans
from frames. The loop and its config are :mod:`trainers.runs.tdmpc`. Killed at any moment, the same command
resumes from ``RUN_DIR/resume`` (written between episodes, ``--checkpoint-every``) and ends bit-identical to an
uninterrupted run (docs/kill-safety.md).
"""

from __future__ import annotations

from trainers.runs.skeleton import run_training
from trainers.runs.tdmpc import TDMPCRunConfig, train_tdmpc

CONFIG = TDMPCRunConfig


def run(config: TDMPCRunConfig) -> dict:
    return run_training(config, command="tdmpc", train=train_tdmpc)
