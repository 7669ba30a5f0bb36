"""``wm bench --what replay``: the online replay at ``--capacity`` rows with its frames on disk, against RAM.

Fills a one-stream :class:`~trainers.data.online.StreamReplay` with ``--capacity`` synthetic 64 x 64 rows (frames on
disk: one preallocated file, :mod:`worldmodels.data.frame_ring`), then times sampling ``B x T`` batches
(``--replay-batch`` x ``--replay-seq``, DreamerV3's 16 x 64). The same is timed with the frames in RAM at
``min(--capacity, --replay-ram-capacity)`` rows, the in-memory replay every run used before (a million RAM rows
would take 12.3 GB). Peak RSS is read after the disk part, before the RAM part allocates anything.

Reads come from the kernel's page cache while it holds the file (here: most of it, after the fill); on a machine
with less free memory than the ring, some samples read the disk itself.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from trainers.bench.config import BenchConfig, steps_and_warmup
from trainers.data.online import StreamReplay
from worldmodels import profiling
from worldmodels.envs.spaces import ActionSpec

_DISTINCT_FRAMES = 1024  # distinct synthetic frames written round-robin (content does not change the timing)


def _filled(capacity: int, side: int, frames: str, directory: Path, seed: int) -> tuple[StreamReplay, float]:
    replay = StreamReplay(streams=1, capacity=capacity, obs_shape=(side, side, 3), action_spec=ActionSpec("discrete", 18),
                          frames=frames, frames_dir=directory)
    pool = np.random.default_rng(seed).integers(0, 256, (_DISTINCT_FRAMES, side, side, 3), dtype=np.uint8)
    began = time.perf_counter()
    for t in range(capacity):
        replay.add(0, {"obs": pool[t % _DISTINCT_FRAMES], "action": np.int64(t % 18), "reward": np.float32(0.0),
                       "terminated": False, "truncated": False, "is_first": t % 1000 == 0})
    return replay, time.perf_counter() - began


def _sampling_rates(replay: StreamReplay, config: BenchConfig, steps: int, warmup: int) -> dict:
    rng = np.random.default_rng(config.seed)
    seconds = profiling.time_repeats(lambda: replay.sample(rng, config.replay_batch, config.replay_seq), steps=steps,
                                     repeats=config.repeats, warmup=warmup)
    return profiling.rates(seconds)


def bench_replay(config: BenchConfig) -> dict:
    """Batches/s sampled from a ``--capacity``-row replay with frames on disk vs in RAM, and the disk run's peak RSS."""
    from trainers.bench.models import _record  # the common record fields of every kind

    steps, warmup = steps_and_warmup(config, "replay")
    side, capacity = config.image_size, config.capacity
    with tempfile.TemporaryDirectory(prefix="wm-bench-replay-") as directory:
        disk, disk_fill = _filled(capacity, side, "disk", Path(directory), config.seed)
        disk_rates = _sampling_rates(disk, config, steps, warmup)
        disk_peak = profiling.peak_rss_mb()
        disk.close()
    ram_capacity = min(capacity, config.replay_ram_capacity)
    ram, ram_fill = _filled(ram_capacity, side, "ram", Path(tempfile.gettempdir()), config.seed)
    ram_rates = _sampling_rates(ram, config, steps, warmup)
    ram.close()
    frame_bytes = side * side * 3
    return _record("replay", config, "cpu", steps=steps, warmup=warmup, batch=config.replay_batch,
                   seq_len=config.replay_seq, image_size=side,
                   disk={"capacity": capacity, "frames_gb": capacity * frame_bytes / 1e9, "fill_s": disk_fill,
                         "batches_per_s": disk_rates, "peak_rss_mb": disk_peak},
                   ram={"capacity": ram_capacity, "frames_gb": ram_capacity * frame_bytes / 1e9, "fill_s": ram_fill,
                        "batches_per_s": ram_rates},
                   disk_vs_ram=disk_rates["median"] / ram_rates["median"])
