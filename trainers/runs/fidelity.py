"""Decision fidelity of a loaded model (issue 28): build its policy set and measure it, and keep the result in the
model's ``config.json`` and card. ``wm fidelity`` prints it; ``wm export`` / ``wm remeasure --fidelity-episodes N``
store it (:func:`fidelity_kpis`; :func:`worldmodels.fidelity.add_to_model_config` and ``card_part``).

The policy set is :func:`trainers.runs.fidelity_checkpoints.policy_set`; the measurement
:func:`worldmodels.fidelity.decision_fidelity` (dream and real returns on the same seeds, Spearman, regret).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from trainers.runs.fidelity_checkpoints import policy_set
from worldmodels.fidelity import decision_fidelity, default_horizon
from worldmodels.pretrained import make_env_for
from worldmodels.profiling import resolve_device, set_threads
from worldmodels.registry import Pretrained, load

FIDELITY_SEED = 30_000  # episodes seed .. seed + N - 1: no training preset collects or evaluates on them


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
