"""The latent cache: the store encoded by V ONCE, then M trains on ``(B, T)`` chunks of it.

Layout (one file per stored episode, written as ``.tmp-*`` then renamed, so a kill never
leaves half a file)::

    LATENT_DIR/<episode name>.npz   mu, logvar (L, Z) float16|float32   V's posterior per frame
                                    action (L, A) float32                model encoding (ActionSpec.to_model)
                                    reward (L,) float32, terminated (L,) bool

An episode is re-encoded only when its cache file is missing or older than V's weights file.
M never touches pixels: it samples ``z = mu + sigma * eps`` per batch from the cached
statistics (Ha & Schmidhuber 2018, A.2 -- a fresh sample each epoch acts as data augmentation).
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from trainers.distributed import shard
from worldmodels.data.store import EpisodeStore
from worldmodels.models.conv import to_float_image
from worldmodels.models.vae import ConvVAE

LATENT_KEYS = ("mu", "logvar", "action", "reward", "terminated")


@torch.no_grad()
def encode_store(vae: ConvVAE, store_dir: str | Path, latent_dir: str | Path, *, vae_weights: str | Path | None = None,
                 batch_size: int = 256, dtype: str = "float16", device: str | torch.device = "cpu") -> dict[str, int]:
    """Encode every episode of the store whose cache is missing or older than ``vae_weights``."""
    store = EpisodeStore.open(store_dir)
    latent_dir = Path(latent_dir)
    latent_dir.mkdir(parents=True, exist_ok=True)
    weights_time = Path(vae_weights).stat().st_mtime if vae_weights is not None else 0.0
    vae = vae.to(device).eval()
    encoded = skipped = 0
    for info in store.episodes:
        path = latent_dir / f"{info.name}.npz"
        if path.exists() and path.stat().st_mtime >= weights_time:
            skipped += 1
            continue
        episode = store.load(info.name)
        mus, logvars = [], []
        for start in range(0, len(episode), batch_size):
            frames = torch.from_numpy(np.array(episode.obs[start:start + batch_size])).to(device)  # (n, H, W, C)
            mu, logvar = vae.encode(to_float_image(frames))  # (n, Z) each
            mus.append(mu.cpu().numpy())
            logvars.append(logvar.cpu().numpy())
        arrays = {
            "mu": np.concatenate(mus).astype(dtype),  # (L, Z)
            "logvar": np.concatenate(logvars).astype(dtype),  # (L, Z)
            "action": store.spec.action_spec.to_model(np.array(episode.action)).numpy(),  # (L, A)
            "reward": np.asarray(episode.reward, dtype=np.float32),  # (L,)
            "terminated": np.asarray(episode.terminated, dtype=bool),  # (L,)
        }
        tmp = latent_dir / f".tmp-{info.name}.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        encoded += 1
    return {"encoded": encoded, "skipped": skipped, "episodes": len(store)}


def load_latents(latent_dir: str | Path, names: list[str] | None = None) -> list[dict[str, np.ndarray]]:
    """Cached episodes (float32 statistics) in name order; ``names`` restricts to those episodes."""
    latent_dir = Path(latent_dir)
    if names is None:
        names = sorted(p.stem for p in latent_dir.glob("ep-*.npz"))
    episodes = []
    for name in names:
        with np.load(latent_dir / f"{name}.npz", allow_pickle=False) as data:
            episode = {key: data[key] for key in LATENT_KEYS}
        episode["mu"], episode["logvar"] = episode["mu"].astype(np.float32), episode["logvar"].astype(np.float32)
        episodes.append(episode)
    if not episodes:
        raise FileNotFoundError(f"no cached latents in {str(latent_dir)!r}; encode the store first")
    return episodes


def start_latents(episodes: list[dict[str, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior statistics of every episode's FIRST frame: ``mu, logvar (S, Z)`` (dream start states)."""
    mu = torch.from_numpy(np.stack([e["mu"][0] for e in episodes]))
    logvar = torch.from_numpy(np.stack([e["logvar"][0] for e in episodes]))
    return mu, logvar


class LatentChunkDataset(Dataset):
    """``seq_len`` windows over cached episodes laid end to end (as ``ChunkDataset``; ``is_first`` marks starts)."""

    def __init__(self, episodes: list[dict[str, np.ndarray]], *, seq_len: int, stride: int = 1) -> None:
        self.seq_len = seq_len
        self.arrays = {key: np.concatenate([e[key] for e in episodes]) for key in LATENT_KEYS}
        is_first = np.zeros(len(self.arrays["mu"]), dtype=bool)
        is_first[np.cumsum([0] + [len(e["mu"]) for e in episodes[:-1]])] = True
        self.arrays["is_first"] = is_first
        total = len(is_first)
        if total < seq_len:
            raise ValueError(f"{len(episodes)} cached episode(s) hold {total} frames, fewer than seq_len={seq_len}")
        self.starts = np.arange(0, total - seq_len + 1, stride)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        window = slice(int(self.starts[k]), int(self.starts[k]) + self.seq_len)
        # mu / logvar (T, Z), action (T, A), reward (T,), terminated (T,), is_first (T,)
        return {key: torch.from_numpy(np.ascontiguousarray(value[window])) for key, value in self.arrays.items()}


class LatentDataModule(L.LightningDataModule):
    """Train/val ``(B, T)`` chunks of cached latents, split by episode with a seeded permutation."""

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
        order = np.random.default_rng(self.seed).permutation(len(episodes))
        num_val = max(1, int(round(self.val_fraction * len(episodes)))) if len(episodes) > 1 and self.val_fraction > 0 else 0
        val = [episodes[k] for k in sorted(order[:num_val])]
        train = [episodes[k] for k in sorted(order[num_val:])]
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        if world_size > 1:  # DDP: rank r trains on episodes r, r + W, ... (Trainer(use_distributed_sampler=False))
            train = shard(train, rank, world_size)
        self.train_dataset = LatentChunkDataset(train, seq_len=self.seq_len)
        if val and sum(len(e["mu"]) for e in val) >= self.seq_len:
            self.val_dataset = LatentChunkDataset(val, seq_len=self.seq_len, stride=self.seq_len)

    def train_dataloader(self) -> DataLoader:
        assert self.train_dataset is not None, "call setup() first"
        sampler = RandomSampler(self.train_dataset, num_samples=self.samples_per_epoch,
                                generator=torch.Generator().manual_seed(self.seed))
        return DataLoader(self.train_dataset, batch_size=self.batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader | list:
        return DataLoader(self.val_dataset, batch_size=self.batch_size) if self.val_dataset is not None else []
