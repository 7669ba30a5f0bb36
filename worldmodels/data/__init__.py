"""Episode store, vectorised collection and chunk datasets (see DESIGN.md for the on-disk contract)."""

from worldmodels.data.chunks import ChunkDataset
from worldmodels.data.collect import CollectStats, RandomPolicy, collect_episodes, store_spec_for
from worldmodels.data.store import Episode, EpisodeInfo, EpisodeStore, StoreSpec, ensure_writable_dir, read_spec

__all__ = [
    "ChunkDataset",
    "CollectStats",
    "Episode",
    "EpisodeInfo",
    "EpisodeStore",
    "RandomPolicy",
    "StoreSpec",
    "collect_episodes",
    "ensure_writable_dir",
    "read_spec",
    "store_spec_for",
]
