"""The input files of ``wm import``: plain files only, and ``.npz`` members checked against their headers before reading.

Both checks use metadata alone, before any data is read: a FIFO named ``ep.npz`` (or ``dataset.json``) blocks
``open`` until a writer appears, so ``np.load`` hung; and an ``.npy`` member whose header declares 3 TiB made
``np.load`` allocate the array before reading a byte of it (a MemoryError traceback, or worse with overcommit).
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np

_KINDS = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"),
          (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
# Deflate shrinks data by at most about 1032:1, so no genuine member decompresses to more than this many times
# its compressed size: together with "compressed size <= file size" it bounds what a member can declare.
_MAX_DEFLATE_RATIO = 1032


def require_regular_file(path: str | Path, fix: str) -> None:
    """A one-line ``ValueError`` when ``path`` is a directory, FIFO, socket or device; ``fix`` says what belongs there.

    ``os.stat`` never opens the file (so never blocks on a FIFO) and follows symlinks: a link to a plain file is
    fine. A missing path raises ``FileNotFoundError`` as is.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "special file")
        raise ValueError(f"{str(path)!r} is a {kind}, not a regular file; {fix}")


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an ``np.savez`` / ``np.savez_compressed`` file, each member's header checked before it is read.

    A ``ValueError`` naming the member (and what its header declares) for a truncated or corrupt archive, an object
    (pickled) array, or a header that declares more bytes than the member holds; members not ending in ``.npy`` are
    ignored, as ``np.savez`` writes none.
    """
    size = os.stat(path).st_size
    try:
        with zipfile.ZipFile(path) as archive:
            return {info.filename[:-4]: _read_member(archive, info, size)
                    for info in archive.infolist() if info.filename.endswith(".npy")}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as error:
        # truncated / not a zip, a damaged deflate stream, an unsupported compression or an encrypted member
        raise ValueError(f"{type(error).__name__}: {error}") from None
    except MemoryError:
        raise ValueError("its arrays do not fit in memory") from None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int) -> np.ndarray:
    stored = info.compress_type == zipfile.ZIP_STORED
    limit = info.compress_size if stored else info.compress_size * _MAX_DEFLATE_RATIO
    if info.compress_size > file_size or info.file_size > limit:
        raise ValueError(f"member {info.filename} claims {info.file_size} bytes, more than the {file_size}-byte "
                         "archive can hold")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        declared = member.tell() + math.prod(shape) * dtype.itemsize
    if dtype.hasobject:
        raise ValueError(f"member {info.filename} holds Python objects ({dtype}), which would need unpickling; "
                         "save plain numeric arrays")
    if declared != info.file_size:
        raise ValueError(f"member {info.filename}: its header declares {dtype} {tuple(shape)} ({declared} bytes), "
                         f"but the member holds {info.file_size} bytes")
    with archive.open(info) as member:
        return np.lib.format.read_array(member, allow_pickle=False)
