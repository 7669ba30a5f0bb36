"""The files of one stored episode: the obs dtype a shape implies, durable ``.npy`` writes, header and value checks.

Used by :class:`worldmodels.data.store.EpisodeStore`; kept apart so the store holds only the store's logic.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import zlib
from pathlib import Path

import numpy as np

from worldmodels.config import writing
from worldmodels.envs.spaces import ActionSpec


# The rank of obs_shape says which observations a store holds: (H, W, C) frames or (D,) state vectors.
OBS_DTYPES = {3: "uint8", 1: "float32"}


def obs_dtype_for(obs_shape: tuple[int, ...]) -> str:
    """``"uint8"`` for ``(H, W, C)`` frames, ``"float32"`` for ``(D,)`` vectors; a one-line error otherwise."""
    if len(obs_shape) not in OBS_DTYPES:
        raise ValueError(f"obs_shape {list(obs_shape)} is neither [H, W, C] frames nor [D] vectors")
    return OBS_DTYPES[len(obs_shape)]


class CorruptEpisodeError(ValueError):
    """An episode directory whose files cannot be what ``add_episode`` wrote."""


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def content_digest(arrays: list[np.ndarray], *, quick: bool = False) -> str:
    """8 hex digits of the arrays' bytes: BLAKE2b, or (``quick``) CRC-32, a quarter of its CPU time (5 against 20 ms
    for a 12 MB Pong episode), which ``wm collect --collect-mode fast`` takes; both only name the episode."""
    if quick:
        crc = 0
        for array in arrays:
            crc = zlib.crc32(np.ascontiguousarray(array).data, crc)
        return f"{crc:08x}"
    digest = hashlib.blake2b(digest_size=4)
    for array in arrays:
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def index_text(format_name: str, entries: list[str]) -> str:
    """``index.json`` from its entries' JSON objects, one a line (``EpisodeStore._write_index`` caches them)."""
    return f'{{"format": {json.dumps(format_name)}, "episodes": [\n' + ",\n".join(entries) + "\n]}\n"


def save_text_atomic(path: Path, text: str) -> None:
    """``save_json_atomic`` for text already serialised: a per-writer temp name, then a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with writing(path):
            with open(tmp, "x") as handle:  # "x": never someone else's file
                handle.write(text)
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def save_array(path: Path, array: np.ndarray) -> None:
    with writing(path), open(path, "wb") as handle:  # a full disk: one line naming the file
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from an ``.npy`` header, checking the file holds every byte the header promises."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        data_offset = handle.tell()
    expected = data_offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = path.stat().st_size
    if actual != expected or fortran:
        raise CorruptEpisodeError(f"{path.name} has {actual} bytes, header promises {expected}")
    return tuple(shape), dtype


def check_values(path: Path, spec: ActionSpec, *, vector_obs: bool = False) -> None:
    """Actions inside the store's action space, finite rewards and (``vector_obs``) finite observation vectors.

    Each is a few bytes per row, so it is read in full; frames are not (their header is checked elsewhere).
    """
    action, reward, obs = (np.load(path / f"{key}.npy", mmap_mode="r", allow_pickle=False) if key != "obs" or vector_obs
                           else None for key in ("action", "reward", "obs"))
    try:
        check_rows(action, reward, spec, obs=obs, suffix=".npy")
    except ValueError as error:
        raise CorruptEpisodeError(str(error)) from None


def check_rows(action: np.ndarray, reward: np.ndarray, spec: ActionSpec, *, obs: np.ndarray | None = None,
               suffix: str = "") -> None:
    """The value checks of a stored episode, on its arrays: what fails here is skipped by every reader.

    ``add_episode`` runs them before writing (an env returning NaN rewards was "collected", then read back as 0
    episodes), and :func:`check_values` on every open. ``action`` ``(L,)`` int or ``(L, A)`` float, ``reward`` ``(L,)``,
    ``obs`` ``(L, D)`` vectors (frames are not checked: any uint8 is a pixel). A one-line ``ValueError`` naming the
    array (``suffix``: ``".npy"`` for the file) and the row.
    """
    if obs is not None:
        bad = ~np.isfinite(obs).all(axis=-1)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise ValueError(f"obs{suffix} row {row} holds {obs[row].tolist()}; vector observations must be finite")
    if spec.discrete:
        outside = (action < 0) | (action >= spec.dim)
        where = f"discrete actions must lie in [0, {spec.dim})"
    else:
        low, high = (np.asarray(b, dtype=np.float32) if b else None for b in (spec.low, spec.high))
        outside = ~np.isfinite(action)
        if low is not None and high is not None:
            outside |= (action < low) | (action > high)
        where = f"actions must be finite and inside [{spec.low}, {spec.high}]"
    if outside.any():
        row = int(np.argwhere(outside)[0][0])
        raise ValueError(f"action{suffix} row {row} holds {action[row].tolist()}; {where}")
    if not np.isfinite(reward).all():
        row = int(np.argwhere(~np.isfinite(reward))[0][0])
        raise ValueError(f"reward{suffix} row {row} holds {float(reward[row])}; rewards must be finite "
                         "(and within float32, which the store keeps)")
