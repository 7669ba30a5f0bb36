"""Lightning checkpoint writes that are atomic on local disk, keeping the previous one; resume that survives a bad file.

Lightning's default ``TorchCheckpointIO`` writes through an fsspec transaction whose temp file lives
in the system temp directory; when that is another filesystem than the run directory, the final
move is a copy, and a kill during it leaves a truncated ``last.ckpt``. Writing the temp file next
to the target makes the last step an ``os.replace`` on one filesystem, which is atomic.

The file being replaced is kept as ``last.prev.ckpt`` (the last 2 checkpoints), so a ``last.ckpt``
damaged later (disk error, a bad copy) costs one checkpoint interval, not the run:
:func:`resume_checkpoint` falls back to it with a one-line warning instead of a torch traceback on every rerun.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from worldmodels.checkpoint import CheckpointError, load_lightning_checkpoint
from worldmodels.config import writing


def previous_checkpoint(path: str | os.PathLike) -> Path:
    """Where the checkpoint that ``path`` replaced is kept: ``last.ckpt`` -> ``last.prev.ckpt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``save_checkpoint`` via ``PATH.tmp`` + fsync + ``os.replace``, the old ``PATH`` kept as :func:`previous_checkpoint`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options; it writes local files only")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with writing(path), open(tmp, "wb") as handle:  # a full disk: one line naming the checkpoint
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():  # a kill between these two renames leaves only the previous one: resume falls back to it
            os.replace(path, previous_checkpoint(path))
        os.replace(tmp, path)


def resume_checkpoint(last: str | os.PathLike) -> Path | None:
    """The checkpoint to resume from: ``last``, else its previous one; ``None`` when there is neither.

    Each candidate is read in full (``weights_only``) first, so a truncated or damaged file is found here, not
    as a traceback inside ``trainer.fit``. A bad one is moved aside to ``NAME.corrupt`` (so the next save does not
    rotate it into the previous slot) with a one-line warning naming it; when no good one is left, a one-line
    :class:`~worldmodels.checkpoint.CheckpointError` names them.
    """
    last = Path(last)
    bad: list[str] = []
    for candidate in (last, previous_checkpoint(last)):
        if not candidate.exists():
            continue
        try:
            load_lightning_checkpoint(candidate)
        except CheckpointError as error:
            aside = candidate.with_name(candidate.name + ".corrupt")
            os.replace(candidate, aside)
            bad.append(f"{error} (moved to {aside.name})")
            continue
        if bad:
            warnings.warn(f"{'; '.join(bad)}; resuming from {candidate}", RuntimeWarning, stacklevel=2)
        return candidate
    if bad:
        raise CheckpointError(f"{'; '.join(bad)}; no good checkpoint left in {last.parent}: rerun to start this stage over")
    return None
