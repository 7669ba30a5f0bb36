"""The replay's frames on disk (worldmodels.data.frame_ring): the same bytes as in RAM, bounded RAM, one-line errors.

A disk ring must be a drop-in for the RAM one: every sample, and so every update and an exact resume, reads the
same rows whichever ``--replay-frames`` a run uses.
"""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch

from scripts import cli
from trainers.data.online import StreamReplay
from worldmodels.data.frame_ring import AUTO_DISK_BYTES, FrameRing, uses_disk
from worldmodels.envs.spaces import ActionSpec


def _rows(count: int, shape=(4, 4, 3), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *shape), dtype=np.uint8)


def test_disk_and_ram_rings_read_the_same_windows_across_the_wrap(tmp_path):
    rows = _rows(23)  # 23 rows through a 10-slot ring: every slot overwritten at least twice
    ram, disk = FrameRing(10, (4, 4, 3), np.uint8), FrameRing(10, (4, 4, 3), np.uint8, path=tmp_path / "f.bin")
    for r, row in enumerate(rows):
        ram.write(r % 10, row)
        disk.write(r % 10, row)
    assert disk.on_disk and not ram.on_disk and os.path.getsize(tmp_path / "f.bin") == 10 * 48
    for start in range(10):
        for length in (1, 4, 10):  # whole, within, and wrapping windows
            np.testing.assert_array_equal(disk.read(start, length), ram.read(start, length), err_msg=f"{start}+{length}")
    np.testing.assert_array_equal(ram.read(3, 7), rows[13:20])  # slots 3..9 hold rows 13..19, slots 0..2 rows 20..22
    disk.close(remove=True)
    assert not (tmp_path / "f.bin").exists()


def test_float_vector_rows_round_trip_on_disk(tmp_path):
    ring = FrameRing(5, (3,), np.float32, path=tmp_path / "v.bin")
    values = np.arange(15, dtype=np.float32).reshape(5, 3) / 7
    for slot, row in enumerate(values):
        ring.write(slot, row)
    np.testing.assert_array_equal(ring.read(3, 4), values[[3, 4, 0, 1]])


def _replay(tmp_path, frames: str) -> StreamReplay:
    return StreamReplay(streams=2, capacity=40, obs_shape=(4, 4, 3), action_spec=ActionSpec("discrete", 3),
                        frames=frames, frames_dir=tmp_path / frames)


def test_a_stream_replay_samples_identical_batches_from_disk_and_ram(tmp_path):
    replays = {mode: _replay(tmp_path, mode) for mode in ("ram", "disk")}
    frames = _rows(60, seed=1)
    for t in range(60):  # two streams of 30 rows through rings of 20: both wrap
        row = {"obs": frames[t], "action": np.int64(t % 3), "reward": np.float32(t), "terminated": False,
               "truncated": False, "is_first": t % 7 == 0}
        for replay in replays.values():
            replay.add(t % 2, row)
    assert replays["disk"].frames_on_disk and not replays["ram"].frames_on_disk
    a, b = (replay.sample(np.random.default_rng(5), 6, 8) for replay in replays.values())
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    replays["disk"].close()
    assert not list((tmp_path / "disk").iterdir())  # the run's frame files are removed; the directory stays


def test_auto_keeps_small_rings_in_ram_and_large_ones_on_disk():
    frame = (64, 64, 3)
    assert not uses_disk("auto", 100_000, frame, np.uint8)  # the cpu preset's 1.2 GB replay stays in RAM
    assert uses_disk("auto", 1_000_000, frame, np.uint8) and 1_000_000 * 12288 > AUTO_DISK_BYTES
    assert uses_disk("disk", 10, frame, np.uint8) and not uses_disk("ram", 10**7, frame, np.uint8)
    with pytest.raises(ValueError, match="replay frames must be one of"):
        uses_disk("tape", 10, frame, np.uint8)


def test_a_disk_too_small_for_the_ring_is_refused_at_the_start(tmp_path, monkeypatch):
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(ValueError, match=r"needs .* GB of disk for 1,000,000 rows.*lower --capacity") as error:
        FrameRing(1_000_000, (64, 64, 3), np.uint8, path=tmp_path / "big.bin")
    assert "\n" not in str(error.value) and not (tmp_path / "big.bin").exists()


def test_a_dreamer_run_states_its_capacity_and_trains_bit_identically_with_frames_on_disk(tmp_path, capsys):
    sums = {}
    for frames, where in (("ram", "in RAM"), ("disk", "on disk")):
        run_dir = tmp_path / frames
        args = ["dreamer", "--preset", "debug", "--env", "worldmodels/Catch-v0", "--steps", "260", "--evaluate",
                "false", "--capacity", "250", "--replay-frames", frames, "--run-dir", str(run_dir)]
        assert cli.main(args) == 0
        out = capsys.readouterr().out
        assert f"replay capacity 250 rows, frames {where}" in out and "--steps 260 exceeds it" in out, out
        assert not list(run_dir.glob("replay/**/*.bin"))  # the frame files went with the run's end
        weights = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["state_dict"]
        sums[frames] = {key: float(value.double().sum()) for key, value in weights.items()}
    assert sums["ram"] == sums["disk"]  # the same rows sampled: the same updates, bit for bit
