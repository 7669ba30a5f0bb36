"""One writer per run directory and per episode store: an exclusive ``flock`` on ``DIR/.lock``.

Two ``wm dreamer`` on one run directory, or two ``wm collect`` on one store, used to both "succeed" and
leave duplicate episodes. :func:`exclusive_lock` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on
``DIR/.lock`` and writes the holder's PID into it; a second process gets a one-line
:class:`DirectoryLocked` naming that PID. The kernel drops a ``flock`` when its process dies, so a
lock file left by a killed run is not a held lock: the next run takes it without any clean-up.
Within one process the lock is re-entrant (a command may lock a run directory and then the store in it).
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".lock"
_held: dict[Path, list[int]] = {}  # lock file -> [fd, depth] of the locks this process holds


class DirectoryLocked(PermissionError):
    """Another live process holds the directory's lock; the message names its PID."""


@contextmanager
def exclusive_lock(directory: str | Path, *, what: str = "directory") -> Iterator[Path]:
    """Hold ``directory``'s exclusive lock for the ``with`` block (creating the directory); yields the lock file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = (directory / LOCK_NAME).resolve()
    if path in _held:
        _held[path][1] += 1
    else:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DirectoryLocked(f"{what} {str(directory)!r} is in use by process {holder} (lock {path}); "
                                  "wait for it to finish, or stop it and rerun") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[path] = [fd, 1]
    try:
        yield path
    finally:
        _held[path][1] -= 1
        if _held[path][1] == 0:
            fd = _held.pop(path)[0]
            os.ftruncate(fd, 0)  # nobody holds it now; a leftover PID would only mislead
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def holds_lock(directory: str | Path) -> bool:
    """Whether this process holds ``directory``'s lock (then no other process writes there)."""
    return (Path(directory) / LOCK_NAME).resolve() in _held
