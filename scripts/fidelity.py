"""Decision fidelity of a saved world model: do the policies its dream ranks higher do better in the real env?

``wm fidelity --checkpoint takecover-worldmodels-cpu --episodes 10 --seed 30000`` builds the policy set of
:mod:`trainers.runs.fidelity_checkpoints` (random, the trained policy, two intermediate checkpoints trained again in the
model's own dream, two weight-noise perturbations and an epsilon-random one), plays each one ``--episodes`` real
episodes and dreams one from the first frame of each (:mod:`worldmodels.fidelity`), then prints the table
(dream return, real return, gap), Spearman's rank correlation and the regret of choosing by the dream.

Writes ``fidelity.json`` beside the model (a shipped model: the working directory; ``--out`` elsewhere) and, with
``--tensorboard``, ``kpi/decision_fidelity_spearman`` / ``_regret`` under ``tb/fidelity`` there, at x = the env
steps the model was trained on. ``wm export`` / ``wm remeasure --fidelity-episodes N`` put the same table into the
model's ``config.json`` and card (:func:`trainers.runs.fidelity.fidelity_kpis`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainers.runs.fidelity import FIDELITY_SEED, measure
from worldmodels.checkpoint import allow_unverified_arg
from worldmodels.config import arg, file_problem, save_json_atomic, threads_arg
from worldmodels.envs.toy import register_toy_envs
from worldmodels.fidelity import TERMINATIONS, fidelity_table, log_fidelity_kpis
from worldmodels.pretrained import eval_path
from worldmodels.profiling import resolve_device, set_threads
from worldmodels.registry import load



@dataclass
class FidelityConfig:
    checkpoint: str = arg("", "a shipped name (`wm checkpoints`), an exported model directory or a training run")
    env: str = arg("", "env id; empty = the env the model was trained on")
    episodes: int = arg(10, "real episodes per policy, and as many dreams (one from each episode's first frame)",
                        minimum=1, maximum=10_000)
    seed: int = arg(FIDELITY_SEED, "episode j of every policy resets with seed + j; also seeds the policy set",
                    minimum=0, maximum=2**31 - 1)
    horizon: int = arg(0, "agent steps at most, dream and real episode alike; 0 = the env's episode limit",
                       minimum=0, maximum=10**6)
    termination: str = arg("threshold", "the dream ends when the predicted continue probability is below 0.5 "
                                         "(threshold) or by a draw from it (sample)", choices=TERMINATIONS)
    num_envs: int = arg(35, "parallel real envs, shared by every policy of the set (at most policies x --episodes)",
                        minimum=1, maximum=1024)
    out: str = arg("", "fidelity.json path; empty = beside the model (a shipped model: ./fidelity.json)",
                   check=lambda c: file_problem(c.out) if c.out else None)
    tensorboard: bool = arg(True, "also log kpi/decision_fidelity_* to TensorBoard under tb/fidelity beside the JSON")
    device: str = arg("cpu", "torch device: auto, cpu or cuda (cpu: the figures match across machines)")
    threads: str = threads_arg("0")
    allow_unverified: bool = allow_unverified_arg()


CONFIG = FidelityConfig


def run(config: FidelityConfig) -> dict:
    if not config.checkpoint:
        raise ValueError("--checkpoint is required: a shipped name (see `wm checkpoints`), an exported model "
                         "directory or a training run")
    register_toy_envs()
    set_threads(config.threads)
    device = resolve_device(config.device)
    model = load(config.checkpoint, device, allow_unverified=config.allow_unverified)
    report = measure(model, episodes=config.episodes, seed=config.seed, env_id=config.env, horizon=config.horizon,
                     termination=config.termination, num_envs=config.num_envs, device=device)
    path = Path(config.out) if config.out else eval_path(model, "fidelity", config.env)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_json_atomic(path, {"checkpoint": config.checkpoint, **report})
    if config.tensorboard:
        from torch.utils.tensorboard import SummaryWriter  # deferred: tensorboard is slow to import, and optional

        env_steps = int((model.config.get("training_steps") or {}).get("env_steps", 0))
        with SummaryWriter(str(path.parent / "tb" / path.stem)) as writer:
            log_fidelity_kpis(writer, env_steps, report)
    print(f"wm fidelity: {report['env']}, {config.episodes} episodes per policy (seeds {config.seed}-"
          f"{config.seed + config.episodes - 1}), horizon {report['horizon']}, dream ends by {config.termination}\n"
          f"{fidelity_table(report)}\n-> {path}")
    return report
