"""The one loader: every family's checkpoints, in every layout, read by :func:`load` from a dict literal.

:data:`FAMILIES` maps a family name to how its modules are built from JSON sizes and put together::

    components                                          the component names its weights may hold
    build(config) -> {component: nn.Module}            fresh modules, sizes from config.json
    world_model(components, config) -> WorldModel       the family's core.WorldModel over those modules
    head(components, config, sample=) -> LatentPolicy   its acting head (None: the model cannot act)
    is_run(path), read_layout(path) -> (config, tensors) its training-run layout, read as the exchange format
    policy(world_model, config, seed=) -> Policy       optional: how a family WITHOUT a head acts (PETS: CEM-MPC)
    make_env(env_id, num_envs, seed=, **options)       the vector env it acts in (default: the pixel factory)

What :func:`load` accepts (all torch + safetensors; no Lightning is imported and nothing is unpickled)::

    NAME                       a shipped model (e.g. "pong-dreamer-tiny"): $WM_CHECKPOINTS/NAME, checkpoints/NAME of
                               the source tree, or the wheel's installed copy (worldmodels.shipped)
    DIR/config.json            a whole-model directory of any family (model.safetensors + config.json)
    RUN/vae/ ... RUN/controller/   a `wm worldmodels` run (or one of its stage directories)
    RUN/checkpoints/last.ckpt  a `wm dreamer` run, or the .ckpt itself (read with weights_only=True)
    RUN/model/                 a `wm pets`, `wm mbpo` or `wm tdmpc` run (its whole model)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from worldmodels.checkpoint import CheckpointError, allowing_unverified, load_into, read_config
from worldmodels.core import LatentPolicy, Policy, WorldModel
from worldmodels.envs import make_vector
from worldmodels.envs.spaces import ActionSpec
from worldmodels.families import dreamer, vm
from worldmodels.mbpo import family as mbpo
from worldmodels.pets import family as pets
from worldmodels.tdmpc import family as tdmpc
from worldmodels.policies import ModelPolicy, RandomPolicy
from worldmodels.shipped import SOURCE as SHIPPED  # noqa: F401 - the source tree's checkpoints/, re-exported
from worldmodels.shipped import find_shipped, shipped_names, shipped_roots


@dataclass(frozen=True)
class Family:
    """How one family's checkpoints become modules, a world model and a policy."""

    components: tuple[str, ...]
    build: Callable[..., dict[str, nn.Module]]
    world_model: Callable[[Mapping[str, nn.Module], Mapping[str, Any]], WorldModel | None]
    head: Callable[..., LatentPolicy | None]
    is_run: Callable[[Path], bool]
    read_layout: Callable[[Path], tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]]
    policy: Callable[..., Policy] | None = None
    make_env: Callable[..., Any] = make_vector


FAMILIES: dict[str, Family] = {
    vm.WORLDMODELS: Family(vm.STAGES, vm.build, vm.world_model, vm.head, vm.is_run, vm.read_layout),
    dreamer.DREAMER: Family(dreamer.COMPONENTS, dreamer.build, dreamer.world_model, dreamer.head, dreamer.is_run,
                            dreamer.read_layout),
    pets.PETS: Family(("ensemble",), pets.build, pets.world_model, pets.head, pets.is_run, pets.read_layout,
                      policy=pets.planner_policy, make_env=pets.make_env),
    mbpo.MBPO: Family(mbpo.COMPONENTS, mbpo.build, mbpo.world_model, mbpo.head, mbpo.is_run, mbpo.read_layout,
                      make_env=mbpo.make_env),
    tdmpc.TDMPC: Family(tdmpc.COMPONENTS, tdmpc.build, tdmpc.world_model, tdmpc.head, tdmpc.is_run, tdmpc.read_layout,
                        policy=tdmpc.planner_policy, make_env=tdmpc.make_env),
}
WHOLE_MODEL_KEYS = ("sizes", "action_spec", "obs_shape", "env_id")
# Bounds of every size in a config.json: far above any model of this library, far below one whose layers would not
# fit in memory. The shapes a config builds are then compared with the weights' before any tensor is allocated.
MAX_SIZE = 1 << 16
MAX_DEPTH = 64  # layer and stage counts: each one is a loop that builds modules
DEPTH_KEYS = ("layers", "stages")
ACTION_KINDS = ("discrete", "continuous")


@dataclass
class Pretrained:
    """A loaded model: its world model, its components by name, and what it was trained on."""

    family: str
    world_model: WorldModel | None  # None only for a World Models run that has trained V alone so far
    components: dict[str, nn.Module]
    action_spec: ActionSpec
    obs_shape: tuple[int, ...]
    env_id: str
    env_options: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def policy(self, *, sample: bool = False, seed: int | None = None) -> Policy:
        """The model acting in a real env (C, or the actor's mode; ``sample=True`` samples); random without one.

        A family without a head acts its own way (PETS: CEM-MPC with the run's planner settings, ``seed`` its seed).
        """
        family = FAMILIES[self.family]
        if family.policy is not None:
            return family.policy(self.world_model, self.config, seed=seed)
        head = family.head(self.components, self.config, sample=sample)
        if head is None:
            return RandomPolicy(self.action_spec, seed=seed)
        return ModelPolicy(self.world_model, head)


def resolve(name_or_path: str | Path) -> Path:
    """A path as given if it exists, else the shipped model of that name; a one-line error otherwise."""
    path = Path(name_or_path)
    if path.exists():
        return path
    found = find_shipped(str(name_or_path))  # NAME or checkpoints/NAME
    if found is not None:
        return found
    roots = ", ".join(map(str, shipped_roots()))
    raise FileNotFoundError(f"{name_or_path}: no such file or directory, and no shipped model of that name in {roots} "
                            f"(shipped: {shipped_names() or 'none found there'}; set WM_CHECKPOINTS=DIR to add one)")


def family_and_root(path: Path) -> tuple[str, Path]:
    """Which family a path holds and the directory (or .ckpt) its layout is read from."""
    for name, family in FAMILIES.items():
        if family.is_run(path):
            return name, path
    if (path / "config.json").is_file():
        config = read_config(path)
        name = config.get("family")
        if name not in FAMILIES:
            raise CheckpointError(f"{path / 'config.json'}: family {name!r}; expected one of {sorted(FAMILIES)}")
        if "kind" in config:  # one stage directory of a run: read the whole run
            if not FAMILIES[name].is_run(path.parent):
                raise CheckpointError(f"{path}: a single {config['kind']!r} stage directory outside a run; load the "
                                      f"run directory, or export it with export_from_run")
            return name, path.parent
        return name, path
    raise FileNotFoundError(f"{path}: holds no config.json, vae/, checkpoints/last.ckpt or model/; "
                            "not a saved world model")


def load(name_or_path: str | Path, device: str | torch.device = "cpu", *, allow_unverified: bool = False) -> Pretrained:
    """Any family's model from a shipped name, a whole-model directory or a training run (see the module doc).

    ``allow_unverified``: also load weights whose ``config.json`` records no digest (a warning line says so).
    """
    name, root = family_and_root(resolve(name_or_path))
    with allowing_unverified(allow_unverified):  # a run's layout reads several stage directories
        config, tensors = FAMILIES[name].read_layout(root)
    return assemble(name, config, tensors, device=device, path=root)


def _source(where: Path | str, field_name: str = "") -> Path | str:
    """The file a field of an assembled config came from: a World Models run keeps each stage's sizes in its own
    ``STAGE/config.json``, a whole model everything in ``DIR/config.json``; else the run directory or ``.ckpt``."""
    where = Path(where)
    stage = where / field_name.split(".")[1] / "config.json" if field_name.startswith("sizes.") else None
    if stage is not None and stage.is_file():
        return stage
    return where / "config.json" if where.is_dir() and (where / "config.json").is_file() else where


def check_sizes(config: Mapping[str, Any], where: Path | str) -> None:
    """Every size the modules are built with is an integer from 1 to :data:`MAX_SIZE` (:data:`MAX_DEPTH` for a layer
    count); an edited ``config.json`` (``"abc"``, ``-3``, ``true``, ``10**9``) is a one-line :class:`CheckpointError`
    naming the file and the field, not a traceback from a layer's constructor or an allocation of terabytes.

    Checked: each entry of ``sizes`` (nested per component; ``kind`` names a controller), of ``obs_shape`` and the
    ``action_spec``, and Dreamer's agent ``config`` copy of each size (its modules are built from that copy).
    """
    sizes = config.get("sizes") if isinstance(config.get("sizes"), dict) else {}
    fields: dict[str, Any] = {f"obs_shape[{i}]": v for i, v in enumerate(config.get("obs_shape") or [])}
    for key, value in sizes.items():
        nested = value.items() if isinstance(value, dict) else [("", value)]
        fields.update({f"sizes.{key}" + (f".{inner}" if inner else ""): v for inner, v in nested if inner != "kind"})
    agent = config.get("config") if isinstance(config.get("config"), dict) else {}
    fields.update({f"config.{key}": agent[key] for key in sizes if key in agent})
    spec = config.get("action_spec")
    if not isinstance(spec, dict):
        raise CheckpointError(f"{_source(where)}: action_spec is {spec!r}, not an object with kind and dim; restore "
                              "the file (or export the run again)")
    fields["action_spec.dim"] = spec.get("dim")
    for field_name, value in fields.items():
        limit = MAX_DEPTH if field_name.rsplit(".", 1)[-1] in DEPTH_KEYS else MAX_SIZE
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise CheckpointError(f"{_source(where, field_name)}: {field_name} is {value!r}, not an integer from 1 to "
                                  f"{limit}; restore the file (or export the run again)")
    if spec.get("kind") not in ACTION_KINDS:
        raise CheckpointError(f"{_source(where)}: action_spec.kind is {spec.get('kind')!r}, not one of "
                              f"{list(ACTION_KINDS)}; restore the file (or export the run again)")
    bounds = [spec.get("low", []), spec.get("high", [])]
    if spec["kind"] == "continuous" and not all(isinstance(b, list) and len(b) == spec["dim"] for b in bounds):
        raise CheckpointError(f"{_source(where)}: action_spec low / high are {bounds}, not {spec['dim']} numbers each; "
                              "restore the file (or export the run again)")


def check_buildable(name: str, config: Mapping[str, Any], tensors: Mapping[str, Mapping[str, torch.Tensor]],
                    where: Path | str) -> None:
    """The weights are ``name``'s components and the modules ``config`` builds have exactly their shapes, checked on
    the meta device (no memory): an edited family or size is one line naming the file, never a traceback."""
    family, source = FAMILIES[name], _source(where)
    if not tensors or set(tensors) - set(family.components):
        owner = next((n for n, f in FAMILIES.items() if tensors and set(tensors) <= set(f.components)), None)
        raise CheckpointError(f"{source}: family {name!r}, but the weights hold components {sorted(tensors)}"
                              + (f" (a {owner!r} model)" if owner else "") + f", and a {name!r} model is made of "
                              f"{list(family.components)}; restore the family field (or export the run again)")
    try:
        with torch.device("meta"):
            shells = family.build(config)
        for component, module in shells.items():
            if component in tensors:
                load_into(module, tensors[component], component=component, check_only=True)
    except CheckpointError as error:
        raise CheckpointError(f"{source}: its sizes do not build the weights' shapes ({error}); restore the file (or "
                              "export the run again)") from None
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{source}: its sizes do not build a {name} model ({text[:200]}); restore the file "
                              "(or export the run again)") from None


def assemble(name: str, config: dict[str, Any], tensors: Mapping[str, Mapping[str, torch.Tensor]], *,
             device: str | torch.device = "cpu", path: Path | None = None) -> Pretrained:
    """Build the family's modules from ``config``, fill them with ``tensors`` (shapes must match exactly)."""
    where = path if path is not None else "checkpoint"
    missing = [key for key in WHOLE_MODEL_KEYS if key not in config]
    if missing:
        raise CheckpointError(f"{where}: config lacks {missing}; not a whole {name} model (a single stage directory? "
                              f"load its run, or export it with export_from_run)")
    check_sizes(config, where)
    check_buildable(name, config, tensors, where)
    family = FAMILIES[name]
    components = family.build(config)
    for component, module in components.items():
        if component not in tensors:
            raise CheckpointError(f"{where}: no {component!r} component (has {sorted(tensors)})")
        load_into(module, tensors[component], component=component)
        module.to(device).eval()
    spec = ActionSpec.from_dict(config["action_spec"])
    frames = len(config["obs_shape"]) == 3  # (H, W, C): the pixel factory's image size; vector envs take none
    options = {**({"image_size": int(config["obs_shape"][0])} if frames else {}), **config.get("env_options", {})}
    return Pretrained(family=name, world_model=family.world_model(components, config), components=components,
                      action_spec=spec, obs_shape=tuple(config["obs_shape"]), env_id=config["env_id"],
                      env_options=options, config=config, path=path)
