"""PETS in the exchange format (safetensors + JSON), read and written like every family's whole model.

``config.json`` holds ``family: "pets"``, ``sizes`` (the :class:`ProbabilisticEnsemble` constructor),
``action_spec``, ``obs_shape`` ``(D,)``, ``env_id``, ``propagation``, ``known_task`` (whether the env's
reward / termination come from :data:`worldmodels.pets.tasks.KNOWN_TASKS` or the ensemble learned the
reward) and ``planner`` (the CEM settings the run planned with, :data:`PLANNER_KEYS`). The one component is
``ensemble``; its normalisers and elites are buffers, so they travel with it.

The family's entries of :data:`worldmodels.registry.FAMILIES` are here too. Layouts: a whole-model directory,
or a ``wm pets`` run, whose model is ``RUN/model``. PETS has no policy head: its policy IS the planner, so
:func:`planner_policy` acts by CEM-MPC over the ensemble with the saved settings, and it acts in the env's
vector-observation env (:func:`make_env`), not in the pixel factory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from worldmodels.checkpoint import CheckpointError, load_into, read_config, read_tensors, save_pretrained
from worldmodels.config import read_json
from worldmodels.envs.spaces import ActionSpec
from worldmodels.pets.ensemble import ProbabilisticEnsemble
from worldmodels.pets.envs import make_state_env
from worldmodels.pets.tasks import KNOWN_TASKS
from worldmodels.pets.world_model import PETSWorldModel
from worldmodels.planning.cem import CEM
from worldmodels.policies import PlannerPolicy

PETS = "pets"
MODEL_DIR = "model"  # a `wm pets` run's whole model: RUN/model
PLANNER_KEYS = ("horizon", "candidates", "iterations", "particles", "elites", "seed")  # CEM's, as `wm pets` planned


def build(config: Mapping[str, Any], action_spec: ActionSpec | None = None) -> dict[str, nn.Module]:
    """A fresh ensemble of the saved sizes; ``action_spec`` (another action space) changes its input width."""
    sizes = dict(config["sizes"])
    if action_spec is not None:
        sizes["in_dim"] = int(config["obs_shape"][0]) + action_spec.dim
    return {"ensemble": ProbabilisticEnsemble(**sizes)}


def world_model(components: Mapping[str, nn.Module], config: Mapping[str, Any]) -> PETSWorldModel:
    spec = ActionSpec.from_dict(config["action_spec"])
    task = KNOWN_TASKS.get(config["env_id"]) if config.get("known_task") else None
    if config.get("known_task") and task is None:
        raise CheckpointError(f"PETS model of {config['env_id']!r} was trained with a known reward, but "
                              f"worldmodels.pets.tasks has none for it (known: {sorted(KNOWN_TASKS)})")
    return PETSWorldModel(components["ensemble"], spec, propagation=config.get("propagation", "tsinf"),
                          reward_fn=task.reward_fn if task else None, termination_fn=task.termination_fn if task else None)


def head(components: Mapping[str, nn.Module], config: Mapping[str, Any], *, sample: bool = False) -> None:
    """No latent head: PETS acts by planning (:func:`planner_policy`)."""
    return None


def planner_policy(world_model: PETSWorldModel, config: Mapping[str, Any], *, seed: int | None = None) -> PlannerPolicy:
    """CEM-MPC over the ensemble with the saved ``planner`` settings; ``seed`` overrides the saved planner seed."""
    settings = config.get("planner") or {}
    missing = [key for key in PLANNER_KEYS if key not in settings]
    if missing:
        raise CheckpointError(f"PETS model of {config['env_id']!r} was saved without planner settings {missing}; "
                              f"plan over it with `wm plan --checkpoint PATH --planner cem`")
    cem = CEM(world_model.action_spec, horizon=settings["horizon"], candidates=settings["candidates"],
              iterations=settings["iterations"], particles=settings["particles"], elites=settings["elites"],
              seed=settings["seed"] if seed is None else seed)
    return PlannerPolicy(world_model, cem)


def make_env(env_id: str, num_envs: int, *, seed: int | None = None, max_episode_steps: int | None = None,
             frameskip: int | None = None) -> Any:
    """The vector env a PETS model acts in (``Family.make_env``); ``seed`` goes unused because every evaluation
    episode resets with its own seed, and a frameskip is refused (the model predicts one env step per action)."""
    if frameskip is not None:
        raise ValueError(f"PETS models predict one env step per action; drop --frameskip {frameskip}")
    return make_state_env(env_id, num_envs, max_episode_steps=max_episode_steps)


def is_run(path: Path) -> bool:
    """A ``wm pets`` run directory: ``RUN/model`` holds a PETS whole model."""
    config_path = path / MODEL_DIR / "config.json"
    return config_path.is_file() and read_json(config_path, what="a model config", default={}).get("family") == PETS


def read_layout(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """``(config, tensors)`` of a whole-model directory, or of a run's ``RUN/model``."""
    root = path / MODEL_DIR if is_run(path) else path
    return read_config(root), read_tensors(root)


def save_whole(directory: str | Path, world_model: PETSWorldModel, *, env_id: str, known_task: bool,
               planner: Mapping[str, Any] | None = None, training_steps: Mapping[str, Any] | None = None,
               metrics: Mapping[str, float] | None = None) -> Path:
    """The ensemble + its config to one whole-model directory (atomic, NaN-refusing: ``save_pretrained``).

    ``planner``: the CEM settings (:data:`PLANNER_KEYS`) :func:`planner_policy` acts with after loading.
    """
    if world_model.encoder is not None:
        raise ValueError("save_whole writes vector-observation PETS models; a latent one also needs its encoder's checkpoint")
    config = {"family": PETS, "model_class": {"ensemble": type(world_model.ensemble).__name__},
              "sizes": world_model.ensemble.sizes(), "env_id": env_id, "obs_shape": list(world_model.obs_shape),
              "action_spec": world_model.action_spec.to_dict(), "propagation": world_model.propagation,
              "known_task": bool(known_task), "planner": dict(planner or {}),
              "training_steps": dict(training_steps or {}), "metrics": dict(metrics or {})}
    return save_pretrained(directory, {"ensemble": world_model.ensemble}, config)


def load_whole(directory: str | Path, device: str | torch.device = "cpu", *,
               allow_unverified: bool = False) -> PETSWorldModel:
    """A PETS world model from :func:`save_whole`'s directory (no unpickling; shapes and digest checked;
    ``allow_unverified``: also one whose ``config.json`` records no digest)."""
    config = read_config(directory)
    if config.get("family") != PETS:
        raise CheckpointError(f"{directory}: family {config.get('family')!r}, expected {PETS!r}")
    components = build(config)
    load_into(components["ensemble"], read_tensors(directory, allow_unverified=allow_unverified).get("ensemble", {}), component="ensemble")
    return world_model(components, config).to(device)
