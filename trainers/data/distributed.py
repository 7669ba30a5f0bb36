"""Multi-process training helpers: who am I, which data is mine, what is my seed, who writes files.

Lightning's DDP runs one process per device (``Trainer(devices=N, num_nodes=M, strategy="ddp")``);
gradients are all-reduced, so the parameters stay identical on every rank. What Lightning cannot
know is how OUR data is split, so each family does it explicitly:

    World Models (offline, episode store):   rank r trains on episodes  train[r::world_size]
                                              (ChunkDataModule / LatentDataModule, use_distributed_sampler=False)
    Dreamer (online replay):                  rank r collects with env seed  seed + 1000 * r
                                              into its own replay and episode store  episodes-rank<r>/

Rank and world size come from the initialised process group when there is one, otherwise from the
variables the launchers set before the process group exists: torchrun (``RANK``, ``WORLD_SIZE``),
SLURM (``SLURM_PROCID``, ``SLURM_NTASKS``) and Lightning's own launcher (``NODE_RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``; see :func:`env_rank`).

Files that every rank would write the same way (results, exported weights, DONE markers) are written
by rank zero only (:func:`is_rank_zero`, :func:`barrier` to make the others wait for them).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import torch

SEED_STRIDE = 1000  # rank r uses seed + SEED_STRIDE * r: far apart so per-env seeds (seed + i) never collide

T = TypeVar("T")


def env_rank(devices_per_node: int = 1) -> tuple[int, int]:
    """``(global_rank, world_size)`` from launcher environment variables (``(0, 1)`` when none are set).

    Lightning's launcher process is local rank 0 and only exports ``LOCAL_RANK``/``WORLD_SIZE`` when it
    spawns the other ranks, so ``NODE_RANK * devices_per_node + LOCAL_RANK`` is used for it.
    """
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # torchrun / torch.distributed.launch
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if "SLURM_PROCID" in os.environ and "SLURM_NTASKS" in os.environ:
        return int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
    node, local = int(os.environ.get("NODE_RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    return node * devices_per_node + local, int(os.environ.get("WORLD_SIZE", 1))


def rank_and_world_size() -> tuple[int, int]:
    """``(global_rank, world_size)``: the process group's when initialised, else :func:`env_rank`."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return env_rank()


def is_rank_zero() -> bool:
    return rank_and_world_size()[0] == 0


def barrier() -> None:
    """Wait for every rank (no-op without an initialised process group)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def wait_for_file(path: str | Path, *, timeout_s: float = 24 * 3600.0, poll_s: float = 2.0) -> None:
    """Block until ``path`` exists (a DONE marker rank zero writes before any process group exists)."""
    import time

    deadline = time.monotonic() + timeout_s
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f}s for {str(path)!r}, written by rank zero")
        time.sleep(poll_s)


def rank_seed(seed: int, rank: int) -> int:
    """Env / replay seed of ``rank``: ranks act in differently seeded envs and sample different chunks."""
    return seed + SEED_STRIDE * rank


def stage_seed(seed: int, stage: str) -> int:
    """The seed of one stage of a run, derived from the run seed and the stage name (not drawn from a shared stream),
    so a stage that starts in a fresh process after a kill starts from the same random state as in an uninterrupted run."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{stage}".encode()).digest()[:4], "little")


def rank_store_dir(base: str | Path, rank: int, world_size: int) -> Path:
    """Episode store of ``rank``: ``base`` itself on one process, ``base-rank<r>`` under DDP (one writer per store)."""
    base = Path(base)
    return base if world_size <= 1 else base.with_name(f"{base.name}-rank{rank}")


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Items ``rank, rank + world_size, ...``: disjoint shards that cover ``items``.

    Raises when a rank would get nothing, because an empty shard means a rank without data (a hang at the
    first all-reduce) rather than an error.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    out = list(items[rank::world_size])
    if world_size > 1 and not out:
        raise ValueError(f"{len(items)} item(s) cannot give each of {world_size} ranks a shard; "
                         f"collect more episodes or use fewer devices")
    return out


def lightning_strategy(name: str, *, find_unused_parameters: bool = False) -> Any:
    """The ``strategy`` argument for ``lightning.Trainer``: ``"ddp"`` becomes a configured ``DDPStrategy``.

    ``find_unused_parameters=True`` is needed by modules that run several backward passes per
    ``training_step``, each through only part of the parameters (Dreamer: world model, actor, critic);
    with it DDP marks the untouched parameters ready instead of waiting for their gradients forever.
    """
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=find_unused_parameters)
    return name


def parameter_checksum(module: torch.nn.Module, *, buffers: bool = False) -> str:
    """SHA-256 over every parameter (name, dtype, bytes), and buffers if asked: equal on all ranks after a DDP step.

    Buffers are left out by default: statistics a rank updates from its own data (e.g. a return normaliser)
    legitimately differ between ranks between DDP's buffer broadcasts.
    """
    digest = hashlib.sha256()
    tensors = module.state_dict() if buffers else dict(module.named_parameters())
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def batch_digest(batch: Any) -> str:
    """SHA-256 of a batch's tensors (dict keys in sorted order): what data a rank consumed."""
    digest = hashlib.sha256()
    items = sorted(batch.items()) if isinstance(batch, dict) else enumerate(batch)
    for key, value in items:
        digest.update(str(key).encode())
        if isinstance(value, torch.Tensor):
            digest.update(_tensor_bytes(value))
    return digest.hexdigest()


class RankReport(L.Callback):
    """Writes ``<out_dir>/rank<r>.json`` at the end of fit: global step, batch digests, parameter checksum.

    A test aid, and the one callback here that writes on every rank on purpose: each rank writes only its
    own file. ``batches`` holds the digest of every training batch this rank consumed; ``train_episodes``
    the episode names of the data module's training shard, when it has one.
    """

    def __init__(self, out_dir: str | Path) -> None:
        super().__init__()
        self.out_dir = Path(out_dir)
        self.digests: list[str] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self.digests.append(batch_digest(batch))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        report = {"global_rank": trainer.global_rank, "world_size": trainer.world_size,
                  "global_step": trainer.global_step, "batches": self.digests,
                  "param_checksum": parameter_checksum(pl_module),
                  "module_checksums": {name: parameter_checksum(child) for name, child in pl_module.named_children()},
                  "train_episodes": list(getattr(trainer.datamodule, "train_episodes", None) or [])}
        path = self.out_dir / f"rank{trainer.global_rank}.json"
        tmp = path.with_name(f".tmp-{path.name}")
        tmp.write_text(json.dumps(report, indent=2))
        os.replace(tmp, path)
