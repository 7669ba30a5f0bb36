"""worldmodels.viz: layouts keep the frames they are given, GIFs keep every frame, summaries read back in TensorBoard."""

from __future__ import annotations

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from worldmodels import viz


def few_colour_frames(T: int = 6, S: int = 16, seed: int = 0) -> np.ndarray:
    """Frames with 4 grey levels per channel (<= 64 colours): GIF palettes hold them exactly."""
    return (np.random.default_rng(seed).integers(0, 4, (T, S, S, 3)) * 85).astype(np.uint8)


def test_encode_gif_keeps_every_frame_exactly_even_repeated_ones():
    frames = few_colour_frames(T=5)
    frames[2] = frames[1]  # Pillow's own multi-frame writer would merge these two
    decoded = viz.decode_gif(viz.encode_gif(frames, fps=10))
    assert decoded.shape == frames.shape
    np.testing.assert_array_equal(decoded, frames)


def test_encode_gif_many_colours_is_close():
    frames = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    decoded = viz.decode_gif(viz.encode_gif(frames))
    assert decoded.shape == frames.shape
    # Median-cut to 256 colours of uniform noise: mean error measured ~13/255; 20 leaves slack.
    assert np.abs(decoded.astype(int) - frames).mean() < 20


def test_write_gif_on_disk_round_trip(tmp_path):
    frames = few_colour_frames()
    path = viz.write_gif(tmp_path / "sub" / "clip.gif", frames)
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    np.testing.assert_array_equal(viz.decode_gif(path.read_bytes()), frames)


def test_compare_strip_layout_and_markers():
    true = few_colour_frames(T=6)
    pred = np.roll(true, 1, axis=2)
    context = 2
    for scale in (1, 2):
        strip = viz.compare_strip(true, pred, context, scale=scale, border=2)
        layout = viz.strip_layout((16, 16), border=2, scale=scale)
        assert strip.shape == (6, *layout.shape, 3)
        np.testing.assert_array_equal(layout.tile(strip, 0), viz.upscale(true, scale))
        np.testing.assert_array_equal(layout.tile(strip, 1), viz.upscale(pred, scale))
        np.testing.assert_array_equal(layout.tile(strip, 2), viz.upscale(viz.error_image(true, pred), scale))
        corner = strip[:, layout.header, 0]  # top-left border pixel of the true tile, per frame
        assert (corner[:context] == viz.CONTEXT_COLOR).all() and (corner[context:] == viz.IMAGINED_COLOR).all()


def test_dream_frames_overlay_bars():
    frames = few_colour_frames(T=3)
    shown = viz.dream_frames(frames, reward=[0.0, 1.0, -1.0], end=[0.0, 0.5, 1.0], context=1, border=1, labels=False)
    assert shown.shape[0] == 3 and shown.shape[2] == 18
    np.testing.assert_array_equal(shown[:, 1:17, 1:17], frames)
    reward_row, end_row = shown[:, 18], shown[:, 18 + 5]  # first pixel row of each bar
    assert (reward_row[1, 10:18] == viz.CONTEXT_COLOR).all()  # +1: full right half green
    assert (reward_row[2, 0:9] == viz.IMAGINED_COLOR).all()  # -1: full left half red
    assert (end_row[1, :9] == viz.END_COLOR).all() and not (end_row[1, 9:] == viz.END_COLOR).all(-1).any()
    assert (end_row[2] == viz.END_COLOR).all()


def test_image_grid_positions():
    images = few_colour_frames(T=6, S=8)
    grid = viz.image_grid(images.reshape(2, 3, 8, 8, 3), pad=1)
    assert grid.shape == (1 + 2 * 9, 1 + 3 * 9, 3)
    np.testing.assert_array_equal(grid[1 + 9 : 1 + 9 + 8, 1 + 2 * 9 : 1 + 2 * 9 + 8], images[5])


def test_mse_psnr():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[1] = 255
    np.testing.assert_allclose(viz.frame_mse(a, b), [0.0, 1.0])
    np.testing.assert_allclose(viz.psnr(a, b), [100.0, 0.0])
    b[1] = 51  # 0.2 -> MSE 0.04 -> 13.98 dB
    np.testing.assert_allclose(viz.psnr(a, b)[1], 10 * np.log10(1 / 0.04), rtol=1e-6)


def test_rejects_float_frames():
    with pytest.raises(ValueError, match="uint8"):
        viz.encode_gif(np.zeros((2, 4, 4, 3), np.float32))


def test_summaries_read_back_with_tensorboard(tmp_path):
    frames = few_colour_frames(T=7, S=12)
    writer = SummaryWriter(str(tmp_path))
    viz.add_gif_summary(writer, "dreams/test", frames, step=3, fps=5)
    viz.add_image_summary(writer, "dreams/still", frames[0], step=4)
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["images"]) == {"dreams/test", "dreams/still"}
    (gif,) = events.Images("dreams/test")
    assert (gif.step, gif.width, gif.height) == (3, 12, 12)
    np.testing.assert_array_equal(viz.decode_gif(gif.encoded_image_string), frames)
    (still,) = events.Images("dreams/still")
    np.testing.assert_array_equal(viz.decode_gif(still.encoded_image_string)[0], frames[0])  # PNG decodes too


@pytest.mark.skipif(not viz.mp4_available(), reason="imageio-ffmpeg / av not installed: MP4 output is optional")
def test_write_mp4(tmp_path):
    import imageio.v3 as iio

    frames = np.repeat(few_colour_frames(T=4, S=16), 2, axis=1).repeat(2, axis=2)
    path = viz.write_mp4(tmp_path / "clip.mp4", frames, fps=5)
    assert iio.imread(path, index=None).shape[0] == 4


def test_write_mp4_without_encoder_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(viz, "mp4_available", lambda: False)
    with pytest.raises(RuntimeError, match="imageio-ffmpeg"):
        viz.write_mp4(tmp_path / "x.mp4", few_colour_frames())
