"""``VAEModule``: fits World Models' V (:class:`~worldmodels.models.vae.ConvVAE`) on single frames.

Data: :class:`~trainers.data.datamodule.ChunkDataModule` with ``seq_len=1`` (frames drawn at random
from the store; the VAE sees each frame on its own, Ha & Schmidhuber 2018 Sec. A.1).
Logs ``{train,val}/loss/{rec,kl}``, ``{train,val}/loss`` and a reconstruction grid
(top row: real frames, bottom row: reconstructions) to TensorBoard once per validation.
"""

from __future__ import annotations

import lightning as L
import torch
from einops import rearrange

from trainers.modules.losses import weighted_sum
from worldmodels.models.conv import to_float_image
from worldmodels.models.vae import ConvVAE

DEFAULT_LOSS_SCALES = {"rec": 1.0, "kl": 1.0}


class VAEModule(L.LightningModule):
    def __init__(
        self,
        *,
        image_size: int = 64,
        in_channels: int = 3,
        z_dim: int = 32,
        depth: int = 32,
        stages: int = 4,
        kl_tolerance: float = 0.5,
        learning_rate: float = 1e-3,
        loss_scales: dict[str, float] | None = None,
        grid_frames: int = 8,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.vae = ConvVAE(in_channels, image_size, z_dim, depth, stages)
        self.kl_tolerance = kl_tolerance
        self.learning_rate = learning_rate
        self.loss_scales = dict(loss_scales or DEFAULT_LOSS_SCALES)
        self.grid_frames = grid_frames

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.vae(images)

    def dream_models(self) -> tuple[ConvVAE, None]:
        """What the dream callbacks render: V alone (reconstructions and latent traversals; no M, no policy yet)."""
        return self.vae, None

    def _common_step(self, batch: dict[str, torch.Tensor], stage: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
        obs = batch["obs"]  # (B, T, H, W, C) uint8 -- every frame is an independent sample
        images = to_float_image(rearrange(obs, "b t h w c -> (b t) h w c"))  # (N, C, H, W)
        parts, out = self.vae.loss(images, kl_tolerance=self.kl_tolerance)
        loss = weighted_sum(parts, self.loss_scales)
        batch_size = images.shape[0]
        # Training logs per step, validation per pass: one value per tag, no `_step` / `_epoch` twins.
        per_step = stage == "train"
        for key, value in parts.items():
            self.log(f"{stage}/loss/{key}", value, batch_size=batch_size, on_epoch=not per_step, on_step=per_step,
                     sync_dist=not per_step)  # validation averages over every rank under DDP
        self.log(f"{stage}/loss", loss, batch_size=batch_size, on_epoch=not per_step, on_step=per_step,
                 sync_dist=not per_step)
        return loss, images, out

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "train")[0]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, images, out = self._common_step(batch, "val")
        if batch_idx == 0:
            self._log_grid(images, out["recon"])
        return loss

    def _log_grid(self, images: torch.Tensor, recon: torch.Tensor) -> None:
        experiment = getattr(self.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_image") or self.global_rank != 0:
            return
        n = min(self.grid_frames, images.shape[0])
        pair = torch.stack([images[:n], recon[:n]]) + 0.5  # (2, n, C, H, W) in [0, 1]
        grid = rearrange(pair.clamp(0, 1), "r n c h w -> c (r h) (n w)")  # (C, 2H, nW)
        experiment.add_image("val/reconstruction", grid, self.global_step)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)
