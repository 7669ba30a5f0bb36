"""A loaded model of any family in its real env, next to a uniform random policy on the same seeds.

The model-level layer over :mod:`worldmodels.evaluation` (which plays episodes of any policy in any vector env):
the env is the model's own (:func:`worldmodels.pretrained.make_env_for`: its family's env factory, its saved env
settings, its spaces checked), the policy its family's rule (``Pretrained.policy``). ``wm evaluate``, ``wm plan``,
``wm finetune`` and the run skeleton (``trainers/runs/skeleton.py``) evaluate through it.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from worldmodels.core import Policy
from worldmodels.evaluation import evaluate_against_random
from worldmodels.families.vm import WORLDMODELS
from worldmodels.pretrained import make_env_for
from worldmodels.registry import Pretrained


def evaluate_model(model: Pretrained, *, episodes: int, seed: int, env_id: str = "", num_envs: int = 8,
                   max_episode_steps: int | None = None, frameskip: int | None = None, sample: bool = False,
                   device: str | torch.device = "cpu", policy: Policy | None = None,
                   hooks: Sequence[Any] = (), progress: bool = False) -> dict[str, Any]:
    """A loaded model's policy vs uniform random on the same seeds in its env: the ``eval.json`` record.

    The env is :func:`make_env_for`'s: the model's settings, overridden by those given here, its spaces checked.
    ``policy`` plays instead of the model's own (e.g. a planner over its world model, ``wm plan``); ``hooks``
    (driver hooks) see its episodes; ``progress`` shows the episodes with an ETA.
    """
    no_policy = model.world_model is None or (model.family == WORLDMODELS and "controller" not in model.components)
    if policy is None and no_policy:
        raise FileNotFoundError(f"{model.path}: holds no trained policy yet (components {sorted(model.components)}); "
                                f"finish its training first")
    env_id = env_id or model.env_id
    vec_env = make_env_for(model, env_id, min(num_envs, episodes), seed=seed, max_episode_steps=max_episode_steps,
                           frameskip=frameskip)
    try:
        own = model.policy(sample=sample, seed=seed) if policy is None else policy
        return evaluate_against_random(vec_env, own, env_id=env_id, episodes=episodes, seed=seed, device=device,
                                       hooks=hooks, progress=progress)
    finally:
        vec_env.close()
