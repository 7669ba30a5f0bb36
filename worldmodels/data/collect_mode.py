"""Which collection mode wrote a store: ``store.json``'s ``collect_mode`` (``wm collect --collect-mode``).

- ``exact`` (no key: every store written before the key existed is exact): episode ``j`` is a pure function of
  ``(seed, j)``, so a killed run reruns to the uninterrupted store (:mod:`worldmodels.data.collect`).
- ``fast``: the vector env is seeded once, then autoresets; one random stream for the batch; episodes are written
  as they finish. A rerun adds the missing episodes, but not the ones an uninterrupted run would have written.

A store holds one mode: a rerun with the other one is refused, since the store would then promise neither.
Kept out of :mod:`worldmodels.data.store` (the format's reader, which never needs the mode).
"""

from __future__ import annotations

import os
from pathlib import Path

from worldmodels.config import read_json, save_json_atomic

COLLECT_MODES = ("exact", "fast")
KEY = "collect_mode"


def stored_mode(root: str | Path) -> str | None:
    """The mode in ``root/store.json`` (``exact`` when it names none), or None when ``root`` holds no store."""
    path = Path(root) / "store.json"
    if not path.exists():
        return None
    return str(read_json(path, what="an episode store's spec").get(KEY, "exact"))


def episode_dirs(root: str | Path) -> int:
    """Episode directories in the store (corrupt ones too: they were written by some run), without reading any."""
    try:
        return sum(1 for entry in os.listdir(Path(root) / "episodes") if entry.startswith("ep-"))
    except FileNotFoundError:
        return 0


def check_mode(root: str | Path, mode: str) -> None:
    """One-line ``ValueError`` when the store at ``root`` holds episodes collected in the other mode."""
    if mode not in COLLECT_MODES:
        raise ValueError(f"--collect-mode must be one of {COLLECT_MODES}, got {mode!r}")
    have = stored_mode(root)
    count = episode_dirs(root) if have not in (None, mode) else 0
    if count:
        raise ValueError(f"store {str(root)!r} holds {count} episode(s) collected with --collect-mode {have}; "
                         f"rerun with --collect-mode {have} or use another --out directory (one mode per store)")


def record_mode(root: str | Path, mode: str) -> None:
    """Write ``mode`` into ``root/store.json`` before any episode of it is (:func:`check_mode` first).

    ``exact`` is written as no key, so an exact store's ``store.json`` is what it was before modes existed.
    """
    check_mode(root, mode)
    path = Path(root) / "store.json"
    values = read_json(path, what="an episode store's spec")
    if str(values.get(KEY, "exact")) == mode:
        return
    if mode == "exact":
        del values[KEY]
    else:
        values[KEY] = mode
    save_json_atomic(path, values)
