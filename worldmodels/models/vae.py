"""V: the convolutional variational autoencoder of World Models (Ha & Schmidhuber 2018, Sec. 2.1, A.1).

Each frame is compressed on its own into a small latent ``z``; the sequence model M
and the controller C only ever see ``z``. Encoder and decoder are the shared
:class:`~worldmodels.models.conv.ConvEncoder` / :class:`ConvDecoder` (ReLU, no norm,
as in the paper), with a linear layer to the Gaussian posterior statistics.

Shapes::

    images  (..., C, S, S) float in [-0.5, 0.5]   (see ``to_float_image``)
    mu, logvar, z  (..., Z)
    recon   (..., C, S, S) float in [-0.5, 0.5]
"""

from __future__ import annotations

import torch
from torch import nn

from worldmodels.models.conv import ConvDecoder, ConvEncoder


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, exp(logvar)) || N(0, I) ) summed over the last axis (Kingma & Welling 2014, Appendix B).

    ``-0.5 * sum(1 + logvar - mu^2 - exp(logvar))``; input ``(..., Z)`` -> ``(...,)``.
    """
    return -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


class ConvVAE(nn.Module):
    """Frame ``x`` -> ``q(z|x) = N(mu, diag(exp(logvar)))`` -> reconstruction ``g(z)``."""

    def __init__(self, in_channels: int = 3, image_size: int = 64, z_dim: int = 32, depth: int = 32, stages: int = 4) -> None:
        super().__init__()
        self.encoder = ConvEncoder(in_channels, image_size, depth, stages, norm="none", act="relu")
        self.to_stats = nn.Linear(self.encoder.out_dim, 2 * z_dim)
        self.decoder = ConvDecoder(z_dim, in_channels, image_size, depth, stages, norm="none", act="relu")
        self.z_dim = z_dim
        self.image_size = image_size
        self.in_channels = in_channels

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(..., C, S, S)`` -> ``mu, logvar`` each ``(..., Z)``."""
        features = self.encoder(images)  # (..., F)
        mu, logvar = self.to_stats(features).chunk(2, dim=-1)  # (..., Z) each
        # Bounded log-variance keeps exp() finite early in training; the bound (e^-8 .. e^4) never binds at the optimum.
        return mu, logvar.clamp(-8.0, 4.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``(..., Z)`` -> reconstructed images ``(..., C, S, S)`` in [-0.5, 0.5] (sigmoid output, as Ha)."""
        return torch.sigmoid(self.decoder(z)) - 0.5

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``z = mu + sigma * eps`` (Kingma & Welling 2014, Eq. 10)."""
        return mu + (0.5 * logvar).exp() * torch.randn_like(mu)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(images)  # (..., Z)
        z = self.reparameterize(mu, logvar)  # (..., Z)
        return {"mu": mu, "logvar": logvar, "z": z, "recon": self.decode(z)}

    def loss(self, images: torch.Tensor, *, kl_tolerance: float = 0.5) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Negative ELBO parts (Kingma & Welling 2014, Eq. 10), unweighted, each averaged over the batch.

        ``rec``: squared error summed over pixels and channels (Ha's L2 reconstruction, a Gaussian
        log-likelihood up to constants). ``kl``: ``max(KL, kl_tolerance * Z)`` -- Ha's free-bits
        tolerance, which stops the KL term pushing below ``kl_tolerance`` nats per dimension.
        Returns ``(parts, outputs)``.
        """
        out = self(images)
        lead = images.shape[:-3]
        rec = (out["recon"] - images).pow(2).reshape(*lead, -1).sum(-1)  # (...,)
        kl = gaussian_kl(out["mu"], out["logvar"])  # (...,)
        kl = kl.clamp(min=kl_tolerance * self.z_dim)  # per frame, as Ha's tf.maximum before the batch mean
        return {"rec": rec.mean(), "kl": kl.mean()}, out
