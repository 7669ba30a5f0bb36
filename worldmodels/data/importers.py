"""Recorded episodes -> an episode store: a directory of ``.npz`` files, or a Minari dataset.

Both sources give episodes in the transition layout (:mod:`worldmodels.data.validate`: ``T`` steps,
``T + 1`` observations, ``reward[t]`` for ``action[t]``), which :func:`~worldmodels.data.validate.to_rows`
turns into the store's rows. The directory format::

    DIR/dataset.json   {"action_spec": {"kind": "discrete", "dim": 3}}            (or "continuous" + dim, low, high)
                       optional "env_id": the env the data came from (default "import:<DIR name>")
    DIR/*.npz          one episode per file, imported in sorted name order, with the arrays
                       obs (T+1, H, W, 3) uint8, action (T,) int64 | (T, A) float32, reward (T,) float32,
                       terminated (T,) bool, truncated (T,) bool

A Minari dataset is read with minari's own API: ``minari.load_dataset(ID)`` (from ``MINARI_DATASETS_PATH``,
never downloaded) or ``minari.MinariDataset(PATH)``; its observations must be a Box of ``(H, W, 3)`` uint8 images.

:func:`import_episodes` validates EVERY episode before writing any (a bad episode refuses the whole
import with :class:`~worldmodels.data.validate.ImportRefused`), then writes them into
``OUT/.tmp-import/`` and publishes that store into ``OUT`` with renames, ``store.json`` last: a
killed import leaves no store at ``OUT``, only a staging directory the next import removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from worldmodels.data.episode_files import fsync_dir
from worldmodels.data.store import EpisodeStore, read_spec
from worldmodels.data.validate import (MISSING_FLAGS, ImportRefused, Problem, check_episode, check_frame_shape,
                                       to_rows)
from worldmodels.envs.spaces import ActionSpec
from worldmodels.envs.wrappers import resize_frame
from worldmodels.locking import LOCK_NAME, exclusive_lock

_STAGING = ".tmp-import"
Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class EpisodeSource:
    """Recorded episodes: what they share, and a re-iterable stream of ``(name, arrays)`` in transition layout."""

    env_id: str
    action_spec: ActionSpec
    count: int
    episodes: Callable[[], Iterator[tuple[str, Arrays]]]


@dataclass(frozen=True)
class ImportStats:
    episodes: int
    frames: int
    mean_return: float
    seconds: float
    out: str

    def to_dict(self) -> dict:
        return asdict(self)


def npz_source(directory: str | Path, *, env_id: str = "") -> EpisodeSource:
    """The ``.npz`` episodes of ``directory`` (format in the module docstring); one-line errors for a bad directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"--source {str(directory)!r} is not a directory of .npz episodes")
    meta_path = directory / "dataset.json"
    try:
        meta = json.loads(meta_path.read_text())
        action_spec = ActionSpec.from_dict(meta["action_spec"])
    except FileNotFoundError:
        raise FileNotFoundError(f"{str(meta_path)!r} is missing; write {{\"action_spec\": {{\"kind\": \"discrete\", "
                                "\"dim\": N}} (or kind \"continuous\" with dim, low, high) next to the .npz files") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{str(meta_path)!r} needs \"action_spec\": {{\"kind\": \"discrete\"|\"continuous\", \"dim\": N, "
                         f"...}}; could not read it ({type(error).__name__}: {error})") from None
    if action_spec.kind not in ("discrete", "continuous") or action_spec.dim < 1:
        raise ValueError(f"{str(meta_path)!r}: action_spec kind must be 'discrete' or 'continuous' with dim >= 1, "
                         f"got {action_spec.kind!r} dim {action_spec.dim}")
    files = sorted(directory.glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"--source {str(directory)!r} holds no .npz episode files")

    def episodes() -> Iterator[tuple[str, Arrays]]:
        for path in files:
            try:
                with np.load(path, allow_pickle=False) as data:
                    yield path.name, {key: data[key] for key in data.files}
            except (OSError, ValueError) as error:  # not an npz, or pickled object arrays
                yield path.name, {"_unreadable": np.asarray(f"{type(error).__name__}: {error}")}

    return EpisodeSource(env_id or str(meta.get("env_id") or f"import:{directory.resolve().name}"), action_spec,
                         len(files), episodes)


def minari_source(dataset: str, *, env_id: str = "") -> EpisodeSource:
    """A local Minari dataset, by id (under ``MINARI_DATASETS_PATH``) or by path, read with minari's API."""
    import gymnasium as gym
    import minari  # deferred: only `wm import --format minari` needs it (h5py / pyarrow behind it)

    path = Path(dataset)
    try:
        if (path / "data" / "metadata.json").exists():
            data = minari.MinariDataset(str(path / "data"))
        elif (path / "metadata.json").exists():
            data = minari.MinariDataset(str(path))
        else:
            data = minari.load_dataset(dataset, download=False)
    except FileNotFoundError:
        root = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")
        raise FileNotFoundError(f"no local Minari dataset {dataset!r} under {root!r} (MINARI_DATASETS_PATH) and no such "
                                "dataset directory; `minari list local` shows the ids") from None
    except ImportError as error:
        raise ValueError(f"Minari dataset {dataset!r} needs a storage backend: {error} (pip install 'minari[hdf5]')") from None
    space = data.spec.observation_space
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.shape[-1] == 3 and space.dtype == np.uint8):
        raise ValueError(f"Minari dataset {dataset!r} has observation space {space}; wm import needs Box images "
                         "(H, W, 3) uint8")
    action_spec = ActionSpec.from_space(data.spec.action_space)
    recorded = data.spec.env_spec.id if data.spec.env_spec is not None else f"minari:{data.spec.dataset_id}"

    def episodes() -> Iterator[tuple[str, Arrays]]:
        for episode in data.iterate_episodes():
            yield f"minari-{episode.id}", {"obs": episode.observations, "action": episode.actions,
                                           "reward": episode.rewards, "terminated": episode.terminations,
                                           "truncated": episode.truncations}

    return EpisodeSource(env_id or recorded, action_spec, int(data.total_episodes), episodes)


def _prepared(name: str, arrays: Arrays, source: EpisodeSource, *, image_size: int,
              mark_truncated: bool) -> tuple[Arrays | None, list[Problem]]:
    """Resized, flag-completed transition arrays of one episode, or ``None`` and its problems."""
    if "_unreadable" in arrays:
        return None, [Problem(name, "file", f"cannot be read as .npz ({arrays['_unreadable']})",
                              "save it with np.savez(path, obs=..., action=..., reward=..., terminated=..., truncated=...)")]
    arrays = dict(arrays)
    problems = check_episode(name, arrays, source.action_spec)
    unflagged = [p for p in problems if p.field == MISSING_FLAGS]  # only raised when both flags are well-formed
    if mark_truncated and unflagged:
        problems = [p for p in problems if p.field != MISSING_FLAGS]
        arrays["truncated"] = np.r_[np.asarray(arrays["truncated"], dtype=bool)[:-1], True]
    if problems:
        return None, problems
    if image_size:
        arrays["obs"] = np.stack([resize_frame(frame, image_size) for frame in arrays["obs"]])  # (T+1, S, S, 3)
    return arrays, []


def validate_source(source: EpisodeSource, *, image_size: int = 0,
                    mark_truncated: bool = False) -> tuple[int, int, int]:
    """Check every episode (nothing written); the store's frame shape ``(H, W, 3)``, or :class:`ImportRefused`."""
    problems: list[Problem] = []
    frame_shape: tuple[int, int, int] | None = None
    for name, raw in source.episodes():
        arrays, found = _prepared(name, raw, source, image_size=image_size, mark_truncated=mark_truncated)
        if arrays is not None:
            frame_shape = frame_shape or tuple(arrays["obs"].shape[1:])  # type: ignore[assignment]
            found = check_frame_shape(name, arrays["obs"], frame_shape)
        problems += found
    if problems:
        raise ImportRefused(problems, source.count)
    assert frame_shape is not None  # a source holds at least one episode
    return frame_shape


def import_episodes(source: EpisodeSource, out: str | Path, *, image_size: int = 0,
                    mark_truncated: bool = False) -> ImportStats:
    """Validate every episode, then write them all into the NEW store ``out`` (module docstring: all or nothing)."""
    out = Path(out)
    start = time.perf_counter()
    created = not out.exists()
    try:
        returns, frames = _import_locked(source, out, image_size=image_size, mark_truncated=mark_truncated)
    except ImportRefused:
        if created:  # refused before writing: leave no trace, not even the lock's directory
            (out / LOCK_NAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return ImportStats(len(returns), frames, float(np.mean(returns)), time.perf_counter() - start, str(out))


def _import_locked(source: EpisodeSource, out: Path, *, image_size: int, mark_truncated: bool) -> tuple[list[float], int]:
    """Under ``out``'s lock: validate all, write all into the staging store, publish it; the returns and frame count."""
    with exclusive_lock(out, what="episode store"):
        if read_spec(out) is not None:
            raise ValueError(f"--out {str(out)!r} already holds an episode store; import into a new directory")
        frame_shape = validate_source(source, image_size=image_size, mark_truncated=mark_truncated)
        staging = out / _STAGING
        # Leftovers of a killed import (no store.json yet, and we hold the lock): start clean.
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(out / "episodes", ignore_errors=True)
        (out / "index.json").unlink(missing_ok=True)
        store = EpisodeStore.create(staging, env_id=source.env_id, obs_shape=frame_shape, action_spec=source.action_spec)
        frames, returns = 0, []
        for name, raw in source.episodes():
            arrays, _ = _prepared(name, raw, source, image_size=image_size, mark_truncated=mark_truncated)
            rows = to_rows(arrays, source.action_spec)
            store.add_episode(**rows)
            frames += len(rows["obs"])
            returns.append(float(rows["reward"].sum(dtype=np.float64)))
        # Publish: episodes and index first, store.json last (its presence is what makes OUT a store).
        os.rename(staging / "episodes", out / "episodes")
        os.rename(staging / "index.json", out / "index.json")
        os.rename(staging / "store.json", out / "store.json")
        fsync_dir(out)
        shutil.rmtree(staging)
    return returns, frames
