"""``ChunkDataModule``: ``(B, T)`` chunks of an episode store, split into train/val by episode.

Batches are dicts of tensors (DESIGN.md, "Batches from the data module")::

    obs (B, T, H, W, C) uint8   action (B, T, A) float32   reward (B, T) float32
    terminated / truncated / is_first (B, T) bool

Determinism: the split is a seeded permutation of the store's episodes (``split_episodes``, shared
with the latent cache); training windows are drawn by a :class:`~trainers.data.resume.StepBatchSampler` in the
main process, whose batch ``k`` is a function of ``(seed, k)`` alone, and each window is a pure function of
its start. So the batches depend only on the seed, never on ``num_workers``, and a fit resumed at step ``k``
draws the batches an uninterrupted one draws from there.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from trainers.data.distributed import shard
from trainers.data.resume import StepBatchSampler, StepLoader
from worldmodels.data.chunks import ChunkDataset
from worldmodels.data.store import EpisodeStore
from worldmodels.data.windows import split_episodes


def _seed_worker(worker_id: int) -> None:
    """Per-worker numpy seed derived from torch's worker seed, for any randomness added later."""
    np.random.seed(torch.initial_seed() % 2**32)


class ChunkDataModule(L.LightningDataModule):
    """Train/val chunk loaders over the store at ``store_dir``.

    ``val_fraction`` of the episodes (at least one when the store holds two or more, and
    enough to fill one window) go to validation. Training draws ``samples_per_epoch``
    random windows per epoch (``None``: one pass over every start position);
    validation reads non-overlapping windows in a fixed order.
    """

    def __init__(self, store_dir: str, seq_len: int = 64, batch_size: int = 16, *, val_fraction: float = 0.1,
                 num_workers: int = 0, seed: int = 0, samples_per_epoch: int | None = None,
                 pin_memory: bool = False) -> None:
        super().__init__()
        if seq_len < 1 or batch_size < 1:
            raise ValueError(f"seq_len and batch_size must be >= 1, got seq_len={seq_len}, batch_size={batch_size}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1 or None, got {samples_per_epoch}")
        self.save_hyperparameters()
        self.store_dir = store_dir
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.num_workers = num_workers
        self.seed = seed
        self.samples_per_epoch = samples_per_epoch
        self.pin_memory = pin_memory
        self.train_episodes: list[str] = []
        self.val_episodes: list[str] = []
        self.train_dataset: ChunkDataset | None = None
        self.val_dataset: ChunkDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        store = EpisodeStore.open(self.store_dir)
        if store.num_frames < self.seq_len:
            raise ValueError(f"store {self.store_dir!r} holds {store.num_frames} frames in {len(store)} episode(s), "
                             f"fewer than seq_len={self.seq_len}; collect more episodes or lower seq_len")
        self.action_spec = store.spec.action_spec
        self.obs_shape = store.spec.obs_shape
        self.train_episodes, self.val_episodes = self.split(store)
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        if world_size > 1:  # DDP: rank r trains on episodes r, r + W, ... (Trainer(use_distributed_sampler=False))
            self.train_episodes = shard(self.train_episodes, rank, world_size)
        self.train_dataset = ChunkDataset(self.store_dir, self.train_episodes, seq_len=self.seq_len)
        if self.val_episodes:
            self.val_dataset = ChunkDataset(self.store_dir, self.val_episodes, seq_len=self.seq_len, stride=self.seq_len)

    def split(self, store: EpisodeStore) -> tuple[list[str], list[str]]:
        """Seeded split by episode (:func:`split_episodes`): ``(train_names, val_names)``, each in store order."""
        names = store.names
        train, val = split_episodes([info.length for info in store.episodes], val_fraction=self.val_fraction,
                                    seed=self.seed, seq_len=self.seq_len, what=f"store {self.store_dir!r}")
        return [names[k] for k in train], [names[k] for k in val]

    def _loader(self, dataset: ChunkDataset, **batching) -> DataLoader:
        return StepLoader(dataset, **batching, num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0, worker_init_fn=_seed_worker,
                          generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        assert self.train_dataset is not None, "call setup() first"
        # Lightning builds the loader after restoring a checkpoint: a resumed fit starts at the step it stopped at.
        start = self.trainer.global_step if self.trainer is not None else 0
        sampler = StepBatchSampler(len(self.train_dataset), batch_size=self.batch_size,
                                   num_samples=self.samples_per_epoch, seed=self.seed, start=start)
        return self._loader(self.train_dataset, batch_sampler=sampler)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_dataset is None:
            return []  # no validation split (val_fraction 0, or a single episode)
        return self._loader(self.val_dataset, batch_size=self.batch_size, shuffle=False)
