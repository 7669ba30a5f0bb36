"""``LatentDataModule``: train/val ``(B, T)`` windows of V's latent cache (``worldmodels/data/latents.py``).

Batches: ``mu, logvar (B, T, Z)`` float32, ``action (B, T, A)``, ``reward (B, T)``, ``terminated (B, T)``,
``is_first (B, T)``. The split is :func:`worldmodels.data.windows.split_episodes`, the same one
:class:`~trainers.data.datamodule.ChunkDataModule` uses.
"""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from trainers.data.distributed import shard
from trainers.data.resume import StepBatchSampler, StepLoader
from worldmodels.data.latents import (LATENT_KEYS, LatentChunkDataset, LatentEpisodes, encode_store, load_latents,
                                      start_latents)
from worldmodels.data.windows import split_episodes

__all__ = ["LATENT_KEYS", "LatentChunkDataset", "LatentDataModule", "LatentEpisodes", "encode_store", "load_latents",
           "start_latents"]  # the cache itself lives in worldmodels.data.latents; re-exported for the stage scripts


class LatentDataModule(L.LightningDataModule):
    """Train/val ``(B, T)`` chunks of cached latents, split by episode (seeded, :func:`split_episodes`)."""

    def __init__(self, latent_dir: str, seq_len: int = 32, batch_size: int = 16, *, val_fraction: float = 0.1,
                 seed: int = 0, samples_per_epoch: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.latent_dir, self.seq_len, self.batch_size = latent_dir, seq_len, batch_size
        self.val_fraction, self.seed, self.samples_per_epoch = val_fraction, seed, samples_per_epoch
        self.train_dataset: LatentChunkDataset | None = None
        self.val_dataset: LatentChunkDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        episodes = load_latents(self.latent_dir)
        train, val = split_episodes(episodes.lengths, val_fraction=self.val_fraction, seed=self.seed,
                                    seq_len=self.seq_len, what=f"latent cache {self.latent_dir!r}")
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        if world_size > 1:  # DDP: rank r trains on episodes r, r + W, ... (Trainer(use_distributed_sampler=False))
            train = shard(train, rank, world_size)
        self.train_dataset = LatentChunkDataset(episodes.subset(train), seq_len=self.seq_len)
        if val:
            self.val_dataset = LatentChunkDataset(episodes.subset(val), seq_len=self.seq_len, stride=self.seq_len)

    def train_dataloader(self) -> DataLoader:
        assert self.train_dataset is not None, "call setup() first"
        # A resumed fit starts at its step (Lightning builds the loader after restoring the checkpoint).
        sampler = StepBatchSampler(len(self.train_dataset), batch_size=self.batch_size, num_samples=self.samples_per_epoch,
                                   seed=self.seed, start=self.trainer.global_step if self.trainer is not None else 0)
        return StepLoader(self.train_dataset, batch_sampler=sampler)

    def val_dataloader(self) -> DataLoader | list:
        return DataLoader(self.val_dataset, batch_size=self.batch_size) if self.val_dataset is not None else []
