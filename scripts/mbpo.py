"""Train SAC on real and branched model transitions (MBPO, Janner et al. 2019) with a PETS ensemble, then evaluate.

``wm mbpo --env InvertedPendulum-v5 --steps 5000 --eval-episodes 10 --run-dir runs/mbpo --seed 0`` refits the
ensemble every ``--model-every`` steps, branches ``--rollouts`` short model rollouts from replayed real states
(length scheduled by ``--k-schedule``), trains SAC on ``--real-ratio`` real + the rest synthetic transitions, and
ends with ``RUN_DIR/eval.json`` (SAC's mean action vs uniform random on the same seeds), ``RUN_DIR/results.json``,
the agent and its ensemble as ``RUN_DIR/model`` (safetensors + config.json, :mod:`worldmodels.mbpo.family`:
``worldmodels.load(RUN_DIR)``, ``wm evaluate``, ``wm plan``, ``wm serve`` read it) and TensorBoard logs under
``RUN_DIR/tb``. The wiring is :mod:`trainers.mbpo_run`.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from trainers.mbpo_run import MBPORunConfig, train_mbpo
from worldmodels.config import save_json_atomic, to_dict
from worldmodels.evaluation import summary_line, write_eval
from worldmodels.locking import exclusive_lock
from worldmodels.mbpo.family import MODEL_DIR, save_whole

CONFIG = MBPORunConfig


def run(config: MBPORunConfig) -> dict:
    run_dir = Path(config.run_dir)
    with exclusive_lock(run_dir, what="run directory"):
        save_json_atomic(run_dir / "config.json", to_dict(config))
        with SummaryWriter(str(run_dir / "tb")) as writer:
            result = train_mbpo(config, writer=writer)
        record = result["eval"]
        write_eval(run_dir / "eval.json", record)
        # The exchange format (atomic, NaN-refusing): worldmodels.load(RUN) and every wm command read it.
        world_model = result["world_model"]
        save_whole(run_dir / MODEL_DIR, world_model.cpu(), result["sac"].cpu(), env_id=config.env,
                   known_task=not world_model.learned_reward,
                   training_steps={"env_steps": record["env_steps"], "sac_updates": record["sac_updates"]},
                   metrics={"eval_return": record["return_mean"], "random_return": record["random_mean"]})
        results = {key: result[key] for key in ("eval", "train_returns", "final_losses", "synthetic_transitions")}
        save_json_atomic(run_dir / "results.json", results)
    print(f"wm mbpo: {summary_line(record)} after {record['env_steps']} env steps, {record['wall_s']} s -> "
          f"{run_dir / 'eval.json'}")
    return results
