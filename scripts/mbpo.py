"""Train SAC on real and branched model transitions (MBPO, Janner et al. 2019) with a PETS ensemble, then evaluate.

``wm mbpo --env InvertedPendulum-v5 --steps 5000 --eval-episodes 10 --run-dir runs/mbpo --seed 0`` refits the
ensemble every ``--model-every`` steps, branches ``--rollouts`` short model rollouts from replayed real states
(length scheduled by ``--k-schedule``), trains SAC on ``--real-ratio`` real + the rest synthetic transitions, and
ends with the run skeleton's files (:mod:`trainers.runs.skeleton`): the agent and its ensemble as ``RUN_DIR/model``
(safetensors + config.json, :mod:`worldmodels.mbpo.family`: ``worldmodels.load(RUN_DIR)``, ``wm evaluate``,
``wm plan``, ``wm serve`` read it), ``RUN_DIR/eval.json`` (SAC's mean action, as saved, vs uniform random on the
same seeds), ``RUN_DIR/results.json`` and TensorBoard logs under ``RUN_DIR/tb``. The wiring is
:mod:`trainers.runs.mbpo`. Killed at any moment, the same command resumes from ``RUN_DIR/resume`` (written between
episodes, ``--checkpoint-every``) and ends bit-identical to an uninterrupted run (docs/kill-safety.md).
"""

from __future__ import annotations

from trainers.runs.mbpo import MBPORunConfig, train_mbpo
from trainers.runs.skeleton import run_training

CONFIG = MBPORunConfig


def run(config: MBPORunConfig) -> dict:
    return run_training(config, command="mbpo", train=train_mbpo)
