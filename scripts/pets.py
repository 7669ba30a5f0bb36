"""PETS online: random warm-up, refit a probabilistic ensemble every episode, act by CEM over it, evaluate.

``wm pets --env worldmodels/ContinuousCartPole-v0 --steps 2000 --eval-episodes 5 --run-dir runs/pets`` plays
``--steps`` real transitions (random warm-up included), then CEM-MPC and a uniform random policy on the same
seeds. Writes ``RUN_DIR/eval.json`` (the one evaluation schema, plus ``env_steps``, ``propagation`` and
``plan_ms_per_action``), ``RUN_DIR/results.json`` (episode returns by env step, the last fit's losses,
validation MSE and elites) and ``RUN_DIR/model`` (the ensemble as safetensors + config.json, read back by
``worldmodels.pets.family.load_whole``). The loop and its config are :mod:`trainers.pets_run`.
"""

from __future__ import annotations

from trainers.pets_run import PETSRunConfig, train
from worldmodels.locking import exclusive_lock

CONFIG = PETSRunConfig
__all__ = ["CONFIG", "PETSRunConfig", "run"]


def run(config: PETSRunConfig) -> dict:
    # One writer per run directory, as every training command: a second `wm pets` there is refused in one line.
    with exclusive_lock(config.run_dir, what="run directory"):
        return train(config)
