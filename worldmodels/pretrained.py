"""Pretrained world models of both families in the exchange format (``model.safetensors`` + ``config.json``).

One directory holds one whole model; :func:`from_pretrained` picks the family from config.json::

    {"family": "worldmodels" | "dreamer", "model_class": {component: class name}, "sizes": {...},
     "obs_shape": [H, W, C], "action_spec": {...}, "env_id": "...", "training_steps": {...},
     "metrics": {...}, "format", "library_version", "components"}   <- the last three added by checkpoint.py

    worldmodels  components vae (ConvVAE), mdnrnn (MDNRNN), controller (flat CMA-ES parameters, optional)
    dreamer      components world_model (WorldModel), actor (Actor), critic (Critic); "config" holds the
                 DreamerAgentConfig, as ``trainers/views.py:load_view`` expects

Models are rebuilt from the JSON sizes and filled with :func:`worldmodels.checkpoint.load_into`:
nothing is unpickled. :func:`transfer` loads weights into models built for ANOTHER action space:
the action-dependent layers listed in :data:`ACTION_LAYERS` keep their fresh initialisation, except
the observation/latent columns of an input projection, which are copied (``keep_columns``).
:func:`export_from_run` turns a finished ``wm worldmodels`` or ``wm dreamer`` run directory into one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from worldmodels.checkpoint import CheckpointError, LoadReport, load_into, read_config, read_tensors, save_pretrained
from worldmodels.controllers.linear import PopulationController, make_controller
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.mdnrnn import MDNRNN
from worldmodels.models.vae import ConvVAE

WORLDMODELS, DREAMER = "worldmodels", "dreamer"

# Parameters whose shape depends on the action space, per family and component (explicit, no introspection).
ACTION_LAYERS: dict[str, dict[str, tuple[str, ...]]] = {
    WORLDMODELS: {"mdnrnn": ("lstm.weight_ih_l0",), "controller": ("params",)},
    DREAMER: {"world_model": ("rssm.img_in.0.weight",), "actor": ("mlp.out.",)},
}


class ParamsHolder(nn.Module):
    """A controller's flat CMA-ES parameter vector as a buffer, so it travels through safetensors."""

    def __init__(self, params: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("params", params.detach().float().reshape(-1))  # (N,)


@dataclass
class WorldModelsBundle:
    """V + M (+ C) of World Models and what they were trained on."""

    vae: ConvVAE
    mdnrnn: MDNRNN
    controller: PopulationController | None
    controller_params: torch.Tensor | None  # (1, N)
    action_spec: ActionSpec
    obs_shape: tuple[int, ...]
    env_id: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class DreamerBundle:
    """A DreamerV3 agent (``trainers.dreamer_module.DreamerModule``) and what it was trained on."""

    module: Any  # DreamerModule; typed loosely so this module does not import Lightning
    action_spec: ActionSpec
    obs_shape: tuple[int, ...]
    env_id: str
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def world_model(self) -> nn.Module:
        return self.module.world_model

    @property
    def actor(self) -> nn.Module:
        return self.module.actor


# ---------------------------------------------------------------------------------------------- World Models


def vae_sizes(vae: ConvVAE) -> dict[str, int]:
    """Constructor arguments of a :class:`ConvVAE`, read back from its layers."""
    stages = int(round(math.log2(vae.image_size // vae.encoder.out_side)))
    depth = vae.encoder.out_channels // 2 ** (stages - 1)
    return {"in_channels": vae.in_channels, "image_size": vae.image_size, "z_dim": vae.z_dim, "depth": depth, "stages": stages}


def mdnrnn_sizes(mdnrnn: MDNRNN) -> dict[str, int]:
    return {"z_dim": mdnrnn.z_dim, "action_dim": mdnrnn.action_dim, "hidden_size": mdnrnn.hidden_size,
            "num_mixtures": mdnrnn.num_mixtures}


def save_worldmodels(directory: str | Path, vae: ConvVAE, mdnrnn: MDNRNN, controller: PopulationController | None = None,
                     controller_params: torch.Tensor | None = None, *, env_id: str, action_spec: ActionSpec,
                     obs_shape: tuple[int, ...] | list[int] | None = None, training_steps: Mapping[str, int] | None = None,
                     metrics: Mapping[str, float] | None = None) -> Path:
    """Write V, M and (optionally) C with their sizes, env and metrics to one pretrained directory."""
    if (controller is None) != (controller_params is None):
        raise ValueError("save_worldmodels: pass both controller and controller_params, or neither")
    if mdnrnn.action_dim != action_spec.dim or mdnrnn.z_dim != vae.z_dim:
        raise ValueError(f"save_worldmodels: MDN-RNN (z {mdnrnn.z_dim}, action {mdnrnn.action_dim}) does not fit "
                         f"V (z {vae.z_dim}) and the action spec (dim {action_spec.dim})")
    components: dict[str, nn.Module] = {"vae": vae, "mdnrnn": mdnrnn}
    sizes: dict[str, Any] = {"vae": vae_sizes(vae), "mdnrnn": mdnrnn_sizes(mdnrnn)}
    classes = {"vae": type(vae).__name__, "mdnrnn": type(mdnrnn).__name__}
    if controller is not None:
        components["controller"] = ParamsHolder(controller_params)
        kind = "mlp" if hasattr(controller, "hidden_size") else "linear"
        sizes["controller"] = {"kind": kind, "input_dim": controller.input_dim,
                               "hidden_size": getattr(controller, "hidden_size", 32)}
        classes["controller"] = type(controller).__name__
    config = {"family": WORLDMODELS, "model_class": classes, "sizes": sizes, "env_id": env_id,
              "obs_shape": list(obs_shape or (vae.image_size, vae.image_size, vae.in_channels)),
              "action_spec": action_spec.to_dict(), "training_steps": dict(training_steps or {}),
              "metrics": dict(metrics or {})}
    return save_pretrained(directory, components, config)


def build_worldmodels(config: Mapping[str, Any], action_spec: ActionSpec | None = None):
    """Fresh ``(vae, mdnrnn, controller | None)`` with the config's sizes; ``action_spec`` overrides the saved one."""
    spec = action_spec or ActionSpec.from_dict(config["action_spec"])
    sizes = config["sizes"]
    vae = ConvVAE(**sizes["vae"])
    mdnrnn = MDNRNN(**{**sizes["mdnrnn"], "action_dim": spec.dim})
    controller = None
    if "controller" in sizes:
        c = sizes["controller"]
        controller = make_controller(c["kind"], c["input_dim"], spec, hidden_size=c["hidden_size"])
    return vae, mdnrnn, controller


def load_worldmodels(directory: str | Path, device: str | torch.device = "cpu") -> WorldModelsBundle:
    """Rebuild V, M (and C) from config.json sizes and load their weights (shapes must match exactly)."""
    config = _read_family(directory, WORLDMODELS)
    vae, mdnrnn, controller = build_worldmodels(config)
    tensors = read_tensors(directory)
    for name, module in (("vae", vae), ("mdnrnn", mdnrnn)):
        load_into(module, _component(tensors, name, directory), component=name)
    params = None
    if controller is not None:
        params = _component(tensors, "controller", directory)["params"].unsqueeze(0)  # (1, N)
        if params.shape[1] != controller.num_params:
            raise CheckpointError(f"{directory}: controller has {params.shape[1]} parameters, its config implies "
                                  f"{controller.num_params}")
        controller, params = controller.to(device), params.to(device)
    return WorldModelsBundle(vae.to(device).eval(), mdnrnn.to(device).eval(), controller, params,
                             ActionSpec.from_dict(config["action_spec"]), tuple(config["obs_shape"]), config["env_id"], config)


# ---------------------------------------------------------------------------------------------- Dreamer


def save_dreamer(directory: str | Path, module: Any, *, env_id: str, training_steps: Mapping[str, int] | None = None,
                 metrics: Mapping[str, float] | None = None) -> Path:
    """Write a DreamerModule's world model, actor and critic (+ its agent config) to a pretrained directory."""
    hparams = module.hparams
    wm = module.world_model
    components = {"world_model": wm, "actor": module.actor, "critic": module.critic}
    sizes = {k: hparams["config"][k] for k in ("deter", "hidden", "stoch", "classes", "depth", "stages", "layers", "num_bins")}
    config = {"family": DREAMER, "model_class": {k: type(v).__name__ for k, v in components.items()}, "sizes": sizes,
              "env_id": env_id, "obs_shape": list(hparams["obs_shape"]), "action_spec": dict(hparams["action_spec"]),
              "config": dict(hparams["config"]), "training_steps": dict(training_steps or {}), "metrics": dict(metrics or {})}
    return save_pretrained(directory, components, config)


def build_dreamer(config: Mapping[str, Any], action_spec: ActionSpec | None = None, agent_overrides: Mapping[str, Any] | None = None):
    """A fresh DreamerModule with the config's obs shape and agent config; ``action_spec`` overrides the saved one."""
    from trainers.dreamer_module import DreamerModule  # Lightning only when a Dreamer is built

    spec = action_spec or ActionSpec.from_dict(config["action_spec"])
    return DreamerModule(obs_shape=config["obs_shape"], action_spec=spec, config={**config["config"], **(agent_overrides or {})})


def load_dreamer(directory: str | Path, device: str | torch.device = "cpu") -> DreamerBundle:
    """Rebuild the DreamerModule from config.json and load world model, actor and critic (slow critic = critic)."""
    config = _read_family(directory, DREAMER)
    module = build_dreamer(config)
    tensors = read_tensors(directory)
    for name in ("world_model", "actor", "critic"):
        load_into(getattr(module, name), _component(tensors, name, directory), component=name)
    module.slow_critic.load_state_dict(module.critic.state_dict())
    return DreamerBundle(module.to(device).eval(), ActionSpec.from_dict(config["action_spec"]), tuple(config["obs_shape"]),
                         config["env_id"], config)


# ---------------------------------------------------------------------------------------------- both families


def from_pretrained(directory: str | Path, device: str | torch.device = "cpu") -> WorldModelsBundle | DreamerBundle:
    """Load either family, chosen by config.json's ``family``."""
    family = read_config(directory).get("family")
    loaders = {WORLDMODELS: load_worldmodels, DREAMER: load_dreamer}
    if family not in loaders:
        raise CheckpointError(f"{Path(directory) / 'config.json'}: family {family!r}; expected one of {sorted(loaders)}")
    return loaders[family](directory, device)


def transfer(directory: str | Path, modules: Mapping[str, nn.Module], *, reinit: Mapping[str, tuple[str, ...]] = {},
             keep_columns: Mapping[str, int] = {}) -> dict[str, LoadReport]:
    """Load the directory's weights into ``modules`` (component -> module), possibly built for another action space.

    ``reinit[component]``: parameter prefixes that may differ in shape and then keep their fresh init.
    ``keep_columns["component.key"] = n``: for such a re-initialised 2-D weight with the same rows, the first
    ``n`` input columns (latent / stochastic state, before the action columns) are still copied.
    """
    tensors = read_tensors(directory)
    reports = {}
    for name, module in modules.items():
        state = _component(tensors, name, directory)
        reports[name] = load_into(module, state, component=name, reinit_prefixes=tuple(reinit.get(name, ())))
        own = module.state_dict()
        for key in reports[name].reinitialised:
            n = keep_columns.get(f"{name}.{key}", 0)
            old, new = state.get(key), own[key]
            if n and old is not None and old.dim() == new.dim() == 2 and old.shape[0] == new.shape[0]:
                with torch.no_grad():
                    new[:, :n].copy_(old[:, :n])  # state_dict tensors share storage with the parameters
    return reports


def export_from_run(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """A finished ``wm worldmodels`` run (vae/, mdnrnn/, controller/) or ``wm dreamer`` run (checkpoints/last.ckpt)
    -> one pretrained directory (default ``RUN_DIR/pretrained``)."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "pretrained"
    store = _json(run_dir / "episodes" / "store.json")
    if (run_dir / "vae" / "config.json").is_file() and (run_dir / "mdnrnn" / "config.json").is_file():
        return _export_worldmodels(run_dir, out, store)
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return _export_dreamer(run_dir, out, store)
    raise FileNotFoundError(f"{run_dir}: neither a finished `wm worldmodels` run (vae/, mdnrnn/) nor a `wm dreamer` run "
                            f"(checkpoints/last.ckpt)")


def _export_worldmodels(run_dir: Path, out: Path, store: dict) -> Path:
    from scripts.evaluate import load_controller, load_mdnrnn, load_vae  # the family's own component loaders

    device = torch.device("cpu")
    vae, mdnrnn = load_vae(run_dir / "vae", device), load_mdnrnn(run_dir / "mdnrnn", device)
    controller = params = None
    if (run_dir / "controller" / "DONE").is_file():
        controller, params = load_controller(run_dir / "controller", device)
    run_config = _json(run_dir / "config.json")
    steps = {k: run_config[k] for k in ("vae_steps", "mdnrnn_steps", "generations", "episodes") if k in run_config}
    metrics = {k: v for k, v in _json(run_dir / "eval.json").items() if isinstance(v, (int, float))}
    spec = ActionSpec.from_dict(store["action_spec"]) if store else ActionSpec("discrete", mdnrnn.action_dim)
    return save_worldmodels(out, vae, mdnrnn, controller, params, env_id=store.get("env_id", run_config.get("env", "")),
                            action_spec=spec, obs_shape=store.get("obs_shape"), training_steps=steps, metrics=metrics)


def _export_dreamer(run_dir: Path, out: Path, store: dict) -> Path:
    from trainers.dreamer_module import OPTIMISERS_PER_STEP, DreamerModule
    from worldmodels.checkpoint import load_lightning_checkpoint

    checkpoint = load_lightning_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    module = DreamerModule(**checkpoint["hyper_parameters"])
    module.load_state_dict(checkpoint["state_dict"])
    replay = checkpoint.get("replay", {})
    steps = {"gradient_steps": int(checkpoint.get("global_step", 0)) // OPTIMISERS_PER_STEP}
    if "env_steps" in replay:
        steps["env_steps"] = int(replay["env_steps"])
    results = _json(run_dir / "results.json")
    metrics = {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return save_dreamer(out, module, env_id=store.get("env_id", results.get("env", "")), training_steps=steps, metrics=metrics)


def _read_family(directory: str | Path, family: str) -> dict[str, Any]:
    config = read_config(directory)
    if config.get("family") != family:
        raise CheckpointError(f"{Path(directory) / 'config.json'}: family {config.get('family')!r}, expected {family!r}")
    for key in ("sizes", "action_spec", "obs_shape", "env_id"):
        if key not in config:
            raise CheckpointError(f"{Path(directory) / 'config.json'}: no {key!r}; not a whole {family} model "
                                  f"(a single `wm worldmodels` stage directory? use export_from_run on the run)")
    return config


def _component(tensors: dict[str, dict[str, torch.Tensor]], name: str, directory: str | Path) -> dict[str, torch.Tensor]:
    if name not in tensors:
        raise CheckpointError(f"{Path(directory) / 'model.safetensors'}: no {name!r} component (has {sorted(tensors)})")
    return tensors[name]


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}
