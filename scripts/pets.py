"""PETS online: refit a probabilistic ensemble every episode, act by CEM-MPC over it, then evaluate it vs random.

``wm pets --env worldmodels/ContinuousCartPole-v0 --steps 2000 --eval-episodes 5 --run-dir runs/pets`` plays
``--steps`` real transitions (random warm-up included) and ends with the run skeleton's files (:mod:`trainers.runs.skeleton`):
``RUN_DIR/model`` (safetensors + config.json, read by ``worldmodels.load`` / ``worldmodels.pets.family.load_whole``),
``RUN_DIR/eval.json`` (the saved model's CEM-MPC vs uniform random on the same seeds, plus ``env_steps``,
``propagation`` and ``plan_ms_per_action``), ``RUN_DIR/results.json`` (episode returns by env step, the last fit's
losses, validation MSE and elites) and TensorBoard logs under ``RUN_DIR/tb``. The loop and its config are
:mod:`trainers.runs.pets`. Killed at any moment, the same command resumes from ``RUN_DIR/resume`` (written between
episodes, ``--checkpoint-every``) and ends bit-identical to an uninterrupted run (docs/kill-safety.md).
"""

from __future__ import annotations

from trainers.runs.pets import PETSRunConfig, train_pets
from trainers.runs.skeleton import run_training

CONFIG = PETSRunConfig
__all__ = ["CONFIG", "PETSRunConfig", "run"]


def run(config: PETSRunConfig) -> dict:
    return run_training(config, command="pets", train=train_pets, tensorboard=config.tensorboard)
