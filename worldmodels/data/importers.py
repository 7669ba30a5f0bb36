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
killed import leaves no store at ``OUT``, only a staging directory the next import removes. ``OUT`` must be new
or empty: an import never removes or replaces a file it did not create (it once deleted a Dreamer run dir's
replay episodes), so the only leftovers it clears are recognisably its own (:func:`_survey`). After publishing
it re-opens the store and fails unless every episode it reports reads back.
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

from worldmodels.config import writing
from worldmodels.data.episode_files import fsync_dir
from worldmodels.data.source_files import read_npz, require_regular_file
from worldmodels.data.store import EpisodeStore, ensure_writable_dir
from worldmodels.data.validate import (MISSING_FLAGS, ImportRefused, Problem, check_episode, check_frame_shape,
                                       check_import_spec, to_rows)
from worldmodels.envs.spaces import ActionSpec
from worldmodels.envs.wrappers import resize_frame
from worldmodels.locking import LOCK_NAME, exclusive_lock

_STAGING = ".tmp-import"
_MARKER = "WRITTEN-BY-WM-IMPORT"  # in the staging directory from its creation: only a directory carrying it is removed
_PUBLISHING = "PUBLISHING"  # written before the first rename: OUT's episodes/ and index.json are then the import's
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
    if meta_path.exists():  # stat only: reading a FIFO would block
        require_regular_file(meta_path, "dataset.json must be a plain JSON file")
    try:
        meta = json.loads(meta_path.read_text())
        action_spec = ActionSpec.from_dict(meta["action_spec"])
    except FileNotFoundError:
        raise FileNotFoundError(f"{str(meta_path)!r} is missing; write {{\"action_spec\": {{\"kind\": \"discrete\", "
                                "\"dim\": N}} (or kind \"continuous\" with dim, low, high) next to the .npz files") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{str(meta_path)!r} needs \"action_spec\": {{\"kind\": \"discrete\"|\"continuous\", \"dim\": N, "
                         f"...}}; could not read it ({type(error).__name__}: {error})") from None
    check_import_spec(action_spec, repr(str(meta_path)))
    recorded = meta.get("env_id", "")
    if not isinstance(recorded, str):
        raise ValueError(f"{str(meta_path)!r}: env_id must be a string (the env the data came from), got {recorded!r:.80}")
    files = sorted(directory.glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"--source {str(directory)!r} holds no .npz episode files")
    for path in files:  # before any is opened: np.load of a FIFO blocks forever
        require_regular_file(path, "each .npz must be a plain file holding one episode (np.savez)")

    def episodes() -> Iterator[tuple[str, Arrays]]:
        for path in files:
            try:
                arrays = read_npz(path)  # headers checked before any array is read (3 TiB declared: refused)
            except ValueError as error:  # truncated, not an npz, pickled object arrays, a header that lies
                arrays = {"_unreadable": np.asarray(str(error))}
            yield path.name, arrays

    return EpisodeSource(_checked_env_id(env_id or recorded or f"import:{directory.resolve().name}"), action_spec,
                         len(files), episodes)


def _checked_env_id(env_id: str) -> str:
    """The env id a store records (a later command makes that env): one printable line of at most 200 characters."""
    if len(env_id) > 200 or not env_id.isprintable():
        raise ValueError(f"env id {env_id[:80]!r} must be one printable line of at most 200 characters "
                         "(dataset.json env_id, or --env)")
    return env_id


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
        spec, total = data.spec, int(data.total_episodes)  # read here: both parse the metadata and open the data file
        recorded = spec.env_spec.id if spec.env_spec is not None else f"minari:{spec.dataset_id}"
    except FileNotFoundError:
        root = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")
        raise FileNotFoundError(f"no local Minari dataset {dataset!r} under {root!r} (MINARI_DATASETS_PATH) and no such "
                                "dataset directory; `minari list local` shows the ids") from None
    except ImportError as error:
        raise ValueError(f"Minari dataset {dataset!r} needs a storage backend: {error} (pip install 'minari[hdf5]')") from None
    except Exception as error:  # noqa: BLE001 - minari and h5py raise AssertionError, KeyError, OSError, ... on damage
        raise _damaged(dataset, error) from None
    space = spec.observation_space
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.shape[-1] == 3 and space.dtype == np.uint8):
        raise ValueError(f"Minari dataset {dataset!r} has observation space {space}; wm import needs Box images "
                         "(H, W, 3) uint8")
    action_spec = ActionSpec.from_dict(ActionSpec.from_space(spec.action_space).to_dict())  # from_dict's bounds
    check_import_spec(action_spec, f"Minari dataset {dataset!r}")

    def episodes() -> Iterator[tuple[str, Arrays]]:
        stream = data.iterate_episodes()
        while True:
            try:
                episode = next(stream)
            except StopIteration:
                return
            except Exception as error:  # noqa: BLE001 - a truncated data file fails here, in h5py
                raise _damaged(dataset, error) from None
            yield f"minari-{episode.id}", {"obs": episode.observations, "action": episode.actions,
                                           "reward": episode.rewards, "terminated": episode.terminations,
                                           "truncated": episode.truncations}

    return EpisodeSource(_checked_env_id(env_id or recorded), action_spec, total, episodes)


def _damaged(dataset: str, error: BaseException) -> ValueError:
    detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return ValueError(f"Minari dataset {dataset!r} cannot be read ({detail.splitlines()[0]}); its metadata.json or "
                      "data file is damaged or truncated: recreate it, or copy it again")


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
    if not str(out):  # Path("") is ".": the store would land in the working directory
        raise ValueError("--out is empty; give the directory of the new store, e.g. --out data/imported")
    out = Path(out)
    start = time.perf_counter()
    created = not out.exists() and not out.is_symlink()
    if not created and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is not a directory (a file or a broken link is there); give a new or "
                         "empty directory for the store")
    if not created:
        _refuse_unless_empty(out)  # before the lock file is created: a refused --out is left exactly as it was
    ensure_writable_dir(out)  # a parent that is a file, or no permission: one line
    try:
        returns, frames = _import_locked(source, out, image_size=image_size, mark_truncated=mark_truncated)
    except Exception:
        if created:  # failed before publishing: leave no trace, not even the lock's directory
            (out / LOCK_NAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return ImportStats(len(returns), frames, float(np.mean(returns)), time.perf_counter() - start, str(out))


def _real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _survey(out: Path) -> tuple[list[Path], list[str]]:
    """What ``out`` holds besides its lock: the paths a killed import left (safe to remove), and every other entry.

    Leftovers are recognised, never assumed: a real ``.tmp-import`` directory carrying the marker (or empty); and,
    once that staging carries ``PUBLISHING`` and ``store.json`` was not yet published, ``out``'s ``episodes/``
    (a real directory) and ``index.json``: that import started in a directory holding nothing else (this same
    check) and held the lock until it was killed, so nobody else put them there.
    """
    staging, own = out / _STAGING, []
    if _real_dir(staging) and (_plain_file(staging / _MARKER) or not any(staging.iterdir())):
        own.append(staging)
        if _plain_file(staging / _PUBLISHING) and not (out / "store.json").exists():
            own += [path for path, mine in ((out / "episodes", _real_dir), (out / "index.json", _plain_file))
                    if mine(path)]
    others = sorted(name for name in os.listdir(out) if name != LOCK_NAME and out / name not in own)
    return own, others


def _refuse_unless_empty(out: Path) -> list[Path]:
    """The killed import's leftovers in ``out``; a one-line refusal when it holds anything else."""
    own, others = _survey(out)
    if "store.json" in others:
        raise ValueError(f"--out {str(out)!r} already holds an episode store; import into a new directory")
    if others:
        shown = ", ".join(others[:4]) + (f" and {len(others) - 4} more" if len(others) > 4 else "")
        raise ValueError(f"--out {str(out)!r} is not empty and holds no episode store ({shown}); wm import writes "
                         "only into a new or empty directory and never replaces files it did not create")
    return own


def _remove(paths: list[Path]) -> None:
    for path in paths:  # each one recognised by _survey; rmtree removes links inside, never what they point to
        if _real_dir(path):
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _mark(path: Path) -> None:
    with writing(path), open(path, "x") as handle:  # "x": never someone else's file
        handle.write(f"written by wm import (pid {os.getpid()}); see worldmodels/data/importers.py\n")
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(path.parent)


def _import_locked(source: EpisodeSource, out: Path, *, image_size: int, mark_truncated: bool) -> tuple[list[float], int]:
    """Under ``out``'s lock: validate all, write all into the staging store, publish it; the returns and frame count."""
    with exclusive_lock(out, what="episode store"):
        leftovers = _refuse_unless_empty(out)
        frame_shape = validate_source(source, image_size=image_size, mark_truncated=mark_truncated)
        _remove(leftovers)  # a killed import's, recognised by _survey: start clean
        staging = out / _STAGING
        staging.mkdir()
        try:
            _mark(staging / _MARKER)
            returns, frames = _write_staging(source, staging, frame_shape, image_size=image_size,
                                             mark_truncated=mark_truncated)
            # Publish: episodes and index first, store.json last (its presence is what makes OUT a store).
            _mark(staging / _PUBLISHING)
            for name in ("episodes", "index.json", "store.json"):
                os.rename(staging / name, out / name)
            fsync_dir(out)
        except Exception:
            _remove(_survey(out)[0])  # this invocation's staging and what it published; store.json: nothing
            raise
        shutil.rmtree(staging)
        readable = len(EpisodeStore.open(out))
        if readable != len(returns):  # what the import reports must be what a later command reads
            raise ValueError(f"wrote {len(returns)} episode(s) to {str(out)!r} but {readable} read back (the warnings "
                             "above name the skipped ones); the store is left as it is: remove it before importing again")
    return returns, frames


def _write_staging(source: EpisodeSource, staging: Path, frame_shape: tuple[int, int, int], *, image_size: int,
                   mark_truncated: bool) -> tuple[list[float], int]:
    """Every (already validated) episode of ``source`` as rows of a new store at ``staging``; returns and frames."""
    store = EpisodeStore.create(staging, env_id=source.env_id, obs_shape=frame_shape, action_spec=source.action_spec)
    frames, returns = 0, []
    for name, raw in source.episodes():
        arrays, problems = _prepared(name, raw, source, image_size=image_size, mark_truncated=mark_truncated)
        if arrays is None:  # it passed validation a moment ago: the source changed under the import
            raise ValueError(f"{problems[0]} (the source changed while importing; rerun)")
        rows = to_rows(arrays, source.action_spec)
        store.add_episode(**rows)
        frames += len(rows["obs"])
        returns.append(float(rows["reward"].sum(dtype=np.float64)))
    return returns, frames
