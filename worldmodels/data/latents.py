"""The latent cache: the store encoded by V ONCE, then M trains on ``(B, T)`` windows of it.

Layout (one file per stored episode, written as ``.tmp-*`` then renamed, so a kill never
leaves half a file)::

    LATENT_DIR/<episode name>.npz   mu, logvar (L, Z) float16|float32   V's posterior per frame
                                    action (L, A) float32                model encoding (ActionSpec.to_model)
                                    reward (L,) float32, terminated (L,) bool

An episode is re-encoded only when its cache file is missing or older than V's weights file.
Episodes are read one at a time when a window needs them (:class:`LatentEpisodes`, the LRU cache of
:class:`~worldmodels.data.windows.EpisodeWindows`), so the cache is never loaded into RAM whole.
M never touches pixels: it samples ``z = mu + sigma * eps`` per batch from the cached statistics
(Ha & Schmidhuber 2018, A.2 -- a fresh sample each epoch acts as data augmentation).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from worldmodels.config import writing
from worldmodels.data.store import EpisodeStore
from worldmodels.data.windows import EpisodeWindows
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
        with writing(path):  # a full disk: one line naming the file
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        encoded += 1
    return {"encoded": encoded, "skipped": skipped, "episodes": len(store)}


class LatentEpisodes(Sequence):
    """The cached episodes of ``latent_dir`` in name order, each read from disk only when indexed.

    ``episodes[i]`` is a dict of :data:`LATENT_KEYS` arrays (statistics as float32); ``lengths`` needs
    only the small ``terminated`` array of each file.
    """

    def __init__(self, latent_dir: str | Path, names: Sequence[str] | None = None) -> None:
        self.latent_dir = Path(latent_dir)
        self.names = sorted(p.stem for p in self.latent_dir.glob("ep-*.npz")) if names is None else list(names)
        if not self.names:
            raise FileNotFoundError(f"no cached latents in {str(latent_dir)!r}; encode the store first")
        self.lengths = []
        for name in self.names:
            with np.load(self.latent_dir / f"{name}.npz", allow_pickle=False) as data:
                self.lengths.append(len(data["terminated"]))

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:  # type: ignore[override]
        with np.load(self.latent_dir / f"{self.names[index]}.npz", allow_pickle=False) as data:
            episode = {key: data[key] for key in LATENT_KEYS}
        episode["mu"], episode["logvar"] = episode["mu"].astype(np.float32), episode["logvar"].astype(np.float32)
        return episode

    def subset(self, indices: Sequence[int]) -> "LatentEpisodes":
        """The episodes at ``indices`` (no file is re-read)."""
        subset = object.__new__(LatentEpisodes)
        subset.latent_dir = self.latent_dir
        subset.names = [self.names[k] for k in indices]
        subset.lengths = [self.lengths[k] for k in indices]
        return subset


def load_latents(latent_dir: str | Path, names: list[str] | None = None) -> LatentEpisodes:
    """Cached episodes in name order (read lazily); ``names`` restricts to those episodes."""
    return LatentEpisodes(latent_dir, names)


def start_latents(episodes: Sequence[Mapping[str, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior statistics of every episode's FIRST frame: ``mu, logvar (S, Z)`` (dream start states)."""
    firsts = [(np.asarray(e["mu"][0], np.float32), np.asarray(e["logvar"][0], np.float32)) for e in episodes]
    return torch.from_numpy(np.stack([m for m, _ in firsts])), torch.from_numpy(np.stack([v for _, v in firsts]))


class LatentChunkDataset(EpisodeWindows):
    """``seq_len`` windows over cached episodes laid end to end (:class:`EpisodeWindows`; ``is_first`` marks starts).

    ``episodes`` is a :class:`LatentEpisodes` (read lazily) or any sequence of dicts of :data:`LATENT_KEYS`.
    """

    keys = LATENT_KEYS

    def __init__(self, episodes: Sequence[Mapping[str, np.ndarray]], *, seq_len: int, stride: int = 1) -> None:
        self.episodes = episodes
        lengths = episodes.lengths if isinstance(episodes, LatentEpisodes) else [len(e["mu"]) for e in episodes]
        super().__init__(lengths, seq_len=seq_len, stride=stride, what="cached episode(s)")

    def open_episode(self, index: int) -> Mapping[str, np.ndarray]:
        return self.episodes[index]

    def to_item(self, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        # mu / logvar (T, Z) float32, action (T, A), reward (T,), terminated (T,), is_first (T,)
        return {key: torch.from_numpy(np.ascontiguousarray(value, np.float32 if key in ("mu", "logvar") else None))
                for key, value in arrays.items()}
