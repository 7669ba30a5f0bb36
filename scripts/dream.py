"""Render the dreams of a saved world model to TensorBoard and GIF (+ MP4) files, and score its open loop.

For each of ``--episodes`` real episodes (random policy, seeds ``seed, seed + 1, ...``) the model is given
``--context`` frames and real actions from row ``--start`` on, then:

- open loop: it predicts the next ``--horizon`` frames under the REAL actions (``open_loop_ep<i>.gif``: true |
  predicted | |error|; green border = real, red = imagined). The predicted frame is the mean of ``--samples``
  sampled futures (``open_loop_samples_ep<i>.gif``: the real frame, then each sample); ``--protocol first-rows``
  shows the old single deterministic forecast;
- dream: its own controller / actor (random actions if it has none) acts inside imagination
  (``dream_ep<i>.gif`` with the predicted reward and end probability drawn under each frame).

Both also go to TensorBoard under ``--logdir`` (tags ``dreams/open_loop/sample_<i>``,
``dreams/imagined/sample_<i>``, ``dreams/reconstruction``, ``dreams/latent_traversal`` and the
``kpi/*`` open-loop scalars). MP4 files are written only when imageio-ffmpeg (or av) is installed.

KPIs, by ``--protocol`` (docs/open-loop.md):

- ``fair`` (default, :mod:`worldmodels.open_loop`): the whole episodes of a random policy and, where the model has
  one, of its own policy (same seeds), ``--windows`` windows each at seeded random starts, ``--samples`` futures
  per window: sample-mean and best-of-K errors on the whole frame and on the moving pixels next to copy-last and
  the mean frame on the same pixels, reward-event precision / recall, termination AUROC (``kpi/..._random``,
  ``kpi/..._agent``);
- ``first-rows`` (the old protocol, kept to compare): the first ``context + horizon`` rows of each random-policy
  episode, one deterministic forecast, scored once over all episodes (:mod:`worldmodels.baselines`);
- ``both``: the two sets of keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from worldmodels import open_loop as fair, viz
from worldmodels.checkpoint import allow_unverified_arg
from worldmodels.config import arg, directory_problem, threads_arg
from worldmodels.dreams import dream, dream_models, dream_temperature, latent_traversal_grid, open_loop, reconstruct
from worldmodels.envs import ActionSpec
from worldmodels.heldout import EPISODE_ROWS, HeldoutProtocol, episode_batch, heldout_scores, random_episodes
from worldmodels.pretrained import make_env_for
from worldmodels.profiling import DEVICES, resolve_device, set_threads
from worldmodels.registry import load



@dataclass
class DreamConfig:
    checkpoint: str = arg("", "saved world model: a `wm worldmodels` run dir, a pretrained dir (config.json), a Dreamer "
                              "run dir / .ckpt, or a shipped name")
    env: str = arg("", "gymnasium env id for the real context episodes (default: the env the checkpoint names); its "
                       "observation and action spaces must be the model's")
    logdir: str = arg("runs/dreams", "output directory: TensorBoard events and the GIF / MP4 files",
                      check=lambda c: directory_problem(c.logdir))
    context: int = arg(5, "real frames (and actions) given to the model before it predicts", minimum=1, maximum=10_000)
    horizon: int = arg(15, "frames the model predicts / imagines after the context", minimum=1, maximum=10_000)
    episodes: int = arg(2, "real episodes to render (one open-loop and one dream clip each)", minimum=1, maximum=1000)
    seed: int = arg(0, "seed of the first real episode and of the model's sampling", minimum=0, maximum=2**32 - 1)
    fps: float = arg(8.0, "frames per second of the GIF / MP4 clips", above=0, maximum=1000.0)
    scale: int = arg(2, "integer upscale of the frames in the clips (64 px frames are small on screen)", minimum=1,
                     maximum=64)
    mp4: bool = arg(True, "also write MP4 clips when an encoder (imageio-ffmpeg or av) is installed")
    protocol: str = arg("fair", "open-loop KPIs: fair (random starts over whole random- and agent-policy episodes, "
                                "K samples, moving pixels, events), first-rows (the old protocol) or both",
                        choices=fair.PROTOCOLS)
    samples: int = arg(fair.SAMPLES, "sampled futures per window (fair KPIs) and averaged in the open-loop clips",
                       minimum=1, maximum=256)
    start: int = arg(0, "row of each episode where the clips' context begins", minimum=0, maximum=1_000_000)
    windows: int = arg(fair.WINDOWS, "fair KPIs: windows per policy, at seeded uniform starts", minimum=1,
                       maximum=100_000)
    episode_rows: int = arg(EPISODE_ROWS, "fair KPIs: rows kept of each whole episode (a longer one is cut there)", minimum=2,
                            maximum=1_000_000)
    moving_threshold: int = arg(fair.MOVING_THRESHOLD, "fair KPIs: a pixel moves when a channel changes by more "
                                "than this (uint8 levels)", minimum=0, maximum=254)
    reward_threshold: float = arg(fair.REWARD_THRESHOLD, "fair KPIs: a reward event is |r| >= this", above=0,
                                  maximum=1e9)
    device: str = arg("auto", "torch device for the model", choices=DEVICES)
    threads: str = threads_arg("0")
    allow_unverified: bool = allow_unverified_arg()


CONFIG = DreamConfig


def validate(config: DreamConfig) -> None:
    if not config.checkpoint:
        raise ValueError("--checkpoint is required: a saved world model directory or .ckpt file, or a shipped name")
    for name in ("context", "horizon", "episodes", "scale"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name} must be a positive integer, got {value}")
    if config.fps <= 0:
        raise ValueError(f"--fps must be positive, got {config.fps}")


def heldout_protocol(config: DreamConfig) -> HeldoutProtocol:
    """The KPI settings of ``config`` (the flags :class:`~worldmodels.heldout.HeldoutProtocol` shares with it)."""
    return HeldoutProtocol(**{name: getattr(config, name) for name in HeldoutProtocol.__dataclass_fields__})


def _clip(frames: np.ndarray, path: Path, fps: float, mp4: bool, written: dict[str, list[str]]) -> None:
    written["gifs"].append(str(viz.write_gif(path.with_suffix(".gif"), frames, fps)))
    if mp4 and viz.mp4_available():
        written["mp4s"].append(str(viz.write_mp4(path.with_suffix(".mp4"), frames, fps)))


def _open_loop_clips(model, batch: dict[str, torch.Tensor], config: DreamConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """The open-loop strip (true | predicted | |error|) and, for several samples, the samples' strip (the real
    frame, then each sample side by side); ``first-rows`` shows the old single deterministic forecast."""
    K = config.context
    true = viz.as_uint8(batch["obs"][0])  # (T, H, W, C)
    if config.protocol == "first-rows":
        with torch.no_grad():
            predicted = viz.as_uint8(open_loop(model, batch["obs"], batch["action"], batch["is_first"], context=K)["frames"][0])
        samples = None
    else:
        futures = [f["frames"][0] for f in fair.sampled_futures(model, batch["obs"], batch["action"], K, config.samples)]
        samples = np.stack(futures)  # (S, T - K, H, W, C)
        predicted = samples.astype(np.float64).mean(0).round().astype(np.uint8)  # the sample mean, as the KPIs score
    strip = viz.compare_strip(true, np.concatenate([true[:K], predicted]), K, scale=config.scale)
    if samples is None or len(samples) == 1:
        return strip, None
    shown = np.concatenate([np.repeat(true[None, :K], len(samples), 0), samples], 1)  # (S, T, H, W, C)
    grid = np.stack([viz.upscale(viz.image_grid(np.concatenate([true[t:t + 1], shown[:, t]])), config.scale)
                     for t in range(len(true))])
    return strip, grid


def run(config: DreamConfig) -> dict:
    """Load the model, collect the real episodes, write the clips and summaries; returns the paths and KPIs."""
    validate(config)
    set_threads(config.threads)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    pretrained = load(config.checkpoint, device, allow_unverified=config.allow_unverified)
    model, head = dream_models(pretrained)
    if len(getattr(model, "obs_shape", ())) == 1:  # a vector-observation Dreamer: nothing to draw
        raise ValueError(f"--checkpoint {config.checkpoint} observes {tuple(model.obs_shape)} vectors, which have no "
                         f"video; wm dream renders models of image observations (evaluate it with wm evaluate)")
    env_id = config.env or pretrained.env_id
    # The model's env settings (image size, frameskip, ...) and THE spaces check: one line before any clip.
    env = make_env_for(pretrained, env_id, 1, seed=config.seed)
    written: dict[str, list[str]] = {"gifs": [], "mp4s": []}
    K, H, start = config.context, config.horizon, config.start
    protocol = heldout_protocol(config)
    rows = protocol.rows(start)  # the clips need rows start .. start + K + H - 1; the fair KPIs whole episodes
    writer = None
    try:
        logdir = Path(config.logdir)
        logdir.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(str(logdir))
        randoms = random_episodes(env, count=config.episodes, rows=rows, seed=config.seed)
        for i, episode in enumerate(randoms):
            L = len(episode["obs"])
            if L <= start + K:
                raise ValueError(f"episode {i} of {env_id} ended after {L} frames; use a --start + --context below {L} "
                                 f"(got {start} + {K})")
            batch = episode_batch(episode, ActionSpec.from_space(env.single_action_space), start, K + H)
            strip, samples = _open_loop_clips(model, batch, config)
            with torch.no_grad():
                dreamed = dream(model, head, batch["obs"][:, :K], batch["action"][:, :K], batch["is_first"][:, :K],
                                H, seed=config.seed + i, temperature=dream_temperature(pretrained.config))
            true = viz.as_uint8(batch["obs"][0])  # (T, H, W, C)
            frames = np.concatenate([true[:K], viz.as_uint8(dreamed["frames"][0])])  # (K + horizon, H, W, C)
            zeros = np.zeros(K)
            shown = viz.dream_frames(frames, np.concatenate([zeros, dreamed["reward"][0].cpu().numpy()]),
                                     np.concatenate([zeros, dreamed["end"][0].cpu().numpy()]), context=K, scale=config.scale)
            _clip(strip, logdir / f"open_loop_ep{i}", config.fps, config.mp4, written)
            if samples is not None:
                _clip(samples, logdir / f"open_loop_samples_ep{i}", config.fps, config.mp4, written)
            _clip(shown, logdir / f"dream_ep{i}", config.fps, config.mp4, written)
            viz.add_gif_summary(writer, f"dreams/open_loop/sample_{i}", strip, 0, config.fps)
            viz.add_gif_summary(writer, f"dreams/imagined/sample_{i}", shown, 0, config.fps)
            if i == 0:
                with torch.no_grad():
                    recon = viz.as_uint8(reconstruct(model, batch["obs"][0, :K]))
                    viz.add_image_summary(writer, "dreams/reconstruction", viz.image_grid(np.stack([true[:K], recon])), 0)
                    grid = latent_traversal_grid(model, batch["obs"][0, :1], batch["obs"][0], dims=6, steps=7)
                    if grid is not None:
                        viz.add_image_summary(writer, "dreams/latent_traversal", grid, 0)
        kpis = heldout_scores(model, pretrained, env_id, randoms, protocol, device)
        for name, value in sorted(kpis.items()):
            writer.add_scalar(name, value, 0)
    finally:
        if writer is not None:
            writer.close()
        env.close()
    if config.mp4 and not written["mp4s"]:
        print("wm dream: MP4 skipped (pip install imageio-ffmpeg to get MP4 next to the GIFs)")
    print(f"wm dream: {len(written['gifs'])} GIFs in {logdir}; tensorboard --logdir {logdir}")
    return {"env": env_id, "logdir": str(logdir), "protocol": config.protocol, **written, "kpis": kpis}
