"""TD-MPC in the exchange format (safetensors + JSON), read and written like every family's whole model.

``config.json`` holds ``family: "tdmpc"``, ``sizes`` (the integer widths of :class:`TDMPCWorldModel`: ``latent_dim``,
``hidden``, ``layers``, ``depth``, ``simnorm_group``, ``num_q``, ``num_bins``), ``model`` (its float settings:
``discount``, ``value_range``), ``action_spec``, ``obs_shape`` (``(D,)`` state vectors or ``(H, W, C)`` frames),
``env_id``, ``env_options`` (``obs``, ``image_size``, ``max_episode_steps``: how the run saw the env) and
``planner``: how the agent acts after loading (:data:`PLANNER_KEYS`). The one component is ``model``; the target Q
heads are part of it, so a loaded model can be trained on.

Layouts: a whole-model directory, or a ``wm tdmpc`` run, whose model is ``RUN/model``. A TD-MPC agent acts by MPPI
over its latent model with the value bootstrap and the prior's candidates (TD-MPC2 Sec. 3.2), or, for discrete
actions and ``acting: "prior"``, by its policy prior alone: :func:`planner_policy` is that rule, for the run's
evaluation and for every loaded model alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from worldmodels.checkpoint import read_config, read_tensors, save_pretrained
from worldmodels.config import read_json
from worldmodels.core import Policy
from worldmodels.envs import make_vector
from worldmodels.envs.cartpole_continuous import register_continuous_cartpole
from worldmodels.envs.spaces import ActionSpec
from worldmodels.envs.toy import register_toy_envs
from worldmodels.planning import MPPI
from worldmodels.policies import ModelPolicy, PlannerPolicy
from worldmodels.tdmpc.model import PriorHead, TDMPCWorldModel

TDMPC = "tdmpc"
COMPONENTS = ("model",)
MODEL_DIR = "model"  # a `wm tdmpc` run's whole model: RUN/model
SIZE_KEYS = ("latent_dim", "hidden", "layers", "depth", "simnorm_group", "num_q", "num_bins")
FLOAT_KEYS = ("discount", "value_range")
# How the agent acts: "mppi" or "prior", and MPPI's settings (TD-MPC2 Sec. 3.2; `wm tdmpc`'s flags of those names).
PLANNER_KEYS = ("acting", "horizon", "candidates", "iterations", "prior_candidates", "temperature", "noise_std",
                "seed")


def build(config: Mapping[str, Any], action_spec: ActionSpec | None = None) -> dict[str, nn.Module]:
    """A fresh model of the saved sizes; ``action_spec`` (another action space) changes the action-fed layers."""
    spec = action_spec if action_spec is not None else ActionSpec.from_dict(config["action_spec"])
    settings = {key: float(value) for key, value in (config.get("model") or {}).items() if key in FLOAT_KEYS}
    return {"model": TDMPCWorldModel(tuple(config["obs_shape"]), spec, **dict(config["sizes"]), **settings)}


def world_model(components: Mapping[str, nn.Module], config: Mapping[str, Any]) -> TDMPCWorldModel:
    return components["model"]  # the model is the WorldModel (no decoder: it predicts latents, rewards, values)


def head(components: Mapping[str, nn.Module], config: Mapping[str, Any], *, sample: bool = False) -> PriorHead:
    """The policy prior as a latent head (what acts without a planner)."""
    return PriorHead(components["model"], sample=sample)


def planner_policy(model: TDMPCWorldModel, config: Mapping[str, Any], *, seed: int | None = None,
                   explore: bool = False) -> Policy:
    """How a TD-MPC agent acts: MPPI over ``model`` with the value bootstrap and the prior's candidates (continuous
    actions, ``acting: "mppi"``), else the prior alone (its mode; ``explore`` samples it, as in training).

    ``config``: a whole model's ``config.json`` (its ``planner``) or the planner settings themselves; ``seed``
    overrides the saved MPPI seed.
    """
    settings = config.get("planner", config)
    if settings.get("acting", "mppi") == "prior" or model.action_spec.discrete:
        return ModelPolicy(model, PriorHead(model, sample=explore))
    planner = MPPI(model.action_spec, horizon=int(settings["horizon"]), candidates=int(settings["candidates"]),
                   iterations=int(settings["iterations"]), gamma=model.discount, value=model.value,
                   prior=PriorHead(model, sample=True), prior_candidates=int(settings["prior_candidates"]),
                   seed=int(settings["seed"] if seed is None else seed), temperature=float(settings["temperature"]),
                   noise_std=float(settings["noise_std"]))
    return PlannerPolicy(model, planner)


def make_env(env_id: str, num_envs: int, *, seed: int | None = None, **options: Any) -> Any:
    """The vector env a TD-MPC model acts in (``Family.make_env``): the factory's, with the saved ``obs`` and
    ``image_size`` among ``options``, and this library's own continuous-action envs registered."""
    register_toy_envs()
    register_continuous_cartpole()
    return make_vector(env_id, num_envs, seed=seed, **{k: v for k, v in options.items() if v is not None})


def is_run(path: Path) -> bool:
    """A ``wm tdmpc`` run directory: ``RUN/model`` holds a TD-MPC whole model."""
    config_path = path / MODEL_DIR / "config.json"
    return config_path.is_file() and read_json(config_path, what="a model config", default={}).get("family") == TDMPC


def read_layout(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """``(config, tensors)`` of a whole-model directory, or of a run's ``RUN/model``."""
    root = path / MODEL_DIR if is_run(path) else path
    return read_config(root), read_tensors(root)


def save_whole(directory: str | Path, model: TDMPCWorldModel, *, env_id: str, env_options: Mapping[str, Any],
               planner: Mapping[str, Any],
               training_steps: Mapping[str, Any] | None = None, metrics: Mapping[str, float] | None = None) -> Path:
    """The model + its config to one whole-model directory (atomic, NaN-refusing: ``save_pretrained``).

    ``planner``: :data:`PLANNER_KEYS` (how the loaded model acts, :func:`planner_policy`).
    """
    missing = [key for key in PLANNER_KEYS if key not in planner]
    if missing:
        raise ValueError(f"save_whole needs the planner settings the agent acts with; missing {missing}")
    config = {"family": TDMPC, "model_class": {"model": type(model).__name__},
              "sizes": {key: int(model.sizes[key]) for key in SIZE_KEYS},
              "model": {"discount": float(model.discount), "value_range": float(model.value_range)},
              "env_id": env_id, "obs_shape": list(model.obs_shape), "action_spec": model.action_spec.to_dict(),
              "env_options": dict(env_options), "planner": {key: planner[key] for key in PLANNER_KEYS},
              "training_steps": dict(training_steps or {}), "metrics": dict(metrics or {})}
    return save_pretrained(directory, {"model": model}, config)
