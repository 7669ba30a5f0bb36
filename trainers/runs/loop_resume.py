"""Exact resume of the plain-loop runs (``wm pets``, ``wm mbpo``, ``wm tdmpc``) after a SIGKILL at any moment.

The loops checkpoint between two episodes of their one env, where nothing lives in the env but what its next
reset makes, and every episode starts from a reset seeded by ``(seed, episode index)``
(:func:`worldmodels.data.collect.resume_seed`), in an uninterrupted run as in a resumed one::

    ... step step step [episode n-1 ends] -> terminal row recorded, env reset seeded (seed, n), fresh policy carry
                                          -> checkpoint, when --checkpoint-every env steps are due
    resume: rebuild the loop, load the checkpoint, reset the env seeded (seed, n): the next draws are the same

A checkpoint is ``RUN_DIR/resume/``: ``tensors-<episodes>.safetensors`` (weights, optimiser moments, replay
contents, the torch generators' states) and ``state.json`` (counters, curves, numpy / python RNG states, the
tensors' file name and SHA-256), each written to a temp file and renamed. ``state.json`` is written last and is
the commit: a kill before it leaves the previous checkpoint in force (an orphaned tensor file is removed by the
next save). Random streams are saved as states rather than re-derived, so a checkpoint's place never changes
what the run draws: a killed run ends bit-identical to one that was not (CPU, one process, same versions).
"""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from worldmodels.checkpoint import file_sha256
from worldmodels.config import read_json, save_json_atomic, writing
from worldmodels.data.collect import resume_seed
from worldmodels.driver import Driver

RESUME_DIR = "resume"
STATE_NAME = "state.json"


def begin_episodes(driver: Driver, seed: int, *, episodes: int = 0, steps: int = 0) -> None:
    """Start the driver's one env at episode ``episodes`` (0: a new run; more: a resumed one at its counters)."""
    driver.reset(seed=resume_seed(seed, episodes))
    driver.episodes, driver.steps = episodes, steps


def next_episode(driver: Driver, seed: int) -> bool:
    """After a :meth:`Driver.step`: when env 0's current row ends its episode, record that row (the hooks see the
    episode end) and start episode ``driver.episodes`` seeded ``(seed, index)``, with a fresh policy carry.
    Returns whether an episode ended: the loop is then at a point it can checkpoint."""
    if not bool(driver.done[0]):
        return False
    driver.reset_envs(np.ones(1, bool), [resume_seed(seed, driver.episodes + 1)])  # recording it counts the episode
    driver.clear_carry()  # nothing of the last episode reaches the next (nor a checkpoint)
    return True


def is_due(env_steps: int, last: int, every: int) -> bool:
    """Checkpoint at the first episode end at least ``every`` env steps after the last checkpoint."""
    return env_steps - last >= every


# ------------------------------------------------------------------ state pieces: tensors + JSON


def module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}


def load_module(prefix: str, module: torch.nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    start = f"{prefix}."
    module.load_state_dict({k[len(start):]: v for k, v in tensors.items() if k.startswith(start)}, strict=True)


def optimizer_state(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser's moments as tensors ``PREFIX.<param index>.<key>`` and its param groups as JSON."""
    saved = optimizer.state_dict()
    tensors = {f"{prefix}.{index}.{key}": value.detach().cpu().clone().contiguous()
               for index, state in saved["state"].items() for key, value in state.items()}
    return tensors, {"param_groups": saved["param_groups"]}


def load_optimizer(prefix: str, optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor],
                   record: dict[str, Any]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    start = f"{prefix}."
    for name, value in tensors.items():
        if name.startswith(start):
            index, key = name[len(start):].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": record["param_groups"]})


def rng_state(generators: Mapping[str, torch.Generator | None],
              numpy_generators: Mapping[str, np.random.Generator] = {}) -> tuple[dict[str, torch.Tensor], dict]:
    """Every stream a loop draws from: torch's global one and ``generators`` (tensors ``rng.<name>``), numpy's
    global and ``numpy_generators`` and python's ``random`` (JSON)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    tensors.update({f"rng.{name}": g.get_state() for name, g in generators.items() if g is not None})
    legacy = np.random.get_state()
    record = {"numpy_global": [legacy[0], np.asarray(legacy[1]).tolist(), *legacy[2:]],
              "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
              "numpy": {name: g.bit_generator.state for name, g in numpy_generators.items()}}
    return tensors, record


def load_rng(tensors: Mapping[str, torch.Tensor], record: dict, generators: Mapping[str, torch.Generator | None],
             numpy_generators: Mapping[str, np.random.Generator] = {}) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    for name, generator in generators.items():
        if generator is not None:
            generator.set_state(tensors[f"rng.{name}"])
    name, keys, *rest = record["numpy_global"]
    np.random.set_state((name, np.asarray(keys, np.uint32), *rest))
    version, internal, gauss = record["python"]
    random.setstate((version, tuple(internal), gauss))
    for name, generator in numpy_generators.items():
        generator.bit_generator.state = record["numpy"][name]


def saved_generator(tensors: Mapping[str, torch.Tensor], name: str) -> torch.Generator | None:
    """A CPU generator in the state saved as ``rng.<name>`` (``None`` when none was saved: it did not exist yet)."""
    if f"rng.{name}" not in tensors:
        return None
    generator = torch.Generator()
    generator.set_state(tensors[f"rng.{name}"])
    return generator


# ------------------------------------------------------------------ the checkpoint on disk


def save_checkpoint(run_dir: str | Path, tensors: Mapping[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Write ``RUN_DIR/resume`` (module docstring): the tensors, then ``state.json`` naming them (the commit)."""
    folder = Path(run_dir) / RESUME_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = f"tensors-{int(state['episodes']):09d}{'-final' if state.get('finished') else ''}.safetensors"
    path, tmp = folder / name, folder / f".{name}.tmp"
    with writing(path):
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    save_json_atomic(folder / STATE_NAME, {**state, "tensors": name, "sha256": file_sha256(path)})
    for old in folder.glob("tensors-*.safetensors"):  # the checkpoint this one replaced, or a killed save's orphan
        if old.name != name:
            old.unlink(missing_ok=True)


def load_checkpoint(run_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The last committed checkpoint of ``run_dir`` as ``(tensors, state)``, or ``None`` (a new run)."""
    folder = Path(run_dir) / RESUME_DIR
    if not (folder / STATE_NAME).is_file():
        return None
    state = read_json(folder / STATE_NAME, what="the run's resume state")
    path = folder / state["tensors"]
    if not path.is_file() or file_sha256(path) != state["sha256"]:
        raise ValueError(f"{path}: missing or not the file {folder / STATE_NAME} names (its SHA-256 differs); "
                         f"remove {folder} to start the run over")
    return load_file(str(path)), state


def remove_checkpoint(run_dir: str | Path) -> None:
    """Drop what :func:`save_checkpoint` wrote in ``RUN_DIR/resume`` once the run's results are written (a finished
    run is told by results.json); the folder goes only if nothing else is left in it."""
    folder = Path(run_dir) / RESUME_DIR
    for path in [folder / STATE_NAME, *folder.glob("tensors-*.safetensors"), *folder.glob(".tensors-*.safetensors.tmp")]:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # absent, or holding a file this module never wrote
        folder.rmdir()


__all__ = ["RESUME_DIR", "begin_episodes", "is_due", "load_checkpoint", "load_module", "load_optimizer", "load_rng",
           "module_tensors", "next_episode", "optimizer_state", "remove_checkpoint", "rng_state", "save_checkpoint",
           "saved_generator"]
