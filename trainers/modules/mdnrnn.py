"""``MDNRNNModule``: fits World Models' M (:class:`~worldmodels.models.mdnrnn.MDNRNN`) on cached latents.

Batches come from :class:`~trainers.data.latents.LatentDataModule` (``mu, logvar (B, T, Z)``,
``action (B, T, A)``, ``reward / terminated / is_first (B, T)``). A fresh
``z = mu + sigma * eps`` is drawn per batch, as the paper does (Ha & Schmidhuber 2018, A.2).
Logs ``{train,val}/loss/{nll,reward,done}``; ``val/loss/nll`` is the held-out NLL per latent dimension.
"""

from __future__ import annotations

import lightning as L
import torch

from trainers.modules.losses import weighted_sum
from worldmodels.models.mdnrnn import MDNRNN

DEFAULT_LOSS_SCALES = {"nll": 1.0, "reward": 1.0, "done": 1.0}


class MDNRNNModule(L.LightningModule):
    def __init__(
        self,
        *,
        z_dim: int = 32,
        action_dim: int = 3,
        hidden_size: int = 256,
        num_mixtures: int = 5,
        learning_rate: float = 1e-3,
        loss_scales: dict[str, float] | None = None,
        done_pos_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.mdnrnn = MDNRNN(z_dim, action_dim, hidden_size, num_mixtures)
        self.learning_rate = learning_rate
        self.loss_scales = dict(loss_scales or DEFAULT_LOSS_SCALES)
        self.done_pos_weight = done_pos_weight  # BCE weight of the rare terminal rows (MDNRNN.loss)

    def forward(self, z: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor | None = None):
        return self.mdnrnn(z, action, is_first)

    def _common_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        mu, logvar = batch["mu"].float(), batch["logvar"].float()  # (B, T, Z)
        B, T, _ = mu.shape
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)  # (B, T, Z) fresh sample per batch
        parts = self.mdnrnn.loss(z, batch["action"].float(), batch["reward"].float(), batch["terminated"], batch["is_first"],
                                  done_pos_weight=self.done_pos_weight)
        loss = weighted_sum(parts, self.loss_scales)
        # Training logs per step, validation per pass: one value per tag, no `_step` / `_epoch` twins.
        per_step = stage == "train"
        for key, value in parts.items():
            self.log(f"{stage}/loss/{key}", value, batch_size=B, on_epoch=not per_step, on_step=per_step,
                     sync_dist=not per_step)  # validation averages over every rank under DDP
        self.log(f"{stage}/loss", loss, batch_size=B, on_epoch=not per_step, on_step=per_step, sync_dist=not per_step)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)
