"""ChunkDataset / ChunkDataModule: batch contract, is_first at episode starts, seeded split, workers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from trainers.data.datamodule import ChunkDataModule
from worldmodels.data.chunks import ChunkDataset
from worldmodels.data.store import EpisodeStore
from worldmodels.envs.spaces import ActionSpec

OBS_SHAPE = (8, 8, 3)
LENGTHS = (5, 9, 3, 12, 7, 4, 10, 6)


def make_store(root, lengths=LENGTHS) -> EpisodeStore:
    """Each frame's pixel (0, 0) holds (episode number, row): windows can be decoded exactly."""
    store = EpisodeStore.create(root, env_id="Toy-v0", obs_shape=OBS_SHAPE, action_spec=ActionSpec("discrete", 3))
    for number, length in enumerate(lengths):
        obs = np.zeros((length, *OBS_SHAPE), np.uint8)
        obs[:, 0, 0, 0] = number
        obs[:, 0, 0, 1] = np.arange(length)
        action = np.arange(length) % 3
        action[-1] = 0
        reward = np.arange(length, dtype=np.float32)
        terminated = np.zeros(length, bool)
        terminated[-1] = True
        store.add_episode(obs, action, reward, terminated, np.zeros(length, bool))
    return store


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    make_store(root)
    return str(root)


def test_batch_shapes_dtypes_and_action_encoding(store_dir):
    dm = ChunkDataModule(store_dir, seq_len=6, batch_size=4, samples_per_epoch=8, seed=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    B, T = 4, 6
    assert batch["obs"].shape == (B, T, *OBS_SHAPE) and batch["obs"].dtype == torch.uint8
    assert batch["action"].shape == (B, T, 3) and batch["action"].dtype == torch.float32
    for key in ("reward",):
        assert batch[key].shape == (B, T) and batch[key].dtype == torch.float32
    for key in ("terminated", "truncated", "is_first"):
        assert batch[key].shape == (B, T) and batch[key].dtype == torch.bool
    # Rows of the toy store: action = row % 3 (one-hot), last row zeros; reward = row.
    row = batch["obs"][..., 0, 0, 1].long()
    last = batch["terminated"]
    expected_action = torch.where(last, torch.zeros_like(row), row % 3)
    assert torch.equal(batch["action"], torch.nn.functional.one_hot(expected_action, 3).float())
    assert torch.equal(batch["reward"], row.float())
    assert len(dm.train_dataloader()) == 2 and dm.hparams["seq_len"] == 6


def test_is_first_exactly_at_episode_starts_inside_windows(store_dir):
    names = EpisodeStore.open(store_dir).names
    dataset = ChunkDataset(store_dir, names, seq_len=8)
    assert len(dataset) == sum(LENGTHS) - 8 + 1
    crossings = 0
    for k in range(len(dataset)):
        item = dataset[k]
        episode, row = item["obs"][:, 0, 0, 0].long(), item["obs"][:, 0, 0, 1].long()
        assert torch.equal(item["is_first"], row == 0)
        # Consecutive stream rows: the same episode one row on, or row 0 of the next episode.
        same = (episode[1:] == episode[:-1]) & (row[1:] == row[:-1] + 1)
        nxt = (episode[1:] == episode[:-1] + 1) & (row[1:] == 0)
        assert bool((same | nxt).all())
        # terminated sits on the row before each new episode (the previous episode's last row).
        assert torch.equal(item["terminated"][:-1], item["is_first"][1:])
        crossings += int(item["is_first"][1:].any())
    assert crossings > 0
    assert dataset[0]["is_first"][0] and not dataset[1]["is_first"][0]


def test_split_is_by_episode_disjoint_and_seeded(store_dir):
    def split(seed):
        dm = ChunkDataModule(store_dir, seq_len=4, batch_size=2, val_fraction=0.25, seed=seed)
        dm.setup("fit")
        return dm.train_episodes, dm.val_episodes

    train, val = split(0)
    assert len(val) == 2 and set(train).isdisjoint(val) and sorted(train + val) == EpisodeStore.open(store_dir).names
    assert split(0) == (train, val)
    assert any(split(seed)[1] != val for seed in range(1, 6))


def test_two_episodes_give_val_one(tmp_path):
    make_store(tmp_path, lengths=(6, 6))
    dm = ChunkDataModule(str(tmp_path), seq_len=4, batch_size=2, val_fraction=0.1)
    dm.setup("fit")
    assert len(dm.train_episodes) == 1 and len(dm.val_episodes) == 1
    batch = next(iter(dm.val_dataloader()))
    assert batch["obs"].shape == (1, 4, *OBS_SHAPE)  # one non-overlapping window of the 6-frame episode


def test_val_windows_are_fixed_and_non_overlapping(store_dir):
    dm = ChunkDataModule(store_dir, seq_len=5, batch_size=3, val_fraction=0.25, seed=0)
    dm.setup("validate")
    starts = dm.val_dataset.starts
    assert np.array_equal(starts, np.arange(0, dm.val_dataset.num_frames - 5 + 1, 5))
    first = [b["obs"] for b in dm.val_dataloader()]
    second = [b["obs"] for b in dm.val_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_train_windows_are_seeded_and_change_between_epochs(store_dir):
    def starts_of(loader):
        return [tuple(b["obs"][:, 0, 0, :2].flatten().tolist()) for b in loader]

    dm = ChunkDataModule(store_dir, seq_len=4, batch_size=4, samples_per_epoch=12, seed=7)
    dm.setup("fit")
    loader = dm.train_dataloader()
    epoch0, epoch1 = starts_of(loader), starts_of(loader)
    assert epoch0 != epoch1 and len(epoch0) == 3
    again = ChunkDataModule(store_dir, seq_len=4, batch_size=4, samples_per_epoch=12, seed=7)
    again.setup("fit")
    assert starts_of(again.train_dataloader()) == epoch0


def test_two_workers_give_the_same_batches_as_zero(store_dir):
    def batches(num_workers):
        dm = ChunkDataModule(store_dir, seq_len=6, batch_size=4, samples_per_epoch=16, seed=3, num_workers=num_workers)
        dm.setup("fit")
        return list(dm.train_dataloader())

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 4
    for a, b in zip(serial, parallel):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_dataset_pickles_without_open_maps(store_dir):
    """A DataLoader worker receives the dataset through ``__getstate__``; ``copy.deepcopy`` takes the same path
    without loading any pickle."""
    dataset = ChunkDataset(store_dir, EpisodeStore.open(store_dir).names, seq_len=4)
    first = dataset[0]
    assert len(dataset._open) > 0
    clone = copy.deepcopy(dataset)
    assert len(clone._open) == 0 and torch.equal(clone[0]["obs"], first["obs"])


def test_too_few_frames_is_a_one_line_error(tmp_path):
    make_store(tmp_path, lengths=(3, 4))
    dm = ChunkDataModule(str(tmp_path), seq_len=8, batch_size=2)
    with pytest.raises(ValueError, match="fewer than seq_len=8") as error:
        dm.setup("fit")
    assert "\n" not in str(error.value)


def test_bad_arguments_are_refused(store_dir):
    with pytest.raises(ValueError, match="val_fraction"):
        ChunkDataModule(store_dir, val_fraction=1.0)
    with pytest.raises(ValueError, match="seq_len"):
        ChunkDataModule(store_dir, seq_len=0)
