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


class _LayerNormSiLU(torch.autograd.Function):
    """``silu(layer_norm(x))`` over the last axis that keeps only ``x`` (and the row statistics) for backward.

    The unfused pair also keeps the LayerNorm output for SiLU's backward: one activation-sized tensor per
    conv stage (465 MB of a DreamerV3 S-v1 step at B 16 x T 64). Backward recomputes it with one native
    LayerNorm pass, then runs the native SiLU and LayerNorm backward kernels. Both directions work in place
    on the one tensor they allocate: a fresh activation-sized block costs more in page faults (glibc serves
    blocks over 32 MB with new pages) than the SiLU pass itself.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        normed, mean, rstd = torch.native_layer_norm(x, (x.shape[-1],), weight, bias, eps)
        ctx.save_for_backward(x, weight, bias, mean, rstd)
        ctx.eps = eps
        return torch.nn.functional.silu(normed, inplace=True)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, bias, mean, rstd = ctx.saved_tensors
        normed = torch.native_layer_norm(x, (x.shape[-1],), weight, bias, ctx.eps)[0]
        # In place: the recomputed LayerNorm output becomes its own gradient (one activation fewer alive).
        return (*_silu_layer_norm_backward(grad, normed, x, mean, rstd, weight, bias, ctx.needs_input_grad[:3],
                                           into=normed), None)


def _silu_layer_norm_backward(grad, normed, rows, mean, rstd, weight, bias, needs, *, into):
    """Gradients of ``silu(layer_norm(rows))`` for ``(rows, weight, bias)`` from the output gradient ``grad`` and
    the recomputed LayerNorm output ``normed``; SiLU's backward is written in place into ``into`` (``grad`` or
    ``normed``, whichever the caller no longer needs). LayerNorm's backward reads ``rows``, ``mean``, ``rstd``."""
    grad_normed = torch.ops.aten.silu_backward.grad_input(grad, normed, grad_input=into)
    return torch.ops.aten.native_layer_norm_backward(grad_normed, rows, (rows.shape[-1],), mean, rstd, weight, bias,
                                                     list(needs))


class _LayerNormSiLUConv(torch.autograd.Function):
    """``conv(silu(layer_norm(x)))`` that keeps ``x`` (and the row statistics), not the conv's input, for backward.

    A conv keeps its input for its weight gradient: one activation-sized tensor per fused pair (about
    470 MB of a DreamerV3 S-v1 step at B 16 x T 64, encoder and decoder together). Backward recomputes that
    input from ``x`` with the LayerNorm pass :class:`_LayerNormSiLU` runs anyway, plus one SiLU pass, then
    runs the native conv, SiLU and LayerNorm backward kernels. ``x``: ``(N, C, H, W)`` in NHWC memory.
    """

    @staticmethod
    def forward(ctx, x, norm_weight, norm_bias, eps, conv_weight, conv_bias, conv_args):
        rows = x.permute(0, 2, 3, 1)  # (N, H, W, C), contiguous
        normed, mean, rstd = torch.native_layer_norm(rows, (rows.shape[-1],), norm_weight, norm_bias, eps)
        hidden = torch.nn.functional.silu(normed, inplace=True).permute(0, 3, 1, 2)  # (N, C, H, W), NHWC memory
        ctx.save_for_backward(x, norm_weight, norm_bias, mean, rstd, conv_weight)
        ctx.eps, ctx.conv_args, ctx.has_bias = eps, conv_args, conv_bias is not None
        return torch.convolution(hidden, conv_weight, conv_bias, *conv_args)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, norm_weight, norm_bias, mean, rstd, conv_weight = ctx.saved_tensors
        rows = x.permute(0, 2, 3, 1)
        normed = torch.native_layer_norm(rows, (rows.shape[-1],), norm_weight, norm_bias, ctx.eps)[0]
        hidden = torch.nn.functional.silu(normed).permute(0, 3, 1, 2)  # the conv's input, recomputed
        args, transposed, need = ctx.conv_args, ctx.conv_args[3], ctx.needs_input_grad
        bias_sizes = [conv_weight.shape[1 if transposed else 0]] if ctx.has_bias else None
        # Weight gradient first, so the recomputed input is freed before the input gradient is allocated; the
        # input gradient reads only the input's shape and layout, which the LayerNorm output shares.
        # At most three activation-sized blocks are alive at once (x, normed, and hidden or its gradient).
        _, grad_conv_weight, grad_conv_bias = torch.ops.aten.convolution_backward(
            grad, hidden, conv_weight, bias_sizes, *args, [False, need[4], ctx.has_bias and need[5]])
        del hidden
        grad_hidden = torch.ops.aten.convolution_backward(
            grad, normed.permute(0, 3, 1, 2), conv_weight, None, *args, [True, False, False])[0]
        grad_rows = grad_hidden.permute(0, 2, 3, 1).contiguous()
        # SiLU's backward in place into the incoming gradient, so normed can go as soon as it is read.
        grad_x, grad_norm_weight, grad_norm_bias = _silu_layer_norm_backward(
            grad_rows, normed, rows, mean, rstd, norm_weight, norm_bias, need[:3], into=grad_rows)
        grad_x = None if grad_x is None else grad_x.permute(0, 3, 1, 2)
        return grad_x, grad_norm_weight, grad_norm_bias, None, grad_conv_weight, grad_conv_bias, None


def _conv_args(conv: nn.Conv2d | nn.ConvTranspose2d) -> tuple:
    """``torch.convolution``'s arguments after input, weight and bias, for ``conv``."""
    transposed = isinstance(conv, nn.ConvTranspose2d)
    return (conv.stride, conv.padding, conv.dilation, transposed,
            conv.output_padding if transposed else (0, 0), conv.groups)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (N, C, H, W) tensor; ``silu=True`` applies SiLU fused after it.

    The fused form (:class:`_LayerNormSiLU`) runs in fp32 without autocast; otherwise the two ops run
    as usual. Either way the input is NHWC in memory, so the channel rows are contiguous.
    """

    def __init__(self, channels: int, *, silu: bool = False) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.silu = silu

    def fuses(self, x: torch.Tensor) -> bool:
        """Whether ``x`` takes the fused kernels (fp32 LayerNorm + SiLU, no autocast)."""
        return self.silu and x.dtype == self.norm.weight.dtype and not torch.is_autocast_enabled(x.device.type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.permute(0, 2, 3, 1)  # (N, H, W, C)
        if self.fuses(x):
            out = _LayerNormSiLU.apply(rows, self.norm.weight, self.norm.bias, self.norm.eps)
        else:
            out = self.norm(rows)
            out = torch.nn.functional.silu(out) if self.silu else out
        return out.permute(0, 3, 1, 2)


def run_stack(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` for a conv stack, with each fused LayerNorm + SiLU and the conv after it run as one
    :class:`_LayerNormSiLUConv` (same values and gradients, one activation fewer kept per pair)."""
    layers = list(net)
    i = 0
    while i < len(layers):
        layer = layers[i]
        conv = layers[i + 2] if i + 2 < len(layers) else None
        if (isinstance(layer, ChannelLayerNorm) and isinstance(layers[i + 1], nn.Identity)
                and isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and layer.fuses(x)):
            norm = layer.norm
            x = _LayerNormSiLUConv.apply(x, norm.weight, norm.bias, norm.eps, conv.weight, conv.bias, _conv_args(conv))
            i += 3
        else:
            x = layer(x)
            i += 1
    return x


def _norm_act(norm: str, act: str, channels: int) -> list[nn.Module]:
    """``[norm, activation]`` modules; LayerNorm + SiLU fuse into the norm, with an Identity keeping the
    activation's place (checkpoints name the stack's layers by position)."""
    if norm == "layer" and act == "silu":
        return [ChannelLayerNorm(channels, silu=True), nn.Identity()]
    if norm == "layer":
        return [ChannelLayerNorm(channels), ACTIVATIONS[act]()]
    if norm == "none":
        return [nn.Identity(), ACTIVATIONS[act]()]
    raise ValueError(f"unknown norm {norm!r}; choose 'layer' or 'none'")


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
            conv = nn.Conv2d(channels, out, 4, stride=2, padding=1, bias=norm == "none")
            layers += [conv, *_norm_act(norm, act, out)]
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
        x = run_stack(self.net, x)  # (N, C', s, s)
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
                layers += _norm_act(norm, act, out)
            channels = out
        self.net = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.out_channels = out_channels
        self.image_size = image_size

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        lead = features.shape[:-1]
        x = self.project(features.reshape(-1, features.shape[-1]))  # (N, C' * s * s)
        x = rearrange(x, "n (c h w) -> n c h w", c=self.top_channels, h=self.side, w=self.side)
        x = run_stack(self.net, x.contiguous(memory_format=torch.channels_last))  # NHWC memory, as in ConvEncoder  # (N, C, S, S)
        return x.reshape(*lead, self.out_channels, self.image_size, self.image_size)


def to_float_image(obs: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., H, W, C)`` observations -> float ``(..., C, H, W)`` in [-0.5, 0.5]."""
    # One float copy, scaled in place: the out-of-place ops would allocate two more frame-sized blocks.
    images = obs.to(torch.float32, copy=True).div_(255.0).sub_(0.5)
    return rearrange(images, "... h w c -> ... c h w")


def to_uint8_image(images: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_float_image`: float ``(..., C, H, W)`` -> uint8 ``(..., H, W, C)``."""
    return rearrange(((images + 0.5).clamp(0, 1) * 255).round().to(torch.uint8), "... c h w -> ... h w c")
