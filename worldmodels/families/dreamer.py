"""DreamerV3 (Hafner et al. 2023) in the exchange format: world model, actor and critic built from JSON.

``config["config"]`` holds the agent hyperparameters (``DreamerAgentConfig`` as a dict); the sizes the
modules need are read from it (:data:`SIZE_KEYS`, plus ``unimix``, ``free_nats`` and ``num_bins`` where
present). Components: ``world_model`` (:class:`DreamerWorldModel`), ``actor`` (:class:`Actor`) and
``critic`` (:class:`Critic`). Two layouts, one format: a whole-model directory, or a ``wm dreamer`` run's
Lightning ``checkpoints/last.ckpt`` (read with ``weights_only=True``; its ``state_dict`` keys are
``<component>.<parameter>`` as in the safetensors file, so both give the same ``(config, tensors)``).

``obs_shape`` ``[H, W, C]`` is a pixel model, ``[D]`` a vector one (MLP encoder/decoder); the env options saved with
a vector model hold ``obs: "vector"``, so the pixel factory (``make_vector``) gives it the env's own vectors again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from worldmodels.checkpoint import CheckpointError, load_lightning_checkpoint, read_config, read_tensors, save_pretrained
from worldmodels.config import read_json
from worldmodels.core import LatentPolicy, WorldModel
from worldmodels.envs.factory import protocol_options
from worldmodels.envs.options import EnvError
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.actor_critic import Actor, Critic
from worldmodels.models.world_model import DreamerWorldModel
from worldmodels.policies import ActorHead

DREAMER = "dreamer"
COMPONENTS = ("world_model", "actor", "critic")
SIZE_KEYS = ("deter", "hidden", "stoch", "classes", "depth", "stages", "layers", "num_bins")
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"  # a `wm dreamer` run's resume checkpoint


def build(config: Mapping[str, Any], action_spec: ActionSpec | None = None) -> dict[str, nn.Module]:
    """Fresh world model, actor and critic for ``config["obs_shape"]``; ``action_spec`` overrides the saved one."""
    spec = action_spec or ActionSpec.from_dict(config["action_spec"])
    agent = config["config"]
    missing = [k for k in SIZE_KEYS[:-1] if k not in agent]
    if missing:
        raise CheckpointError(f"dreamer config lacks {missing}; it needs {list(SIZE_KEYS)}")
    optional = {k: agent[k] for k in ("unimix", "free_nats", "num_bins") if k in agent}
    world_model = DreamerWorldModel(obs_shape=tuple(config["obs_shape"]), action_spec=spec,
                                    **{k: agent[k] for k in SIZE_KEYS[:-1]}, **optional)
    feat = world_model.feature_dim
    actor = Actor(feat, spec.dim, discrete=spec.discrete, hidden=agent["hidden"], layers=agent["layers"],
                  **({"unimix": agent["unimix"]} if "unimix" in agent else {}))
    critic = Critic(feat, hidden=agent["hidden"], layers=agent["layers"],
                    **({"num_bins": agent["num_bins"]} if "num_bins" in agent else {}))
    return {"world_model": world_model, "actor": actor, "critic": critic}


def world_model(components: Mapping[str, nn.Module], config: Mapping[str, Any]) -> WorldModel:
    return components["world_model"]


def head(components: Mapping[str, nn.Module], config: Mapping[str, Any], *, sample: bool = False) -> LatentPolicy:
    """The actor: its mode by default (evaluation), a sample with ``sample=True``."""
    return ActorHead(components["actor"], components["world_model"].action_spec, sample=sample)


def model_env_options(obs_shape: tuple[int, ...] | list[int], options: Mapping[str, Any]) -> dict[str, Any]:
    """The env options a model of ``obs_shape`` acts with: a vector model's say ``obs: "vector"`` and carry no
    image size; a pixel model's drop any ``obs`` (pixels are the factory's default)."""
    kept = {k: v for k, v in options.items() if k not in ("obs", "image_size")}
    if len(obs_shape) == 1:
        return {**kept, "obs": "vector"}
    return {**({"image_size": options["image_size"]} if "image_size" in options else {}), **kept}


def save_whole(directory: str | Path, components: Mapping[str, nn.Module], *, agent_config: Mapping[str, Any],
               env_id: str, env_options: Mapping[str, Any] | None = None,
               training_steps: Mapping[str, Any] | None = None, metrics: Mapping[str, float] | None = None) -> Path:
    """World model, actor and critic (+ the agent config) to one whole-model directory."""
    parts = {name: components[name] for name in COMPONENTS}
    wm = parts["world_model"]
    config = {"family": DREAMER, "model_class": {k: type(v).__name__ for k, v in parts.items()},
              "sizes": {k: agent_config[k] for k in SIZE_KEYS}, "env_id": env_id, "obs_shape": list(wm.obs_shape),
              "action_spec": wm.action_spec.to_dict(), "config": dict(agent_config),
              "training_steps": dict(training_steps or {}), "metrics": dict(metrics or {})}
    options = model_env_options(wm.obs_shape, env_options or {})  # a vector model always says so
    if options:
        config["env_options"] = options
    return save_pretrained(directory, parts, config)


def is_run(path: Path) -> bool:
    return path.suffix == ".ckpt" or (path / LAST_CHECKPOINT).is_file()


def read_layout(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """``(config, tensors)`` of a whole-model directory, a run directory or a ``.ckpt`` file."""
    if not is_run(path):
        return read_config(path), read_tensors(path)
    checkpoint = load_lightning_checkpoint(path if path.suffix == ".ckpt" else path / LAST_CHECKPOINT)
    hparams, replay = checkpoint.get("hyper_parameters", {}), checkpoint.get("replay", {})
    if not {"obs_shape", "action_spec", "config"} <= set(hparams):
        raise CheckpointError(f"{path}: its hyper_parameters lack obs_shape / action_spec / config; not a `wm dreamer` checkpoint")
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in checkpoint["state_dict"].items():
        component, _, name = key.partition(".")
        if component in COMPONENTS:
            tensors.setdefault(component, {})[name] = value
    agent = dict(hparams["config"])
    config = {"family": DREAMER, "obs_shape": list(hparams["obs_shape"]), "action_spec": dict(hparams["action_spec"]),
              "config": agent, "sizes": {k: agent[k] for k in SIZE_KEYS if k in agent},
              **_run_env(path, tuple(hparams["obs_shape"])),
              "checkpoint": {"global_step": int(checkpoint.get("global_step", 0)),
                             **({"env_steps": int(replay["env_steps"])} if "env_steps" in replay else {})}}
    return config, tensors


def _run_env(path: Path, obs_shape: tuple[int, ...]) -> dict[str, Any]:
    """``env_id`` and ``env_options`` of a run, from its ``config.json`` (else its episode store)."""
    run_dir = path.parent.parent if path.suffix == ".ckpt" else path
    run, store = read_json(run_dir / "config.json", default={}), read_json(run_dir / "episodes" / "store.json", default={})
    options = {"image_size": int(obs_shape[0]), **({"frameskip": run["frameskip"]} if run.get("frameskip") is not None else {})}
    env_id = run.get("env") or store.get("env_id", "")
    try:
        options.update(protocol_options(env_id, run.get("atari_protocol", "machado")))  # wm dreamer --atari-protocol
    except EnvError as error:
        raise CheckpointError(f"{run_dir / 'config.json'}: {error}") from None
    return {"env_id": env_id, "env_options": model_env_options(obs_shape, options)}
