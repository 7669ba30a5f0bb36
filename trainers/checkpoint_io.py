"""Lightning checkpoint writes that are atomic on local disk: temp file in the same directory, fsync, rename.

Lightning's default ``TorchCheckpointIO`` writes through an fsspec transaction whose temp file lives
in the system temp directory; when that is another filesystem than the run directory, the final
move is a copy, and a kill during it leaves a truncated ``last.ckpt``. Writing the temp file next
to the target makes the last step an ``os.replace`` on one filesystem, which is atomic.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """``save_checkpoint`` via ``PATH.tmp`` + fsync + ``os.replace``; loading is unchanged (weights_only as asked)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options; it writes local files only")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
