"""A ring of observation rows, in RAM or in a file on disk: what lets a replay hold a million frames in 2 GB.

An online replay keeps every frame it may sample. At 64 x 64 x 3 uint8 a million rows are 12.3 GB, which
in RAM fills lazily and runs a machine out of memory hours into a run. :class:`FrameRing` with a ``path``
keeps the rows in one preallocated file instead (``os.posix_fallocate``: a disk too small for the ring is
refused at the start, not when it fills) and moves them with ``pwrite`` / ``preadv``: the kernel's page
cache holds what is hot, and it is neither counted in the process's resident set nor kept when memory is
short. Without a ``path`` the rows live in one numpy array, as before.

Row ``r`` of the ring sits at slot ``r % capacity``; a window of ``T`` consecutive rows is at most two
contiguous pieces of the file, read straight into the batch's buffer::

    slots:   0 1 2 ... capacity-1
    window:          [start % capacity .................)  + [0 ... rest)   (when it wraps)

Both back-ends return identical bytes for the same writes, so sampling (and an exact resume) does not depend
on where the frames live.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

# Rings up to this size stay in RAM under ``frames="auto"``: a 100k-row Atari replay (1.2 GB) keeps its
# in-memory path; a million rows (12.3 GB) go to disk.
AUTO_DISK_BYTES = 2 << 30
FRAME_MODES = ("auto", "ram", "disk")


def ring_bytes(capacity: int, shape: tuple[int, ...], dtype: type | np.dtype) -> int:
    return int(capacity) * int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def uses_disk(mode: str, capacity: int, shape: tuple[int, ...], dtype: type | np.dtype) -> bool:
    """Whether ``mode`` (``auto`` / ``ram`` / ``disk``) keeps a ring of this size on disk."""
    if mode not in FRAME_MODES:
        raise ValueError(f"replay frames must be one of {list(FRAME_MODES)}, got {mode!r}")
    return mode == "disk" or (mode == "auto" and ring_bytes(capacity, shape, dtype) > AUTO_DISK_BYTES)


class FrameRing:
    """``capacity`` rows of ``shape`` / ``dtype``, in RAM or (with ``path``) in a preallocated file."""

    def __init__(self, capacity: int, shape: tuple[int, ...], dtype: type | np.dtype, *,
                 path: str | Path | None = None) -> None:
        self.capacity, self.shape, self.dtype = int(capacity), tuple(shape), np.dtype(dtype)
        self.row_bytes = ring_bytes(1, self.shape, self.dtype)
        self.path = None if path is None else Path(path)
        self._fd: int | None = None
        self._array: np.ndarray | None = None
        if self.path is None:
            self._array = np.zeros((self.capacity, *self.shape), self.dtype)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_TRUNC: the ring is a cache this run fills (a resume refills it from the episode store).
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        size = self.capacity * self.row_bytes
        try:
            os.posix_fallocate(self._fd, 0, size)
        except OSError as error:
            self.close(remove=True)
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ValueError(f"the replay's frame file {str(self.path)!r} needs {size / 1e9:.1f} GB of disk for "
                                 f"{self.capacity:,} rows and the disk has less; lower --capacity or free space") from None
            raise

    @property
    def on_disk(self) -> bool:
        return self._fd is not None

    @property
    def array(self) -> np.ndarray:
        """The rows of a RAM ring, ``(capacity, *shape)``; a disk ring has none."""
        if self._array is None:
            raise ValueError(f"the ring in {self.path} keeps its rows on disk; read them with read()")
        return self._array

    def write(self, slot: int, row: np.ndarray) -> None:
        """Row ``row`` (``shape``) into slot ``slot`` (``0 <= slot < capacity``)."""
        if self._array is not None:
            self._array[slot] = row
            return
        data = np.ascontiguousarray(row, dtype=self.dtype)
        os.pwrite(self._fd, memoryview(data).cast("B"), slot * self.row_bytes)

    def read(self, start: int, length: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows at slots ``start, start + 1, ... (mod capacity)``: ``(length, *shape)``, into ``out`` if given."""
        out = np.empty((length, *self.shape), self.dtype) if out is None else out
        first = min(length, self.capacity - start)  # the piece before the wrap
        if self._array is not None:
            out[:first] = self._array[start:start + first]
            out[first:] = self._array[:length - first]
            return out
        flat = memoryview(out.reshape(-1).view(np.uint8))
        split = first * self.row_bytes
        for view, offset in ((flat[:split], start * self.row_bytes), (flat[split:], 0)):
            done = 0
            while done < len(view):  # preadv may return short reads
                got = os.preadv(self._fd, [view[done:]], offset + done)
                if got == 0:
                    raise OSError(errno.EIO, f"replay frame file {self.path} ended early")
                done += got
        return out

    def close(self, *, remove: bool = False) -> None:
        """Close the file (``remove``: delete it; this ring created it); a RAM ring lets its array go."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if remove and self.path is not None:
                self.path.unlink(missing_ok=True)
        self._array = None

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
