"""MBPO in the exchange format (safetensors + JSON): the SAC agent and the PETS ensemble it was trained on.

``config.json`` holds ``family: "mbpo"``, ``sizes`` (``ensemble``: the :class:`ProbabilisticEnsemble` constructor;
``sac``: the :class:`SAC` widths ``obs_dim``, ``hidden``, ``layers``), ``sac_settings`` (``gamma``, ``tau``),
``action_spec``, ``obs_shape`` ``(D,)``, ``env_id``, ``propagation`` and ``known_task`` (as a PETS model). Two
components: ``ensemble`` (the world model, for ``wm plan`` and dreams) and ``sac`` (actor, twin critic, its target
and ``log_alpha``). The agent acts with SAC's actor on the observation (its mean action; ``sample=True`` samples),
through the world model's feature, which for a vector PETS model is the observation itself.

Layouts: a whole-model directory, or a ``wm mbpo`` run, whose model is ``RUN/model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from worldmodels.checkpoint import read_config, read_tensors, save_pretrained
from worldmodels.config import read_json
from worldmodels.envs.spaces import ActionSpec
from worldmodels.mbpo.sac import SAC, SACPolicy
from worldmodels.pets import family as pets
from worldmodels.pets.ensemble import ProbabilisticEnsemble
from worldmodels.pets.world_model import PETSWorldModel

MBPO = "mbpo"
COMPONENTS = ("ensemble", "sac")
MODEL_DIR = "model"  # a `wm mbpo` run's whole model: RUN/model
make_env = pets.make_env  # the env's own state vectors, one env step per action, as PETS


def build(config: Mapping[str, Any], action_spec: ActionSpec | None = None) -> dict[str, nn.Module]:
    """A fresh ensemble and SAC of the saved sizes (``action_spec``: another action space)."""
    spec = action_spec if action_spec is not None else ActionSpec.from_dict(config["action_spec"])
    sizes = config["sizes"]
    ensemble = dict(sizes["ensemble"])
    if action_spec is not None:
        ensemble["in_dim"] = int(config["obs_shape"][0]) + spec.dim
    settings = {key: float(value) for key, value in (config.get("sac_settings") or {}).items() if key in ("gamma", "tau")}
    return {"ensemble": ProbabilisticEnsemble(**ensemble),
            "sac": SAC(int(sizes["sac"]["obs_dim"]), spec, hidden=int(sizes["sac"]["hidden"]),
                       layers=int(sizes["sac"]["layers"]), **settings)}


def world_model(components: Mapping[str, nn.Module], config: Mapping[str, Any]) -> PETSWorldModel:
    """The PETS world model over the ensemble (the env's known reward and termination where it had them)."""
    return pets.world_model({"ensemble": components["ensemble"]}, config)


def head(components: Mapping[str, nn.Module], config: Mapping[str, Any], *, sample: bool = False) -> SACPolicy:
    """SAC's actor on the world model's feature (the observation): its mean action, or samples."""
    return SACPolicy(components["sac"], sample=sample)


def is_run(path: Path) -> bool:
    """A ``wm mbpo`` run directory: ``RUN/model`` holds an MBPO whole model."""
    config_path = path / MODEL_DIR / "config.json"
    return config_path.is_file() and read_json(config_path, what="a model config", default={}).get("family") == MBPO


def read_layout(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """``(config, tensors)`` of a whole-model directory, or of a run's ``RUN/model``."""
    root = path / MODEL_DIR if is_run(path) else path
    return read_config(root), read_tensors(root)


def save_whole(directory: str | Path, world_model: PETSWorldModel, sac: SAC, *, env_id: str, known_task: bool,
               training_steps: Mapping[str, Any] | None = None, metrics: Mapping[str, float] | None = None) -> Path:
    """The ensemble, SAC and their config to one whole-model directory (atomic, NaN-refusing: ``save_pretrained``)."""
    config = {"family": MBPO, "model_class": {"ensemble": type(world_model.ensemble).__name__, "sac": type(sac).__name__},
              "sizes": {"ensemble": world_model.ensemble.sizes(), "sac": dict(sac.sizes)},
              "sac_settings": {"gamma": float(sac.gamma), "tau": float(sac.tau)}, "env_id": env_id,
              "obs_shape": list(world_model.obs_shape), "action_spec": world_model.action_spec.to_dict(),
              "propagation": world_model.propagation, "known_task": bool(known_task),
              "training_steps": dict(training_steps or {}), "metrics": dict(metrics or {})}
    return save_pretrained(directory, {"ensemble": world_model.ensemble, "sac": sac}, config)
