"""The on-disk episode store: one directory of plain ``.npy`` arrays per episode.

Layout and row convention are the contract in DESIGN.md::

    DIR/store.json      {"format", "env_id", "obs_shape", "obs_dtype", "action_spec"}
    DIR/index.json      cache of the episode list (rebuilt from the directories when missing or stale)
    DIR/episodes/ep-000000-<8 hex>/{obs,action,reward,terminated,truncated}.npy + meta.json

    row t:  obs[t]   action[t] (taken at obs[t]; last row zeros)   reward[t] (arriving at obs[t]; row 0 is 0)
            terminated[t] / truncated[t] (set on the last row only)

    obs      (L, H, W, C) uint8 frames        obs_shape [H, W, C], obs_dtype "uint8"
         or  (L, D) float32 vectors           obs_shape [D],       obs_dtype "float32" (the env's own observation)

A store written before vectors existed has no ``obs_dtype``: it holds frames.

An episode is written into ``episodes/.tmp-<name>/`` and renamed into place, so a
killed writer leaves either a whole episode or a ``.tmp-*`` directory that readers
ignore. Writers hold ``DIR/.lock`` (:mod:`worldmodels.locking`; ``wm collect`` and the training
commands take it), so one store never has two writers. Opening checks every episode's arrays
(dtype, shape, length, action range, finite rewards; finite values of vector observations) and skips a bad one
with a warning naming it. Arrays are opened with ``np.load(mmap_mode="r")``: a 1M-frame store is never
read into RAM.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from worldmodels.config import read_json, save_json_atomic, writing
from worldmodels.envs.spaces import ActionSpec
from worldmodels.data.episode_files import (CorruptEpisodeError, check_rows, check_values, content_digest, fsync_dir,
                                             index_text, obs_dtype_for, read_npy_header, save_array, save_text_atomic)
from worldmodels.locking import holds_lock

FORMAT = "worldmodels-episodes/1"
ARRAY_NAMES = ("obs", "action", "reward", "terminated", "truncated")
_TMP_PREFIX = ".tmp-"
# A .tmp-* directory younger than this may belong to a live writer in another process.
_STALE_TMP_SECONDS = 60.0


@dataclass(frozen=True)
class StoreSpec:
    """What every episode in a store shares: the env, the observation shape and dtype, the action encoding.

    ``obs_dtype`` ``""`` is the one ``obs_shape`` implies (:func:`obs_dtype_for`); any other must equal it.
    """

    env_id: str
    obs_shape: tuple[int, ...]  # (H, W, C) frames or (D,) vectors
    action_spec: ActionSpec
    obs_dtype: str = ""

    def __post_init__(self) -> None:
        implied = obs_dtype_for(self.obs_shape)
        if self.obs_dtype and self.obs_dtype != implied:
            raise ValueError(f"obs_dtype {self.obs_dtype!r} does not fit obs_shape {list(self.obs_shape)}; "
                             f"that shape holds {implied}")
        object.__setattr__(self, "obs_dtype", implied)  # frozen: the one place the default is filled in

    @property
    def vector_obs(self) -> bool:
        return len(self.obs_shape) == 1

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "env_id": self.env_id, "obs_shape": list(self.obs_shape),
                "obs_dtype": self.obs_dtype, "action_spec": self.action_spec.to_dict()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "StoreSpec":
        return cls(str(values["env_id"]), tuple(int(v) for v in values["obs_shape"]),
                   ActionSpec.from_dict(values["action_spec"]), str(values.get("obs_dtype", "")))


@dataclass(frozen=True)
class EpisodeInfo:
    """One row of the index: enough to plan chunks without opening any array."""

    name: str
    length: int
    episode_return: float
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "length": self.length, "return": self.episode_return, "seed": self.seed}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "EpisodeInfo":
        return cls(str(values["name"]), int(values["length"]), float(values["return"]), values.get("seed"))


@dataclass(frozen=True)
class Episode:
    """The arrays of one stored episode, memory-mapped read-only; every array has leading length ``L``."""

    name: str
    obs: np.ndarray  # (L, H, W, C) uint8 frames or (L, D) float32 vectors
    action: np.ndarray  # (L,) int64 or (L, A) float32
    reward: np.ndarray  # (L,) float32
    terminated: np.ndarray  # (L,) bool
    truncated: np.ndarray  # (L,) bool

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    @property
    def is_first(self) -> np.ndarray:
        first = np.zeros(len(self), dtype=bool)
        first[0] = True
        return first


def load_episode(directory: str | Path) -> Episode:
    """Memory-map the arrays of one episode directory (no index, no validation)."""
    directory = Path(directory)
    arrays = {key: np.load(directory / f"{key}.npy", mmap_mode="r", allow_pickle=False) for key in ARRAY_NAMES}
    return Episode(name=directory.name, **arrays)


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and prove it is writable with a probe file; one-line error otherwise.

    Called before anything expensive (making envs, collecting), so a bad ``--out`` fails first.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise PermissionError(f"cannot write to store directory {str(path)!r}: {error.strerror or error}") from None
    return path


def read_spec(root: str | Path) -> StoreSpec | None:
    """The spec in ``root/store.json``, or ``None`` when ``root`` holds no store yet."""
    path = Path(root) / "store.json"
    if not path.exists():
        return None
    values = read_json(path, what="an episode store's spec")
    if values.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} has format {values.get('format')!r}; expected {FORMAT!r}")
    try:
        return StoreSpec.from_dict(values)
    except (KeyError, TypeError, ValueError) as error:  # an edited file: name it and the field
        name = f"field {error} is missing" if isinstance(error, KeyError) else str(error)
        raise ValueError(f"{path}: {name}, not what wm collect writes (env_id, obs_shape [H, W, C] or [D], "
                         "obs_dtype, action_spec); restore the file") from None


def check_compatible(existing: StoreSpec, wanted: StoreSpec, root: str | Path) -> None:
    """One-line error when an existing store was collected from another env, observation shape or action space."""
    for field, have, want in (("env id", existing.env_id, wanted.env_id),
                              ("obs shape", existing.obs_shape, wanted.obs_shape),
                              ("obs dtype", existing.obs_dtype, wanted.obs_dtype),
                              ("action spec", existing.action_spec, wanted.action_spec)):
        if have != want:
            raise ValueError(f"store {str(root)!r} holds {field} {have!r} but this run wants {want!r}; "
                             "use another --out directory")


class EpisodeStore:
    """A directory of episodes; ``create`` to write (creating or appending), ``open`` to read."""

    def __init__(self, root: str | Path, spec: StoreSpec, *, clean_tmp: bool = False) -> None:
        self.root, self.spec, self.episode_dir = Path(root), spec, Path(root) / "episodes"
        self._episodes: list[EpisodeInfo] = []
        self._next: int | None = None  # the next episode index once listed (one writer: the store's lock)
        self._json: dict[EpisodeInfo, str] = {}  # index.json's line of each entry
        self._scan(clean_tmp=clean_tmp)

    @classmethod
    def create(cls, root: str | Path, *, env_id: str, obs_shape: tuple[int, ...], action_spec: ActionSpec) -> "EpisodeStore":
        """Open ``root`` for writing, creating the store if it is new; a different existing spec is an error."""
        root = ensure_writable_dir(root)  # before anything else touches the directory
        wanted = StoreSpec(env_id, tuple(int(v) for v in obs_shape), action_spec)
        existing = read_spec(root)
        if existing is not None:
            check_compatible(existing, wanted, root)
        else:
            (root / "episodes").mkdir(exist_ok=True)
            save_json_atomic(root / "store.json", wanted.to_dict())
        return cls(root, wanted, clean_tmp=True)

    @classmethod
    def open(cls, root: str | Path) -> "EpisodeStore":
        """Open an existing store for reading."""
        spec = read_spec(root)
        if spec is None:
            raise FileNotFoundError(f"no episode store at {str(root)!r} (missing store.json); collect one with `wm collect`")
        return cls(root, spec)

    # ------------------------------------------------------------------ reading

    @property
    def episodes(self) -> list[EpisodeInfo]:
        return list(self._episodes)

    @property
    def names(self) -> list[str]:
        return [info.name for info in self._episodes]

    @property
    def num_frames(self) -> int:
        return sum(info.length for info in self._episodes)

    def __len__(self) -> int:
        return len(self._episodes)

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.root)!r}, env_id={self.spec.env_id!r}, episodes={len(self)}, frames={self.num_frames})"

    def load(self, name: str | int) -> Episode:
        """Memory-mapped arrays of one episode, by name or by position in :attr:`episodes`."""
        if isinstance(name, int):
            name = self._episodes[name].name
        return load_episode(self.episode_dir / name)

    def info(self, name: str) -> EpisodeInfo:
        for info in self._episodes:
            if info.name == name:
                return info
        raise KeyError(f"no episode {name!r} in store {str(self.root)!r}")

    # ------------------------------------------------------------------ writing

    def add_episode(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, terminated: np.ndarray,
                    truncated: np.ndarray, *, seed: int | None = None, quick_digest: bool = False) -> str:
        """Write one episode atomically (temp directory + rename); its name (``quick_digest``: :func:`content_digest`)."""
        arrays = self._check_arrays(obs, action, reward, terminated, truncated)
        length, episode_return = int(arrays["obs"].shape[0]), float(arrays["reward"].sum(dtype=np.float64))
        index = self._next_index()
        self._next = index + 1  # taken even if this write fails, as the .tmp-* directory it leaves took it
        # Content-derived suffix: the same seeded collection produces the same names.
        name = f"ep-{index:06d}-{content_digest([arrays[k] for k in ARRAY_NAMES], quick=quick_digest)}"

        self.episode_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.episode_dir / f"{_TMP_PREFIX}{name}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for key in ARRAY_NAMES:
            save_array(tmp / f"{key}.npy", arrays[key])
        meta = {"length": length, "return": episode_return, "env_id": self.spec.env_id, "seed": seed}
        with writing(tmp / "meta.json"), open(tmp / "meta.json", "w") as handle:  # a full disk: one line naming it
            json.dump(meta, handle)
            handle.flush()
            os.fsync(handle.fileno())
        fsync_dir(tmp)
        os.rename(tmp, self.episode_dir / name)
        fsync_dir(self.episode_dir)

        self._episodes.append(EpisodeInfo(name, length, episode_return, seed))
        self._write_index()
        return name

    def set_aside_after(self, count: int) -> list[str]:
        """Move episodes past the first ``count`` to ``ROOT/set_aside/`` and drop them from the store.

        A resumed online run restarts from its last checkpoint, which knew only ``count``
        episodes; the ones written after it would otherwise be stored twice (once now, once
        when the resumed run replays those env steps). Nothing is deleted: the directories are
        moved aside whole, and a warning names them.
        """
        extra = self._episodes[count:]
        if not extra:
            return []
        aside = self.root / "set_aside"
        aside.mkdir(exist_ok=True)
        for info in extra:
            target, copy = aside / info.name, 0
            while target.exists():  # set aside before: a resume replays the same episode under the same name
                copy += 1
                target = aside / f"{info.name}.{copy}"
            os.rename(self.episode_dir / info.name, target)
        fsync_dir(self.episode_dir)
        self._episodes, self._next = self._episodes[:count], None  # set-aside indices are free again
        self._write_index()
        names = [info.name for info in extra]
        warnings.warn(f"store {str(self.root)!r}: set aside {len(names)} episode(s) written after the checkpoint "
                      f"being resumed ({', '.join(names)}) to {str(aside)!r}", RuntimeWarning, stacklevel=2)
        return names

    def _check_arrays(self, obs, action, reward, terminated, truncated) -> dict[str, np.ndarray]:
        obs = np.asarray(obs)
        length = obs.shape[0] if obs.ndim else 0
        if self.spec.vector_obs:  # any float is stored as float32 (MuJoCo envs observe float64)
            if obs.dtype.kind != "f" or obs.shape[1:] != self.spec.obs_shape or length < 1:
                raise ValueError(f"obs must be float32 vectors (L>=1, *{self.spec.obs_shape}), got {obs.dtype} {obs.shape}")
            obs = obs.astype(np.float32, copy=False)
        elif obs.dtype != np.uint8 or obs.shape[1:] != self.spec.obs_shape or length < 1:
            raise ValueError(f"obs must be uint8 (L>=1, *{self.spec.obs_shape}), got {obs.dtype} {obs.shape}")
        action_spec = self.spec.action_spec
        arrays = {
            "obs": obs,
            "action": np.asarray(action).astype(action_spec.store_dtype(), copy=False),
            "reward": np.asarray(reward, dtype=np.float32),
            "terminated": np.asarray(terminated, dtype=bool),
            "truncated": np.asarray(truncated, dtype=bool),
        }
        expected = {"action": action_spec.store_shape(length), "reward": (length,),
                    "terminated": (length,), "truncated": (length,)}
        for key, shape in expected.items():
            if arrays[key].shape != shape:
                raise ValueError(f"{key} must have shape {shape} for an episode of {length} rows, got {arrays[key].shape}")
        check_rows(arrays["action"], arrays["reward"], action_spec, obs=obs if self.spec.vector_obs else None)  # else unread
        return arrays

    def _next_index(self) -> int:
        if self._next is not None:  # listed once per scan (20 ms at 10k episodes), then counted
            return self._next
        indices = [int(info.name.split("-")[1]) for info in self._episodes]
        if self.episode_dir.exists():  # corrupt directories still hold their index: never reuse a name
            for entry in os.listdir(self.episode_dir):
                parts = entry.removeprefix(_TMP_PREFIX).split("-")
                if len(parts) == 3 and parts[0] == "ep" and parts[1].isdigit():
                    indices.append(int(parts[1]))
        return max(indices, default=-1) + 1

    def _write_index(self) -> None:
        """After every episode, from each entry's cached JSON line: 1 ms at 10k episodes, not 100 ms indented."""
        lines = [self._json.get(i) or self._json.setdefault(i, json.dumps(i.to_dict(), sort_keys=True, default=str))
                 for i in self._episodes]
        save_text_atomic(self.root / "index.json", index_text(FORMAT, lines))

    # ------------------------------------------------------------------ scanning

    def _scan(self, *, clean_tmp: bool) -> None:
        """Rebuild the episode list: the directories are the truth, ``index.json`` only a cache of lengths/returns."""
        entries = sorted(os.listdir(self.episode_dir)) if self.episode_dir.exists() else []
        cached: dict[str, EpisodeInfo] = {}
        index_path = self.root / "index.json"
        try:
            cached = {info["name"]: EpisodeInfo.from_dict(info) for info in json.loads(index_path.read_text())["episodes"]}
        except (OSError, ValueError, KeyError, TypeError):
            pass  # missing or unreadable index: rebuilt below

        if clean_tmp and holds_lock(self.root):
            # A killed writer's half-written index (save_json_atomic's per-writer temp name); with the lock held
            # no other writer is alive, so every such file is a leftover.
            for leftover in self.root.glob(".index.json.*.tmp"):
                leftover.unlink(missing_ok=True)
        episodes: list[EpisodeInfo] = []
        for entry in entries:
            path = self.episode_dir / entry
            if entry.startswith(_TMP_PREFIX):
                # Left by a killed writer: certainly so while we hold the store's lock, else once old enough.
                if clean_tmp and (holds_lock(self.root) or time.time() - path.stat().st_mtime > _STALE_TMP_SECONDS):
                    shutil.rmtree(path, ignore_errors=True)
                continue
            if entry.startswith(".") or not path.is_dir():
                continue
            try:
                episodes.append(self._validate(path, cached.get(entry)))
            except (CorruptEpisodeError, OSError, ValueError, KeyError) as error:
                warnings.warn(f"skipping corrupt episode {str(path)!r}: {error}", RuntimeWarning, stacklevel=3)
        self._episodes, self._next = episodes, None
        if [i.to_dict() for i in episodes] != [cached[n].to_dict() for n in cached]:
            try:
                self._write_index()
            except OSError:
                pass  # read-only store: the in-memory list is still right

    def _validate(self, path: Path, cached: EpisodeInfo | None) -> EpisodeInfo:
        """Every array's header (dtype, shape, byte count), the values of the small ones, then the cached or on-disk meta.

        Frames are checked from their header only (never read here); vector observations, actions and rewards
        are a few bytes per row and are read: vectors and rewards must be finite and actions lie in the action
        space (``[0, n)`` or the Box bounds), since any of these would otherwise reach training.
        """
        headers = {key: read_npy_header(path / f"{key}.npy") for key in ARRAY_NAMES}
        lengths = {key: shape[0] if shape else -1 for key, (shape, _) in headers.items()}
        if len(set(lengths.values())) != 1 or lengths["obs"] < 1:
            raise CorruptEpisodeError(f"array lengths disagree: {lengths}")
        length, action_spec = lengths["obs"], self.spec.action_spec
        expected = {"obs": ((length, *self.spec.obs_shape), np.dtype(self.spec.obs_dtype)),
                    "action": (action_spec.store_shape(length), action_spec.store_dtype()),
                    "reward": ((length,), np.dtype(np.float32)),
                    "terminated": ((length,), np.dtype(bool)), "truncated": ((length,), np.dtype(bool))}
        for key, (shape, dtype) in expected.items():
            if headers[key] != (tuple(shape), dtype):
                raise CorruptEpisodeError(f"{key}.npy is {headers[key][1]} {headers[key][0]}, the store holds {dtype} {shape}")
        check_values(path, self.spec.action_spec, vector_obs=self.spec.vector_obs)
        if cached is not None and cached.length == length:
            return cached
        meta = json.loads((path / "meta.json").read_text())
        if int(meta["length"]) != length:
            raise CorruptEpisodeError(f"meta.json says {meta['length']} rows, arrays hold {length}")
        return EpisodeInfo(path.name, int(meta["length"]), float(meta["return"]), meta.get("seed"))


def env_of_store(store: str | Path, env: str, *, default: str) -> str:
    """The env a run trained OFFLINE on ``store`` records: the store's own (``store.json``'s ``env_id``).

    ``env`` is the run's ``--env``; left at its ``default`` it gives way to the store's (a run on a store imported
    from ``mymod:MyEnv-v0`` used to record, and be evaluated on, the default env, whose spaces may match). Another
    env than the store's, given explicitly, is a one-line ValueError: evaluate on other envs with ``wm evaluate
    --env``.
    """
    stored = EpisodeStore.open(store).spec.env_id
    if env in ("", default, stored):
        return stored
    raise ValueError(f"--env {env!r}, but --store {str(store)!r} holds episodes of {stored!r}: an offline run trains "
                     f"on the store's env and records it; drop --env (or pass --env {stored}), and evaluate on "
                     f"another env afterwards with wm evaluate --env")

