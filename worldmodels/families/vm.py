"""World Models (V + M + C, Ha & Schmidhuber 2018) in the exchange format.

Components and their JSON sizes (``config["sizes"][component]``)::

    vae         ConvVAE            {in_channels, image_size, z_dim, depth, stages}
    mdnrnn      MDNRNN             {z_dim, action_dim, hidden_size, num_mixtures}
    controller  ControllerParams   {kind, input_dim, hidden_size}   one flat CMA-ES vector "params" (N,)

Two layouts, one format: a run's stage directories ``RUN/{vae,mdnrnn,controller}/`` each hold the
components that stage trained (config ``{"family", "kind", "sizes": {kind: ...}}``), and a whole-model
directory holds all of them with the env it was trained on. :func:`read_layout` reads either into the
same ``(config, tensors)``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from worldmodels.checkpoint import read_config, read_tensors, save_pretrained
from worldmodels.config import read_json
from worldmodels.controllers.linear import PopulationController, make_controller
from worldmodels.core import LatentPolicy, WorldModel
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.mdnrnn import MDNRNN
from worldmodels.models.vae import ConvVAE
from worldmodels.models.vm_world_model import VMWorldModel
from worldmodels.policies import ControllerHead

WORLDMODELS = "worldmodels"
STAGES = ("vae", "mdnrnn", "controller")  # run sub-directories, in training order
DONE = "DONE"  # a finished stage's marker file


class ControllerParams(nn.Module):
    """C and its chosen flat parameter vector; only ``params`` is saved (the controller has no weights)."""

    def __init__(self, controller: PopulationController, params: torch.Tensor | None = None) -> None:
        super().__init__()
        self.controller = controller
        value = torch.zeros(controller.num_params) if params is None else torch.as_tensor(params)
        self.register_buffer("params", value.detach().float().reshape(-1))  # (N,)


def vae_sizes(vae: ConvVAE) -> dict[str, int]:
    """Constructor arguments of a :class:`ConvVAE`, read back from its layers."""
    stages = int(round(math.log2(vae.image_size // vae.encoder.out_side)))
    depth = vae.encoder.out_channels // 2 ** (stages - 1)
    return {"in_channels": vae.in_channels, "image_size": vae.image_size, "z_dim": vae.z_dim, "depth": depth, "stages": stages}


def mdnrnn_sizes(mdnrnn: MDNRNN) -> dict[str, int]:
    return {"z_dim": mdnrnn.z_dim, "action_dim": mdnrnn.action_dim, "hidden_size": mdnrnn.hidden_size,
            "num_mixtures": mdnrnn.num_mixtures}


def controller_sizes(controller: PopulationController) -> dict[str, Any]:
    kind = "mlp" if hasattr(controller, "hidden_size") else "linear"
    return {"kind": kind, "input_dim": controller.input_dim, "hidden_size": getattr(controller, "hidden_size", 32)}


def component_sizes(name: str, module: nn.Module) -> dict[str, Any]:
    """The JSON sizes of one component (``vae``, ``mdnrnn`` or ``controller``)."""
    if name == "controller":
        return controller_sizes(module.controller)
    return {"vae": vae_sizes, "mdnrnn": mdnrnn_sizes}[name](module)


def build(config: Mapping[str, Any], action_spec: ActionSpec | None = None) -> dict[str, nn.Module]:
    """Fresh components with the config's sizes; ``action_spec`` overrides the saved one (fine-tuning)."""
    spec = action_spec or ActionSpec.from_dict(config["action_spec"])
    sizes = config["sizes"]
    components: dict[str, nn.Module] = {}
    if "vae" in sizes:
        components["vae"] = ConvVAE(**sizes["vae"])
    if "mdnrnn" in sizes:
        components["mdnrnn"] = MDNRNN(**{**sizes["mdnrnn"], "action_dim": spec.dim})
    if "controller" in sizes:
        c = sizes["controller"]
        components["controller"] = ControllerParams(make_controller(c["kind"], c["input_dim"], spec,
                                                                    hidden_size=c["hidden_size"]))
    return components


def world_model(components: Mapping[str, nn.Module], config: Mapping[str, Any]) -> WorldModel | None:
    """V + M as one :class:`~worldmodels.core.WorldModel` (real frames filtered with V's posterior mean);
    ``None`` without both (a run that has trained only V so far, or one stage read alone)."""
    if not {"vae", "mdnrnn"} <= set(components):
        return None
    return VMWorldModel(components["vae"], components["mdnrnn"], ActionSpec.from_dict(config["action_spec"]),
                        sample_latent=False)


def head(components: Mapping[str, nn.Module], config: Mapping[str, Any], *, sample: bool = False) -> LatentPolicy | None:
    """C acting on ``[z, h]`` with its saved parameters; ``None`` when no controller was trained."""
    if "controller" not in components:
        return None
    holder = components["controller"]
    return ControllerHead(holder.controller, holder.params.unsqueeze(0))  # (1, N): one candidate for every row


# ---------------------------------------------------------------------------------------------- writing


def save_stage(directory: str | Path, name: str, module: nn.Module, *, action_spec: ActionSpec | None = None,
               extra: Mapping[str, Any] | None = None) -> Path:
    """One stage's component to ``RUN/<name>/`` (a controller also records its action space)."""
    config: dict[str, Any] = {"family": WORLDMODELS, "kind": name, "sizes": {name: component_sizes(name, module)},
                              **(extra or {})}
    if action_spec is not None:
        config["action_spec"] = action_spec.to_dict()
    return save_pretrained(directory, {name: module}, config)


def save_controller(directory: str | Path, controller: PopulationController, params: np.ndarray | torch.Tensor, *,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """The chosen CMA-ES parameters ``(N,)`` of ``controller`` to ``RUN/controller/``."""
    return save_stage(directory, "controller", ControllerParams(controller, torch.as_tensor(params)),
                      action_spec=controller.action_spec, extra=extra)


def save_whole(directory: str | Path, components: Mapping[str, nn.Module], *, env_id: str, action_spec: ActionSpec,
               obs_shape: tuple[int, ...] | list[int] | None = None, env_options: Mapping[str, Any] | None = None,
               training_steps: Mapping[str, int] | None = None, metrics: Mapping[str, float] | None = None,
               dream: Mapping[str, Any] | None = None) -> Path:
    """V, M and (optionally) C with their sizes, env and metrics to one whole-model directory; ``dream``: the
    settings of the dream C was trained in (``temperature``, ``sample_done``, ``horizon``)."""
    vae, mdnrnn = components["vae"], components["mdnrnn"]
    if mdnrnn.action_dim != action_spec.dim or mdnrnn.z_dim != vae.z_dim:
        raise ValueError(f"save: MDN-RNN (z {mdnrnn.z_dim}, action {mdnrnn.action_dim}) does not fit "
                         f"V (z {vae.z_dim}) and the action spec (dim {action_spec.dim})")
    classes = {name: type(module.controller if name == "controller" else module).__name__
               for name, module in components.items()}
    config = {"family": WORLDMODELS, "model_class": classes, "env_id": env_id,
              "sizes": {name: component_sizes(name, module) for name, module in components.items()},
              "obs_shape": list(obs_shape or (vae.image_size, vae.image_size, vae.in_channels)),
              "action_spec": action_spec.to_dict(), "training_steps": dict(training_steps or {}),
              "metrics": dict(metrics or {})}
    if env_options:
        config["env_options"] = dict(env_options)
    if dream:
        config["dream"] = dict(dream)
    return save_pretrained(directory, dict(components), config)


# ---------------------------------------------------------------------------------------------- reading


def is_run(path: Path) -> bool:
    """A ``wm worldmodels`` run directory (at least ``vae/`` written)."""
    return (path / "vae" / "config.json").is_file()


def read_layout(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """``(config, tensors)`` of a whole-model directory or of a run's finished stages, in one schema."""
    if not is_run(path):
        return read_config(path), read_tensors(path)
    stages = [name for name in STAGES if (path / name / "config.json").is_file()]
    sizes: dict[str, Any] = {}
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    stage_configs = {}
    for name in stages:
        stage_configs[name] = read_config(path / name)
        sizes.update(stage_configs[name].get("sizes", {}))
        tensors.update(read_tensors(path / name))
    run = read_json(path / "config.json", default={})
    store = read_json(Path(run.get("store") or path / "episodes") / "store.json", default={})  # `wm worldmodels --store DIR` reads DIR
    vae = sizes["vae"]
    action_spec = (store.get("action_spec") or stage_configs.get("controller", {}).get("action_spec")
                   or ActionSpec("discrete", sizes.get("mdnrnn", {}).get("action_dim", 1)).to_dict())
    env_options = {"image_size": vae["image_size"],
                   **{k: run[k] for k in ("max_episode_steps", "frameskip") if run.get(k) is not None}}
    config = {"family": WORLDMODELS, "sizes": sizes, "env_id": store.get("env_id", run.get("env", "")),
              "obs_shape": list(store.get("obs_shape") or (vae["image_size"], vae["image_size"], vae["in_channels"])),
              "action_spec": action_spec, "env_options": env_options}
    dream = stage_configs.get("controller", {}).get("dream")
    if dream:  # the dream C was trained in (temperature, sampled deaths, horizon)
        config["dream"] = dream
    return config, tensors


