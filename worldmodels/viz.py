"""Seeing the dreams: frame layouts, GIF / MP4 encoding and TensorBoard image summaries.

Everything here works on uint8 ``(..., H, W, C)`` frames (numpy arrays or CPU tensors) and
needs only numpy + Pillow (+ TensorBoard's protobufs for summaries). MP4 needs imageio's
ffmpeg or pyav plugin and is optional: :func:`mp4_available` says whether it can be written.

Why not ``SummaryWriter.add_video``: it encodes through moviepy, and with moviepy >= 2 it only
prints "can't import moviepy.editor" and writes nothing. :func:`add_gif_summary` instead writes
an image summary whose encoded bytes are an animated GIF, which is exactly what TensorBoard's
image dashboard plays back.

Layouts (``b`` = border, ``h`` = header height, tiles are ``H x W`` after ``scale``)::

    compare_strip        +--------------------------------------------+  header: "true t=3 | context | |error|"
                         |b+----+b  b+----+b  b+----+b|                   border: green = real context frame,
                         | |true|    |pred|    |err | |                           red   = imagined frame
                         |b+----+b  b+----+b  b+----+b|
                         +--------------------------------------------+

    dream_frames         border-coloured frame, then an info panel: text "r=+0.50 end=0.10" (when it
                         fits), a reward bar (green right of centre for positive, red left for
                         negative) and an end-probability bar (orange, left to right).
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import GifImagePlugin, Image, ImageDraw, ImageFont

CONTEXT_COLOR = (40, 200, 60)  # real frames the model was given
IMAGINED_COLOR = (220, 40, 40)  # frames the model imagined
HEADER_BG = (24, 24, 24)
TEXT_COLOR = (235, 235, 235)
END_COLOR = (255, 150, 0)
HEADER_HEIGHT = 12


# ----------------------------------------------------------------------------- basics
def as_uint8(frames: Any) -> np.ndarray:
    """numpy / torch uint8 frames ``(..., H, W, C)`` -> numpy uint8 (no copy for numpy input)."""
    if hasattr(frames, "detach"):  # torch.Tensor without importing torch here
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (..., H, W, C), got dtype {frames.dtype} shape {frames.shape}")
    if frames.ndim < 3 or frames.shape[-1] not in (1, 3):
        raise ValueError(f"expected frames (..., H, W, C) with C in (1, 3), got shape {frames.shape}")
    return frames


def _rgb(frames: np.ndarray) -> np.ndarray:
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscale of ``(..., H, W, C)`` by an integer factor (64 px frames are tiny on screen)."""
    if scale == 1:
        return frames
    return frames.repeat(scale, axis=-3).repeat(scale, axis=-2)


def frame_mse(true: Any, pred: Any) -> np.ndarray:
    """Mean squared error per frame on the [0, 1] scale: ``(..., H, W, C)`` x2 -> ``(...)``."""
    true, pred = as_uint8(true), as_uint8(pred)
    assert true.shape == pred.shape, f"true {true.shape} vs pred {pred.shape}"
    diff = true.astype(np.float64) / 255.0 - pred.astype(np.float64) / 255.0
    return (diff**2).mean(axis=(-3, -2, -1))


def psnr(true: Any, pred: Any, *, max_db: float = 100.0) -> np.ndarray:
    """Peak signal-to-noise ratio per frame in dB, ``10 log10(1 / MSE)``; identical frames give ``max_db``."""
    mse = frame_mse(true, pred)
    return np.minimum(10.0 * np.log10(1.0 / np.maximum(mse, 1e-12)), max_db)


def error_image(true: Any, pred: Any, *, gain: float = 1.0) -> np.ndarray:
    """``|true - pred|`` per pixel and channel as uint8 (``gain`` > 1 brightens small errors)."""
    true, pred = as_uint8(true), as_uint8(pred)
    diff = np.abs(true.astype(np.int16) - pred.astype(np.int16)).astype(np.float32) * gain
    return np.clip(diff, 0, 255).astype(np.uint8)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _draw_text(image: np.ndarray, text: str, x: int, y: int, max_width: int) -> None:
    """Draw ``text`` into ``image (H, W, 3)`` in place if it fits in ``max_width`` pixels; else draw nothing."""
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    if draw.textlength(text, font=_font()) > max_width:
        return
    draw.text((x, y), text, fill=TEXT_COLOR, font=_font())
    image[...] = np.asarray(pil)


def add_border(frames: np.ndarray, color: Sequence[int], width: int) -> np.ndarray:
    """Pad ``(..., H, W, 3)`` with a ``width``-pixel border of ``color``."""
    if width == 0:
        return frames
    lead = frames.shape[:-3]
    H, W, C = frames.shape[-3:]
    out = np.empty((*lead, H + 2 * width, W + 2 * width, C), np.uint8)
    out[...] = np.asarray(color, np.uint8)
    out[..., width : width + H, width : width + W, :] = frames
    return out


# ----------------------------------------------------------------------------- layouts
@dataclass(frozen=True)
class StripLayout:
    """Geometry of a :func:`compare_strip` frame, so callers (and tests) can cut the tiles back out."""

    height: int  # tile height after scale
    width: int  # tile width after scale
    border: int
    header: int
    tiles: int = 3

    @property
    def shape(self) -> tuple[int, int]:
        return self.header + self.height + 2 * self.border, self.tiles * (self.width + 2 * self.border)

    def tile(self, strip: np.ndarray, index: int) -> np.ndarray:
        """The ``index``-th tile (0 true, 1 predicted, 2 error) of strips ``(..., H', W', C)`` -> ``(..., H, W, C)``."""
        y = self.header + self.border
        x = index * (self.width + 2 * self.border) + self.border
        return strip[..., y : y + self.height, x : x + self.width, :]


def compare_strip(
    true: Any,
    pred: Any,
    context: int,
    *,
    border: int = 2,
    scale: int = 1,
    labels: bool = True,
    error_gain: float = 1.0,
) -> np.ndarray:
    """true | predicted | |error| side by side per frame: ``(T, H, W, C)`` x2 -> ``(T, H', W', 3)``.

    Frames ``t < context`` are real context frames (green border, header "context"); later frames
    are imagined (red border, header "dream"). The header also names the time step, which keeps
    consecutive frames distinct. Use :func:`strip_layout` to find the tiles again.
    """
    true, pred = _rgb(as_uint8(true)), _rgb(as_uint8(pred))
    assert true.shape == pred.shape and true.ndim == 4, f"want true, pred (T, H, W, C), got {true.shape} {pred.shape}"
    T = true.shape[0]
    err = error_image(true, pred, gain=error_gain)
    layout = strip_layout(true.shape[1:3], border=border, scale=scale, labels=labels)
    strips = np.empty((T, *layout.shape, 3), np.uint8)
    strips[:, : layout.header] = HEADER_BG
    tile_width = layout.width + 2 * border
    for t in range(T):
        real = t < context
        color = CONTEXT_COLOR if real else IMAGINED_COLOR
        for index, tile in enumerate((true[t], pred[t], err[t])):
            strips[t, layout.header :, index * tile_width : (index + 1) * tile_width] = add_border(upscale(tile, scale), color, border)
        if labels:
            for index, text in enumerate((f"true t={t}", "context" if real else "dream", "|error|")):
                _draw_text(strips[t], text, index * tile_width + 2, 0, tile_width - 2)
    return strips  # (T, H', W', 3)


def strip_layout(image_hw: tuple[int, int], *, border: int = 2, scale: int = 1, labels: bool = True) -> StripLayout:
    """The :class:`StripLayout` that :func:`compare_strip` uses for ``(H, W)`` frames."""
    return StripLayout(image_hw[0] * scale, image_hw[1] * scale, border, HEADER_HEIGHT if labels else 0)


def info_panel(width: int, reward: float, end: float, *, reward_scale: float = 1.0, labels: bool = True) -> np.ndarray:
    """A ``(P, width, 3)`` panel showing a predicted reward and end probability as bars (and text if it fits).

    Reward bar: from the centre, right and green for positive, left and red for negative, full
    half-width at ``|reward| >= reward_scale``. End bar: orange, ``end * width`` pixels from the left.
    """
    text_height = HEADER_HEIGHT if labels else 0
    bar = 4
    panel = np.full((text_height + 2 * bar + 1, width, 3), HEADER_BG, np.uint8)
    if labels:
        _draw_text(panel, f"r={reward:+.2f} end={end:.2f}", 1, 0, width - 1)
    centre = width // 2
    reach = int(round(min(abs(reward) / max(reward_scale, 1e-8), 1.0) * (width - centre)))
    y = text_height
    if reward >= 0:
        panel[y : y + bar, centre : centre + reach] = CONTEXT_COLOR
    else:
        panel[y : y + bar, max(centre - reach, 0) : centre] = IMAGINED_COLOR
    panel[y : y + bar, centre] = TEXT_COLOR  # the zero mark
    y += bar + 1
    panel[y : y + bar, : int(round(float(np.clip(end, 0.0, 1.0)) * width))] = END_COLOR
    return panel


def dream_frames(
    frames: Any,
    reward: Sequence[float] | np.ndarray,
    end: Sequence[float] | np.ndarray,
    *,
    context: int = 0,
    border: int = 2,
    scale: int = 1,
    reward_scale: float = 1.0,
    labels: bool = True,
) -> np.ndarray:
    """A dream as frames with a reward / end overlay: ``(T, H, W, C)``, ``reward, end (T,)`` -> ``(T, H', W', 3)``.

    The first ``context`` frames are real (green border; pass reward 0 and end 0 for them), the rest
    imagined (red border). The panel below each frame is :func:`info_panel`.
    """
    frames = _rgb(as_uint8(frames))
    reward, end = np.asarray(reward, np.float64).reshape(-1), np.asarray(end, np.float64).reshape(-1)
    T = frames.shape[0]
    assert reward.shape == (T,) and end.shape == (T,), f"frames {frames.shape} vs reward {reward.shape} end {end.shape}"
    out = []
    for t in range(T):
        tile = add_border(upscale(frames[t], scale), CONTEXT_COLOR if t < context else IMAGINED_COLOR, border)
        panel = info_panel(tile.shape[1], float(reward[t]), float(end[t]), reward_scale=reward_scale, labels=labels)
        out.append(np.concatenate([tile, panel], axis=0))
    return np.stack(out)  # (T, H', W', 3)


def image_grid(images: Any, ncols: int | None = None, *, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile images into one ``(H', W', C)`` image.

    ``images`` is ``(N, H, W, C)`` laid out row-major with ``ncols`` columns (default: one row), or
    ``(R, K, H, W, C)`` laid out as ``R`` rows of ``K``. Image ``i`` sits at
    ``y = pad + row * (H + pad)``, ``x = pad + col * (W + pad)``.
    """
    images = as_uint8(images)
    if images.ndim == 5:
        ncols = images.shape[1]
        images = images.reshape(-1, *images.shape[2:])
    assert images.ndim == 4, f"want images (N, H, W, C) or (R, K, H, W, C), got {images.shape}"
    N, H, W, C = images.shape
    ncols = N if ncols is None else ncols
    nrows = -(-N // ncols)
    grid = np.full((pad + nrows * (H + pad), pad + ncols * (W + pad), C), pad_value, np.uint8)
    for i in range(N):
        row, col = divmod(i, ncols)
        grid[pad + row * (H + pad) : pad + row * (H + pad) + H, pad + col * (W + pad) : pad + col * (W + pad) + W] = images[i]
    return grid


# ----------------------------------------------------------------------------- encoding
def encode_gif(frames: Any, fps: float = 10.0) -> bytes:
    """Animated, looping GIF of ``(T, H, W, C)`` uint8 frames; exactly ``T`` frames, each its own palette.

    Pillow's multi-frame writer merges consecutive identical frames, which would change the frame
    count, so the container is written here and Pillow only quantises and LZW-encodes each frame
    (``GifImagePlugin.getdata``). Frames with at most 256 colours decode exactly.
    """
    frames = _rgb(as_uint8(frames))
    assert frames.ndim == 4, f"want frames (T, H, W, C), got {frames.shape}"
    T, H, W, _ = frames.shape
    duration_ms = max(int(round(1000.0 / fps)), 10)  # GIF delays are in 1/100 s
    parts = [
        b"GIF89a",
        struct.pack("<HHBBB", W, H, 0x70, 0, 0),  # logical screen: no global colour table, 8-bit colour resolution
        b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", 0) + b"\x00",  # loop forever
    ]
    for frame in frames:
        image = Image.fromarray(frame).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
        parts += GifImagePlugin.getdata(image, duration=duration_ms, include_color_table=True)
    parts.append(b";")
    return b"".join(parts)


def decode_gif(data: bytes) -> np.ndarray:
    """GIF bytes -> uint8 ``(T, H, W, 3)`` frames (inverse of :func:`encode_gif`, up to palette quantisation)."""
    with Image.open(io.BytesIO(data)) as image:
        frames = []
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            frames.append(np.asarray(image.convert("RGB")))
    return np.stack(frames)


def _write_atomic(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def write_gif(path: str | Path, frames: Any, fps: float = 10.0) -> Path:
    """Write :func:`encode_gif` of ``frames (T, H, W, C)`` to ``path`` (temp file + rename)."""
    return _write_atomic(path, encode_gif(frames, fps))


def mp4_available() -> bool:
    """Whether imageio can write MP4 here (its ffmpeg plugin via ``imageio-ffmpeg``, or pyav)."""
    import importlib.util

    return any(importlib.util.find_spec(name) is not None for name in ("imageio_ffmpeg", "av"))


def write_mp4(path: str | Path, frames: Any, fps: float = 10.0) -> Path:
    """Write ``frames (T, H, W, C)`` as H.264 MP4; raises ``RuntimeError`` if no encoder is installed.

    Frames are padded (black) to even sides, which yuv420p needs.
    """
    if not mp4_available():
        raise RuntimeError("MP4 needs imageio-ffmpeg or av (pip install imageio-ffmpeg); GIFs need nothing extra")
    import imageio.v3 as iio

    frames = _rgb(as_uint8(frames))
    T, H, W, C = frames.shape
    padded = np.zeros((T, H + H % 2, W + W % 2, C), np.uint8)
    padded[:, :H, :W] = frames
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    iio.imwrite(tmp, padded, extension=".mp4", fps=fps)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- TensorBoard
def add_gif_summary(writer: Any, tag: str, frames: Any, step: int, fps: float = 10.0) -> None:
    """Animated GIF summary of ``frames (T, H, W, C)`` on a torch ``SummaryWriter`` (no moviepy needed).

    TensorBoard shows it in the Images tab and plays it; read back with ``EventAccumulator.Images(tag)``.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary

    frames = _rgb(as_uint8(frames))
    T, H, W, C = frames.shape
    image = Summary.Image(height=H, width=W, colorspace=C, encoded_image_string=encode_gif(frames, fps))
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


def add_image_summary(writer: Any, tag: str, image: Any, step: int) -> None:
    """PNG image summary of one ``(H, W, C)`` uint8 image (``SummaryWriter.add_image``, no moviepy)."""
    writer.add_image(tag, _rgb(as_uint8(image)), step, dataformats="HWC")
