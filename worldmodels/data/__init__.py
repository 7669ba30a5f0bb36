"""Episode store, collection through the env driver, and windowed datasets (see DESIGN.md for the on-disk contract)."""

from worldmodels.data.chunks import ChunkDataset
from worldmodels.data.collect import CollectStats, StoreWriter, collect_episodes, resume_seed, store_spec_for
from worldmodels.data.store import Episode, EpisodeInfo, EpisodeStore, StoreSpec, ensure_writable_dir, read_spec
from worldmodels.data.windows import EpisodeWindows, split_episodes

__all__ = [
    "ChunkDataset",
    "CollectStats",
    "Episode",
    "EpisodeInfo",
    "EpisodeStore",
    "EpisodeWindows",
    "StoreSpec",
    "StoreWriter",
    "collect_episodes",
    "ensure_writable_dir",
    "read_spec",
    "resume_seed",
    "split_episodes",
    "store_spec_for",
]
