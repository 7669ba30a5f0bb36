"""Decision fidelity of a saved world model: do the policies its dream ranks higher do better in the real env?

``wm fidelity --checkpoint takecover-worldmodels-cpu --episodes 10 --seed 30000`` builds the policy set of
:mod:`trainers.runs.fidelity_checkpoints` (random, the trained policy, two intermediate checkpoints trained again in the
model's own dream, two weight-noise perturbations and an epsilon-random one), plays each one ``--episodes`` real
episodes and dreams one from the first frame of each (:mod:`worldmodels.fidelity`), then prints the table
(dream return, real return, gap), Spearman's rank correlation and the regret of choosing by the dream.

Writes ``fidelity.json`` beside the model (a shipped model: the working directory; ``--out`` elsewhere) and, with
``--tensorboard``, ``kpi/decision_fidelity_spearman`` / ``_regret`` under ``tb/fidelity`` there, at x = the env
steps the model was trained on. ``wm export`` / ``wm remeasure --fidelity-episodes N`` put the same table into the
model's ``config.json`` and card (:func:`fidelity_kpis`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainers.runs.fidelity_checkpoints import policy_set
from worldmodels.checkpoint import allow_unverified_arg
from worldmodels.config import arg, file_problem, save_json_atomic, threads_arg
from worldmodels.envs.toy import register_toy_envs
from worldmodels.fidelity import (TERMINATIONS, card_section, decision_fidelity, default_horizon, fidelity_table,
                                  log_fidelity_kpis, metrics)
from worldmodels.pretrained import eval_path, make_env_for
from worldmodels.profiling import resolve_device, set_threads
from worldmodels.registry import Pretrained, load

FIDELITY_SEED = 30_000  # episodes seed .. seed + N - 1: no training preset collects or evaluates on them
MODEL_KEY = "decision_fidelity"  # config.json key of the last measurement (wm export / wm remeasure)


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


def measure(model: Pretrained, *, episodes: int, seed: int, env_id: str = "", horizon: int = 0,
            termination: str = "threshold", num_envs: int = 35, device: Any = "cpu", progress: bool = True) -> dict:
    """Build the policy set and measure it: the :func:`worldmodels.fidelity.decision_fidelity` report, plus
    ``env``, ``policy_set`` (how each policy was made) and ``seconds``."""
    env_id = env_id or model.env_id
    horizon = horizon or default_horizon(env_id, model.env_options)
    make_env = lambda n: make_env_for(model, env_id, n, seed=seed)  # noqa: E731 - the model's env, spaces checked
    began = time.perf_counter()
    policies, how = policy_set(model, make_env, seed=seed, horizon=horizon, termination=termination)
    built = time.perf_counter() - began
    report = decision_fidelity(model.world_model, policies, make_env, episodes=episodes, seed=seed, horizon=horizon,
                               termination=termination, num_envs=num_envs, device=device, progress=progress)
    return {"env": env_id, **report, "policy_set": how,
            "seconds": {"policy_set": round(built, 1), "measure": round(time.perf_counter() - began - built, 1)}}


def fidelity_kpis(model_dir: str | Path, *, episodes: int, device: str = "cpu", threads: str = "0",
                  allow_unverified: bool = False) -> dict:
    """:func:`measure` with the defaults on ``model_dir``'s own env (``wm export`` / ``wm remeasure``)."""
    set_threads(threads)
    device = resolve_device(device)
    model = load(model_dir, device, allow_unverified=allow_unverified)
    return measure(model, episodes=episodes, seed=FIDELITY_SEED, device=device)


def add_to_model_config(model_config: dict, report: dict) -> dict:
    """``model_config`` (a config.json dict) with the report under :data:`MODEL_KEY` and its scalars in ``metrics``."""
    return {**model_config, "metrics": {**model_config.get("metrics", {}), **metrics(report)}, MODEL_KEY: report}


def card_part(model_config: dict) -> str:
    """The card's decision-fidelity section for a config.json dict, or ``""`` when it was never measured."""
    return "\n" + card_section(model_config[MODEL_KEY]) if MODEL_KEY in model_config else ""


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
