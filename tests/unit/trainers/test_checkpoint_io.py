"""Issue 15 item 6: a corrupt last.ckpt is named in one line and the stage resumes from the previous checkpoint
(the last 2 are kept), instead of a torch traceback on every rerun."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from trainers.runs.checkpoint_io import previous_checkpoint, resume_checkpoint
from trainers.runs.trainer_factory import fit_resuming, stage_trainer
from worldmodels.checkpoint import CheckpointError, load_lightning_checkpoint


class Fit(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return ((self.net(x) - y) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Data(L.LightningDataModule):
    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(64, 2), torch.randn(64, 1)), batch_size=4)


def _fit(tmp_path, max_steps: int) -> L.Trainer:
    trainer = stage_trainer(run_dir=tmp_path, stage_dir=tmp_path / "vae", name="vae", max_steps=max_steps,
                            device=torch.device("cpu"), checkpoint_every=2, val_batches=0)
    fit_resuming(trainer, Fit(), Data(), tmp_path / "vae")
    return trainer


def test_the_last_two_checkpoints_are_kept(tmp_path):
    _fit(tmp_path, 6)
    last = tmp_path / "vae" / "ckpt" / "last.ckpt"
    assert load_lightning_checkpoint(last)["global_step"] == 6
    assert load_lightning_checkpoint(previous_checkpoint(last))["global_step"] == 4


def test_a_truncated_last_falls_back_to_the_previous(tmp_path):
    _fit(tmp_path, 6)
    last = tmp_path / "vae" / "ckpt" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # a damaged copy / disk error
    with pytest.warns(RuntimeWarning) as record:
        assert resume_checkpoint(last) == previous_checkpoint(last)
    message = str(record[0].message)
    assert "\n" not in message and str(last) in message and "resuming from" in message
    assert (last.parent / "last.ckpt.corrupt").exists() and not last.exists()
    # The rerun resumes from step 4 and trains on to 8; the damaged file never comes back as "previous".
    with pytest.warns(RuntimeWarning):
        last.write_bytes(b"garbage")
        trainer = _fit(tmp_path, 8)
    assert trainer.global_step == 8
    assert load_lightning_checkpoint(last)["global_step"] == 8


def test_no_good_checkpoint_left_is_one_line(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as info:
        resume_checkpoint(ckpt / "last.ckpt")
    assert "\n" not in str(info.value) and "last.ckpt" in str(info.value) and "no good checkpoint" in str(info.value)
    assert resume_checkpoint(ckpt / "last.ckpt") is None  # moved aside: the rerun starts the stage over
