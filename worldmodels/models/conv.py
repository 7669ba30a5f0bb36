"""Convolutional image encoder and decoder shared by both families.

World Models (Ha & Schmidhuber 2018, Sec. A.1) and DreamerV3 (Hafner et al. 2023,
Sec. B) both use a stack of stride-2, kernel-4 convolutions that halves the image
side per stage and doubles the channel count. One implementation serves both;
``norm="layer", act="silu"`` gives DreamerV3's LayerNorm + SiLU variant,
``norm="none", act="relu"`` the original World Models VAE.

Shapes (``S`` = image side, ``D`` = depth, ``L`` = number of stages):
    images   (..., C, S, S) float, roughly in [-0.5, 0.5]
    features (..., 2**(L-1) * D * (S / 2**L) ** 2)
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU, "elu": nn.ELU}


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (N, C, H, W) tensor."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "layer":
        return ChannelLayerNorm(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose 'layer' or 'none'")


def check_image_size(image_size: int, stages: int) -> None:
    if image_size % (2**stages) != 0 or image_size < 2**stages:
        raise ValueError(
            f"image side {image_size} must be a positive multiple of {2**stages} for a {stages}-stage conv stack "
            f"(e.g. 64 or 96 with 4 stages)"
        )


class ConvEncoder(nn.Module):
    """Images ``(..., C, S, S)`` -> flat features ``(..., out_dim)``."""

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 64,
        depth: int = 32,
        stages: int = 4,
        *,
        norm: str = "none",
        act: str = "relu",
    ) -> None:
        super().__init__()
        check_image_size(image_size, stages)
        layers: list[nn.Module] = []
        channels = in_channels
        for stage in range(stages):
            out = depth * 2**stage
            layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1, bias=norm == "none"), _norm(norm, out), ACTIVATIONS[act]()]
            channels = out
        self.net = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.image_size = image_size
        self.out_channels = channels
        self.out_side = image_size // 2**stages
        self.out_dim = channels * self.out_side**2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-3:] != (self.in_channels, self.image_size, self.image_size):
            raise ValueError(
                f"ConvEncoder expects images (..., {self.in_channels}, {self.image_size}, {self.image_size}), "
                f"got {tuple(images.shape)}"
            )
        lead = images.shape[:-3]
        # NHWC memory (free for uint8 NHWC observations, see to_float_image): oneDNN's NHWC convolutions
        # are ~1.7x faster than NCHW on CPU, and ChannelLayerNorm then normalises contiguous rows.
        x = images.reshape(-1, *images.shape[-3:]).contiguous(memory_format=torch.channels_last)  # (N, C, S, S)
        x = self.net(x)  # (N, C', s, s)
        return x.reshape(*lead, self.out_dim)


class ConvDecoder(nn.Module):
    """Features ``(..., in_dim)`` -> image means ``(..., C, S, S)`` (mirror of :class:`ConvEncoder`)."""

    def __init__(
        self,
        in_dim: int,
        out_channels: int = 3,
        image_size: int = 64,
        depth: int = 32,
        stages: int = 4,
        *,
        norm: str = "none",
        act: str = "relu",
    ) -> None:
        super().__init__()
        check_image_size(image_size, stages)
        self.side = image_size // 2**stages
        self.top_channels = depth * 2 ** (stages - 1)
        self.project = nn.Linear(in_dim, self.top_channels * self.side**2)
        layers: list[nn.Module] = []
        channels = self.top_channels
        for stage in reversed(range(stages)):
            last = stage == 0
            out = out_channels if last else depth * 2 ** (stage - 1)
            layers.append(nn.ConvTranspose2d(channels, out, 4, stride=2, padding=1, bias=last or norm == "none"))
            if not last:
                layers += [_norm(norm, out), ACTIVATIONS[act]()]
            channels = out
        self.net = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.out_channels = out_channels
        self.image_size = image_size

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        lead = features.shape[:-1]
        x = self.project(features.reshape(-1, features.shape[-1]))  # (N, C' * s * s)
        x = rearrange(x, "n (c h w) -> n c h w", c=self.top_channels, h=self.side, w=self.side)
        x = self.net(x.contiguous(memory_format=torch.channels_last))  # NHWC memory, as in ConvEncoder  # (N, C, S, S)
        return x.reshape(*lead, self.out_channels, self.image_size, self.image_size)


def to_float_image(obs: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., H, W, C)`` observations -> float ``(..., C, H, W)`` in [-0.5, 0.5]."""
    return rearrange(obs.float() / 255.0 - 0.5, "... h w c -> ... c h w")


def to_uint8_image(images: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_float_image`: float ``(..., C, H, W)`` -> uint8 ``(..., H, W, C)``."""
    return rearrange(((images + 0.5).clamp(0, 1) * 255).round().to(torch.uint8), "... c h w -> ... h w c")
