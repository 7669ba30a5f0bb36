"""Issue 15 item 1: a non-finite loss or gradient stops a stage in one line naming stage, step and loss part,
before the optimiser step; the last good checkpoint stays, and CMA-ES refuses a NaN fitness."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from trainers.runs.trainer_factory import fit_resuming, stage_trainer
from worldmodels.checkpoint import load_lightning_checkpoint
from worldmodels.controllers.cmaes import train_cmaes
from worldmodels.finite import NonFiniteError

BAD_STEP = 5


class Diverging(L.LightningModule):
    """A linear fit whose loss part ``rec`` turns NaN at optimiser step ``BAD_STEP``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        rec = ((self.net(x) - y) ** 2).mean()
        if self.global_step == BAD_STEP:
            rec = rec * float("nan")
        self.log("train/loss/rec", rec, on_step=True, on_epoch=True)
        self.log("train/loss", rec, on_step=True)
        return rec

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Data(L.LightningDataModule):
    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(64, 2), torch.randn(64, 1)), batch_size=4)


def test_nan_loss_stops_the_stage_and_keeps_the_last_good_checkpoint(tmp_path):
    stage_dir = tmp_path / "vae"
    trainer = stage_trainer(run_dir=tmp_path, stage_dir=stage_dir, name="vae", max_steps=20, device=torch.device("cpu"),
                            checkpoint_every=2, val_batches=0)
    module = Diverging()
    with pytest.raises(NonFiniteError) as info:
        fit_resuming(trainer, module, Data(), stage_dir)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"vae step {BAD_STEP}: loss part 'rec' is nan"), message
    assert all(torch.isfinite(p).all() for p in module.parameters())  # the bad step was never applied
    checkpoint = load_lightning_checkpoint(stage_dir / "ckpt" / "last.ckpt")
    assert checkpoint["global_step"] == 4  # the last one written before the NaN
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())


def test_inf_gradient_is_named(tmp_path):
    class InfGrad(Diverging):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            # finite loss, infinite gradient: d/dw sqrt(w^2) at w = 0
            return loss + torch.sqrt((self.net.weight[0, 0] * 0.0) ** 2) if self.global_step == 2 else loss

    trainer = stage_trainer(run_dir=tmp_path, stage_dir=tmp_path / "m", name="mdnrnn", max_steps=10,
                            device=torch.device("cpu"), checkpoint_every=100, val_batches=0)
    with pytest.raises(NonFiniteError, match=r"^mdnrnn step 2: gradient norm is nan"):
        fit_resuming(trainer, InfGrad(), Data(), tmp_path / "m")


def test_cmaes_refuses_a_nan_fitness(tmp_path):
    def fitness(params: torch.Tensor) -> torch.Tensor:
        scores = -params.pow(2).sum(1)
        scores[1] = float("nan")
        return scores

    with pytest.raises(NonFiniteError, match=r"^controller \(CMA-ES\) generation 1: fitness is nan"):
        train_cmaes(fitness, 3, generations=3, population=4, checkpoint_dir=tmp_path)
    assert not (tmp_path / "es_state.npz").exists()  # nothing of the NaN generation was saved
    assert np.isfinite(train_cmaes(lambda p: -p.pow(2).sum(1), 3, generations=1, population=4)["best_fitness"])
