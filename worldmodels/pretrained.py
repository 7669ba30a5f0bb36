"""Whole pretrained models of both families: save, load, export a run, and transfer to another action space.

One directory holds one whole model (``model.safetensors`` + ``config.json``)::

    {"family": "worldmodels" | "dreamer", "model_class": {component: class name}, "sizes": {...},
     "obs_shape": [H, W, C], "action_spec": {...}, "env_id": "...", "env_options": {...} (optional),
     "training_steps": {...}, "metrics": {...}, "format", "library_version", "components"}
                                                   (the last three added by worldmodels.checkpoint)

    worldmodels  components vae, mdnrnn, controller (optional)   (worldmodels.families.vm)
    dreamer      components world_model, actor, critic; "config" holds the agent config (worldmodels.families.dreamer)

Models are rebuilt from the JSON sizes by the family's builder in :data:`worldmodels.registry.FAMILIES` and
filled with :func:`worldmodels.checkpoint.load_into`: nothing is unpickled. :func:`transfer` loads weights into
models built for ANOTHER action space: the action-dependent layers listed in :data:`ACTION_LAYERS` keep their
fresh initialisation, except the observation/latent columns of an input projection, which are copied
(``keep_columns``). :func:`export_from_run` turns a finished ``wm worldmodels`` or ``wm dreamer`` run into one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from worldmodels.checkpoint import CheckpointError, LoadReport, allowing_unverified, load_into, read_config, read_tensors
from worldmodels.config import given, read_json
from worldmodels.controllers.linear import PopulationController
from worldmodels.envs.spaces import ActionSpec, check_fits
from worldmodels.families import dreamer, vm
from worldmodels.families.dreamer import DREAMER
from worldmodels.families.vm import WORLDMODELS
from worldmodels.models.mdnrnn import MDNRNN
from worldmodels.models.vae import ConvVAE
from worldmodels.pets.family import MODEL_DIR as PETS_MODEL_DIR
from worldmodels.registry import FAMILIES, Pretrained, assemble, resolve
from worldmodels.shipped import is_shipped

# Parameters whose shape depends on the action space, per family and component (explicit, no introspection).
ACTION_LAYERS: dict[str, dict[str, tuple[str, ...]]] = {
    WORLDMODELS: {"mdnrnn": ("lstm.weight_ih_l0",), "controller": ("params",)},
    DREAMER: {"world_model": ("rssm.img_in.0.weight",), "actor": ("mlp.out.",)},
}
EXPORTABLE = (WORLDMODELS, DREAMER)  # families whose training runs export_from_run turns into one directory


def save_worldmodels(directory: str | Path, vae: ConvVAE, mdnrnn: MDNRNN, controller: PopulationController | None = None,
                     controller_params: torch.Tensor | None = None, *, env_id: str, action_spec: ActionSpec,
                     obs_shape: tuple[int, ...] | list[int] | None = None, env_options: Mapping[str, Any] | None = None,
                     training_steps: Mapping[str, int] | None = None, metrics: Mapping[str, float] | None = None) -> Path:
    """Write V, M and (optionally) C (``controller_params (1, N)`` or ``(N,)``) to one whole-model directory."""
    if (controller is None) != (controller_params is None):
        raise ValueError("save_worldmodels: pass both controller and controller_params, or neither")
    components: dict[str, nn.Module] = {"vae": vae, "mdnrnn": mdnrnn}
    if controller is not None:
        components["controller"] = vm.ControllerParams(controller, controller_params)
    return vm.save_whole(directory, components, env_id=env_id, action_spec=action_spec, obs_shape=obs_shape,
                         env_options=env_options, training_steps=training_steps, metrics=metrics)


def save_dreamer(directory: str | Path, components: Mapping[str, nn.Module], *, agent_config: Mapping[str, Any],
                 env_id: str, env_options: Mapping[str, Any] | None = None,
                 training_steps: Mapping[str, Any] | None = None, metrics: Mapping[str, float] | None = None) -> Path:
    """Write a Dreamer agent's ``world_model``, ``actor`` and ``critic`` (+ its agent config) to one directory."""
    return dreamer.save_whole(directory, components, agent_config=agent_config, env_id=env_id, env_options=env_options,
                              training_steps=training_steps, metrics=metrics)


def build(config: Mapping[str, Any], action_spec: ActionSpec | None = None) -> dict[str, nn.Module]:
    """Fresh components of ``config["family"]`` with its sizes; ``action_spec`` overrides the saved one."""
    family = config.get("family")
    if family not in FAMILIES:
        raise CheckpointError(f"config family {family!r}; expected one of {sorted(FAMILIES)}")
    return FAMILIES[family].build(config, action_spec)


def from_pretrained(directory: str | Path, device: str | torch.device = "cpu", *, family: str | None = None,
                    allow_unverified: bool = False) -> Pretrained:
    """A whole-model directory (or shipped name) of either family; ``family`` also checks which one it is.
    ``allow_unverified``: also load weights whose ``config.json`` records no digest (a warning line says so)."""
    path = resolve(directory)
    config = read_config(path)
    found = config.get("family")
    if found not in FAMILIES:
        raise CheckpointError(f"{path / 'config.json'}: family {found!r}; expected one of {sorted(FAMILIES)}")
    if family is not None and found != family:
        raise CheckpointError(f"{path / 'config.json'}: family {found!r}, expected {family!r}")
    return assemble(found, config, read_tensors(path, allow_unverified=allow_unverified), device=device, path=path)


def transfer(directory: str | Path, modules: Mapping[str, nn.Module], *, reinit: Mapping[str, tuple[str, ...]] = {},
             keep_columns: Mapping[str, int] = {}, allow_unverified: bool = False) -> dict[str, LoadReport]:
    """Load the directory's weights into ``modules`` (component -> module), possibly built for another action space.

    ``reinit[component]``: parameter prefixes that may differ in shape and then keep their fresh init.
    ``keep_columns["component.key"] = n``: for such a re-initialised 2-D weight with the same rows, the first
    ``n`` input columns (latent / stochastic state, before the action columns) are still copied.
    ``allow_unverified``: also load weights whose ``config.json`` records no digest (a warning line says so).
    """
    tensors = read_tensors(directory, allow_unverified=allow_unverified)
    reports = {}
    for name, module in modules.items():
        if name not in tensors:
            raise CheckpointError(f"{Path(directory) / 'model.safetensors'}: no {name!r} component (has {sorted(tensors)})")
        state = tensors[name]
        reports[name] = load_into(module, state, component=name, reinit_prefixes=tuple(reinit.get(name, ())))
        own = module.state_dict()
        for key in reports[name].reinitialised:
            n = keep_columns.get(f"{name}.{key}", 0)
            old, new = state.get(key), own[key]
            if n and old is not None and old.dim() == new.dim() == 2 and old.shape[0] == new.shape[0]:
                with torch.no_grad():
                    new[:, :n].copy_(old[:, :n])  # state_dict tensors share storage with the parameters
    return reports


def export_from_run(run_dir: str | Path, out_dir: str | Path | None = None, *, allow_unverified: bool = False) -> Path:
    """A finished ``wm worldmodels`` run (vae/, mdnrnn/, controller/) or ``wm dreamer`` run (checkpoints/last.ckpt)
    -> one whole-model directory (default ``RUN_DIR/pretrained``, with a digest), through the one loader.
    ``allow_unverified``: also read stage weights whose ``config.json`` records no digest."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "pretrained"
    name = next((n for n, family in FAMILIES.items() if family.is_run(run_dir)), None)
    if name is None or (name == WORLDMODELS and not (run_dir / "mdnrnn" / "config.json").is_file()):
        raise FileNotFoundError(f"{run_dir}: neither a finished `wm worldmodels` run (vae/, mdnrnn/) nor a `wm dreamer` "
                                f"run (checkpoints/last.ckpt)")
    if name not in EXPORTABLE:  # a `wm pets` run's RUN/model is already a whole model
        raise ValueError(f"{run_dir}: a `wm {name}` run; wm export exports `wm worldmodels` and `wm dreamer` runs only "
                         f"(this run's model is already whole, with its digest: load or copy {run_dir / PETS_MODEL_DIR})")
    with allowing_unverified(allow_unverified):
        config, tensors = FAMILIES[name].read_layout(run_dir)
    model = assemble(name, config, tensors, path=run_dir)
    common = dict(env_id=model.env_id, env_options=model.env_options)
    if name == WORLDMODELS:
        run_config = read_json(run_dir / "config.json", default={})
        steps = {k: run_config[k] for k in ("vae_steps", "mdnrnn_steps", "generations", "episodes") if k in run_config}
        return vm.save_whole(out, model.components, action_spec=model.action_spec, obs_shape=model.obs_shape,
                             training_steps=steps, metrics=_numbers(read_json(run_dir / "eval.json", what="an evaluation", default={})),
                             dream=config.get("dream"), **common)
    results = read_json(run_dir / "results.json", what="results", default={})
    steps = {k: int(v) for k, v in {"gradient_steps": results.get("gradient_steps"),
                                    "env_steps": config["checkpoint"].get("env_steps")}.items() if v is not None}
    return dreamer.save_whole(out, model.components, agent_config=config["config"], training_steps=steps,
                              metrics=_numbers(results), **common)


def make_env_for(model: Pretrained, env_id: str = "", num_envs: int = 1, *, seed: int | None = None,
                 adapt_actions: bool = False, **options: Any) -> Any:
    """The vector env ``model`` acts in: its family's (``Family.make_env``: pixels, or PETS' vector observations)
    for ``env_id`` (default: the model's own), with the model's env settings (image size, frameskip, episode
    cap) overridden by the ``options`` given (``None`` = keep the model's).

    Its spaces are checked against the model's before anything runs (:func:`~worldmodels.envs.spaces.check_fits`,
    ``adapt_actions`` as there): a one-line ``ValueError`` naming both, and the env is closed.
    """
    env_id = env_id or model.env_id
    if not env_id:
        raise FileNotFoundError(f"{model.path}: does not name the env it was trained on; pass one with --env")
    vec_env = FAMILIES[model.family].make_env(env_id, num_envs, seed=seed, **{**model.env_options, **given(**options)})
    try:
        check_fits(vec_env, env_id, obs_shape=model.obs_shape, action_spec=model.action_spec, model=str(model.path),
                   adapt_actions=adapt_actions)
    except ValueError:
        vec_env.close()
        raise
    return vec_env


def eval_path(model: Pretrained, stem: str, env_id: str = "") -> Path:
    """Where a command's record about ``model`` goes by default: ``STEM.json`` in its run or model directory (a
    .ckpt's run directory; the working directory for a shipped model), ``STEM-<ENV>.json`` when ``env_id`` is
    another env than the model's, so that a run's own ``eval.json`` is never overwritten by another env's."""
    root = model.path.parent.parent if model.path.suffix == ".ckpt" else model.path
    other_env = env_id and env_id != model.env_id
    name = f"{stem}-{re.sub(r'[^A-Za-z0-9.-]+', '_', env_id)}.json" if other_env else f"{stem}.json"
    return Path(name) if is_shipped(root) else root / name


def _numbers(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


