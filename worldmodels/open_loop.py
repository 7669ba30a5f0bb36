"""The fair open-loop protocol (issue 28, item 2): what ``wm dream``, ``wm export``, ``wm remeasure`` and the dream
callbacks score by default (``--protocol fair``; the old one stays as ``first-rows``).

The old protocol scored ONE future, predicted from the FIRST rows of each episode, by its whole-frame MSE. Three
things flattered or punished it for the wrong reason: the first rows of an episode are special (VizDoom TakeCover's
first 7-8 frames are identical, so copy-last is exact at h1, and no fireball is in the first 20 frames); one
sample of a stochastic model scored against one real future pays the spread of the model's distribution (a sharp,
correct sample scores ~2x worse than a blurred mean); and the static background is nearly every pixel. Here,
for each SOURCE of episodes (``random`` and ``agent`` policy in ``wm dream``; the callbacks' ``val`` or ``replay``
data), with ``K`` context rows, ``H`` predicted ones and ``S`` samples:

1. Windows (:func:`draw_windows`). ``count`` starts ``(episode e, row t)`` drawn uniformly without replacement,
   seeded, from every pair with ``0 <= t <= L_e - K - 1`` (at least one predicted row), so windows fall anywhere
   in the episodes, up to their last row (where terminations are)::

       rows      t .. t+K-1          | t+K        t+K+1     ...  t+K+H-1
       given     real obs + actions  | --
       scored                        | step 1     step 2    ...  step H      (rows past the episode: not scored)
       real                          | obs, reward, terminated of the same row (DESIGN.md row convention)

2. Samples (:func:`sampled_futures`). ``S`` futures per window, each :func:`worldmodels.dreams.open_loop` under the
   real actions with its own draw from the model (World Models: M at :data:`SAMPLE_TEMPERATURE`, its own
   distribution; Dreamer: the prior's samples), frames on the [0, 1] scale. Per window and step, for the model's
   frames ``x_s`` and the real frame ``y``::

       sample_mean   MSE(mean_s x_s, y)      the error of the sample mean (the model's expected frame)
       best_of_k     min_s MSE(x_s, y)       the closest of the S samples, chosen per window and step
       one_sample    mean_s MSE(x_s, y)      the expected error of ONE sample (what scoring one sample estimates)

   ``best_of_k <= one_sample`` (a minimum is at most the mean) and ``sample_mean <= one_sample`` (Jensen: the
   squared error is convex) always hold; ``best_of_k`` and ``sample_mean`` have no order.

3. Moving pixels (:func:`moving_mask`): pixel ``(y, x)`` of step ``j`` moves when some channel of the real frame
   differs from the real frame before it (step ``j - 1``; step 1: the last context frame) by more than
   ``moving_threshold`` uint8 levels. ``moving_<name>`` is the squared error summed over every valid window's moving
   pixels (all channels) over their count, so a window with more motion weighs more and a window with none adds
   nothing. A step where no pixel moves has no such error: it is left out, never NaN (``moving_fraction``, the
   share of moving pixels, is 0 there). Whole-frame errors are means over the valid windows, as in
   :mod:`worldmodels.baselines`. Both baselines are scored on the same frames and pixels: ``copy_last`` (row
   ``t + K - 1`` repeated) and ``mean_frame`` (the per-pixel mean of the source's valid real frames).

4. Reward events: a real event is ``|r| >= reward_threshold``, a predicted one ``|mean_s r_s| >= reward_threshold``;
   ``reward_precision`` = hits / predicted events, ``reward_recall`` = hits / real events, per step and pooled over
   steps 1..H; undefined (left out) when its denominator is 0.

5. Termination: ``p = mean_s end_s`` against ``terminated`` over every valid step: ``termination_auroc`` (the
   probability that a terminal step scores above a non-terminal one, ties half) and precision / recall of
   ``p >= 0.5``; undefined when the windows hold no termination (or only terminations).

:func:`fair_kpis` names them ``kpi/<name>_h<k>_<source>`` (per step, ``k`` in 1, 5, H) and ``kpi/<name>_<source>``
(pooled), ratios ``kpi/moving_vs_copy_h<k>_<source>`` (moving sample_mean / moving copy_last: < 1 beats "nothing
moves" where something does) and counts ``kpi/windows_<source>``, ``kpi/reward_events_<source>``,
``kpi/terminations_<source>``, ``kpi/window_start_median_<source>``, and ``kpi/samples``; :func:`card_section` is
its model-card markdown.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from worldmodels import dreams
from worldmodels.core import Policy, WorldModel
from worldmodels.driver import Driver, episode_arrays
from worldmodels.kpis import kpi_horizons, random_state_kept

PROTOCOLS = ("fair", "first-rows", "both")
SAMPLES = 8  # futures per window
WINDOWS = 64  # windows per source
MOVING_THRESHOLD = 8  # uint8 levels (~3%): above JPEG-like rendering noise, below any sprite's contrast
REWARD_THRESHOLD = 0.5
END_THRESHOLD = 0.5
SAMPLE_TEMPERATURE = dreams.DREAM_TEMPERATURE  # World Models: M's own distribution (Sec. 4.4), not its mode
FRAME_SERIES = ("sample_mean_mse", "best_of_k_mse", "one_sample_mse", "copy_last_mse", "mean_frame_mse")
Episode = Mapping[str, Any]
"""``(L, ...)`` arrays of one episode: obs (L, H, W, C) uint8, action (L,) int / (L, A) float (store encoding, or
model encoding with ``encode=None``), reward (L,), terminated (L,) bool."""


def draw_windows(episodes: Sequence[Episode], *, context: int, horizon: int, count: int, seed: int,
                 encode: Callable[[Any], torch.Tensor] | None = None) -> dict[str, np.ndarray] | None:
    """``count`` windows of ``context + horizon`` rows at seeded uniform starts over ``episodes`` (item 1 above).

    Returns ``obs (W, K+H, H, W, C)`` uint8, ``action (W, K+H, A)`` float32 (``encode(action)`` of the stored rows,
    or as stored when ``encode`` is ``None``), ``reward (W, K+H)``, ``terminated (W, K+H)``, ``valid (W, K+H)``
    (False past the episode's end: those rows repeat its last row), ``start (W,)`` and ``episode (W,)``; ``None``
    when no episode has ``context + 1`` rows.
    """
    lengths = np.array([len(e["obs"]) for e in episodes], dtype=np.int64)
    per_episode = np.maximum(lengths - context, 0)  # starts 0 .. L - K - 1 in each
    total = int(per_episode.sum())
    if total == 0:
        return None
    flat = np.sort(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False))
    episode = np.searchsorted(np.cumsum(per_episode), flat, side="right")
    start = flat - np.concatenate([[0], np.cumsum(per_episode)])[episode]
    T = context + horizon
    rows = {key: [] for key in ("obs", "action", "reward", "terminated", "valid")}
    for e, t in zip(episode, start):
        source, L = episodes[e], int(lengths[e])
        index = np.minimum(np.arange(t, t + T), L - 1)  # rows past the end repeat the last (never scored)
        action = np.asarray(source["action"])[index]
        rows["obs"].append(np.asarray(source["obs"])[index])
        rows["action"].append(np.asarray(encode(action) if encode is not None else action, dtype=np.float32))
        rows["reward"].append(np.asarray(source["reward"], dtype=np.float32)[index])
        rows["terminated"].append(np.asarray(source["terminated"], dtype=bool)[index])
        rows["valid"].append(np.arange(t, t + T) < L)
    return {**{key: np.stack(value) for key, value in rows.items()}, "start": start, "episode": episode}


class _FirstEpisodes:
    """Driver hook: the rows of each sub-env's first episode, at most ``rows`` of them."""

    def __init__(self, num_envs: int, rows: int) -> None:
        self.rows, self.limit = [[] for _ in range(num_envs)], rows
        self.done = np.zeros(num_envs, bool)

    def on_row(self, env_index: int, row: dict[str, np.ndarray]) -> None:
        if not self.done[env_index]:
            self.rows[env_index].append({k: np.array(v) for k, v in row.items()})
            self.done[env_index] = bool(row["terminated"] or row["truncated"]) or len(self.rows[env_index]) >= self.limit


def policy_episodes(env: Any, policy: Policy, *, count: int, rows: int, seed: int,
                    device: torch.device | str = "cpu") -> list[dict[str, np.ndarray]]:
    """``count`` whole episodes of ``policy`` (at most ``rows`` rows each), store-encoded ``(L, ...)`` arrays;
    episode ``i`` starts from ``reset(seed + i)``. The vector ``env``'s sub-envs play them in waves, so a model
    policy acts on batches (one at a time it was ~50x slower here); an episode cut at ``rows`` gets a zero last
    action, as a stored one does. Torch is seeded with ``seed`` for them and its stream restored after (as
    :func:`worldmodels.evaluation.evaluate_against_random` does), so a policy that samples (a Dreamer's posterior)
    plays the same episodes whatever ran before."""
    out: list[dict[str, np.ndarray]] = []
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for wave in range(0, count, env.num_envs):
            out.extend(_first_episodes(env, policy, count=min(env.num_envs, count - wave), rows=rows, seed=seed + wave,
                                       device=device))
    return out


def _first_episodes(env: Any, policy: Policy, *, count: int, rows: int, seed: int,
                    device: torch.device) -> list[dict[str, np.ndarray]]:
    """One wave of :func:`policy_episodes`: sub-env ``i < count``'s first episode after ``reset(seed)``."""
    keep = _FirstEpisodes(env.num_envs, rows)
    driver = Driver(env, policy, hooks=[keep], device=device)
    driver.reset(seed=seed)  # sub-env i -> seed + i
    while not keep.done.all():
        driver.step()
    for episode in keep.rows[:count]:
        episode[-1]["action"] = np.zeros_like(episode[-1]["action"])
    return [episode_arrays(episode) for episode in keep.rows[:count]]


def batch_fragments(batch: Mapping[str, Any]) -> list[dict[str, np.ndarray]]:
    """A DESIGN.md batch ``(B, T, ...)`` (actions in model encoding) cut at its ``is_first`` rows into the pieces of
    single episodes, each an :data:`Episode` of model-encoded actions (for :func:`draw_windows` with ``encode=None``)."""
    arrays = {key: _numpy(batch[key]) for key in ("obs", "action", "reward", "terminated", "is_first")}
    pieces = []
    for b in range(arrays["obs"].shape[0]):
        cuts = [0, *np.flatnonzero(arrays["is_first"][b, 1:]) + 1, arrays["obs"].shape[1]]
        for begin, end in zip(cuts[:-1], cuts[1:]):
            pieces.append({key: arrays[key][b, begin:end] for key in ("obs", "action", "reward", "terminated")})
    return pieces


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def sampled_futures(world_model: WorldModel, obs: torch.Tensor, action: torch.Tensor, context: int,
                    samples: int) -> Iterator[dict[str, np.ndarray]]:
    """``samples`` open-loop futures of windows ``obs (W, T, H, W, C)`` uint8, ``action (W, T, A)``, one at a time
    (item 2 above): each ``frames (W, T-K, H, W, C)`` uint8, ``reward, end (W, T-K)`` float64. Each window starts a
    fresh belief at its row 0; the caller seeds the global torch RNG the models sample with."""
    is_first = torch.zeros(obs.shape[:2], dtype=torch.bool)
    is_first[:, 0] = True
    for _ in range(samples):
        with torch.no_grad():
            out = dreams.open_loop(world_model, obs, action, is_first, context, temperature=SAMPLE_TEMPERATURE)
        yield {"frames": _numpy(out["frames"]), "reward": _numpy(out["reward"]).astype(np.float64),
               "end": _numpy(out["end"]).astype(np.float64)}


def moving_mask(real: np.ndarray, last_context: np.ndarray, threshold: int = MOVING_THRESHOLD) -> np.ndarray:
    """``(W, P, H, W)`` bool: pixels of real frames ``real (W, P, H, W, C)`` uint8 where some channel differs from
    the previous real frame (for step 0: ``last_context (W, H, W, C)``) by more than ``threshold`` levels."""
    previous = np.concatenate([last_context[:, None], real[:, :-1]], axis=1)  # (W, P, H, W, C)
    return (np.abs(real.astype(np.int16) - previous.astype(np.int16)) > threshold).any(-1)


def _pooled(per_window: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(W, P)`` -> ``(P,)``: the mean over the windows valid at each step, ``nan`` where none is."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(valid, per_window, 0.0).sum(0) / valid.sum(0)


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(bottom > 0, top / bottom, np.nan)


def frame_errors(real: np.ndarray, futures: Sequence[np.ndarray] | Iterator[np.ndarray], last_context: np.ndarray,
                 valid: np.ndarray, *, moving_threshold: int = MOVING_THRESHOLD) -> dict[str, np.ndarray]:
    """Items 2 and 3 above: name -> ``(P,)`` float64 (``nan``: undefined) for the real frames ``real (W, P, H, W, C)``
    uint8, the model's sampled ``futures`` (each ``(W, P, H, W, C)`` uint8; read once, one at a time),
    ``last_context (W, H, W, C)`` and ``valid (W, P)``. Names: :data:`FRAME_SERIES`, ``moving_`` + each of them,
    ``moving_fraction``, ``moving_vs_copy``."""
    real_f = real.astype(np.float32) / 255.0
    W, P = real.shape[:2]
    mask = moving_mask(real, last_context, moving_threshold) & valid[:, :, None, None]  # (W, P, H, W)
    channels = real.shape[-1]

    def scored(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # (W, P) whole-frame MSE, moving-pixel SSE
        squared = (frames - real_f) ** 2  # (W, P, H, W, C)
        return squared.mean((2, 3, 4)), (squared.sum(-1) * mask).sum((2, 3))

    total, whole, moving, S = np.zeros_like(real_f), [], [], 0
    for frames in futures:
        frames = frames.astype(np.float32) / 255.0
        total += frames
        mse, sse = scored(frames)
        whole.append(mse)
        moving.append(sse)
        S += 1
    if S == 0:
        raise ValueError("frame_errors: no sampled future to score; give at least one")
    valid_frames = real_f[valid]  # (N, H, W, C)
    mean_frame = valid_frames.mean(0) if len(valid_frames) else np.zeros(real.shape[2:], np.float32)
    per_window = {"sample_mean_mse": scored(total / S), "copy_last_mse": scored(np.repeat(
        last_context[:, None].astype(np.float32) / 255.0, P, axis=1)), "mean_frame_mse": scored(
        np.broadcast_to(mean_frame, real_f.shape)),
        "best_of_k_mse": (np.min(whole, 0), np.min(moving, 0)), "one_sample_mse": (np.mean(whole, 0), np.mean(moving, 0))}
    pixels = mask.sum((0, 2, 3)) * channels  # (P,) moving pixel-channels at each step
    out: dict[str, np.ndarray] = {}
    for name, (mse, sse) in per_window.items():
        out[name] = _pooled(mse, valid)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"moving_{name}"] = np.where(pixels > 0, np.where(valid, sse, 0.0).sum(0) / pixels, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["moving_fraction"] = mask.sum((0, 2, 3)) / (valid.sum(0) * real.shape[2] * real.shape[3])
    out["moving_vs_copy"] = _ratio(out["moving_sample_mean_mse"], out["moving_copy_last_mse"])
    return {name: np.asarray(value, np.float64) for name, value in out.items()}


def precision_recall(predicted: np.ndarray, real: np.ndarray) -> tuple[float, float]:
    """``(precision, recall)`` of bool arrays of the same shape; ``nan`` where no event is predicted / real."""
    hits = float((predicted & real).sum())
    return (hits / predicted.sum() if predicted.any() else np.nan, hits / real.sum() if real.any() else np.nan)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores (N,)`` for bool ``labels (N,)`` (Mann-Whitney U / (n+ n-), tied scores
    count half); ``nan`` without both classes."""
    scores, labels = np.asarray(scores, np.float64).ravel(), np.asarray(labels, bool).ravel()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # 1-based, ties at their mean rank
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def event_scores(reward: np.ndarray, predicted_reward: np.ndarray, terminated: np.ndarray, end: np.ndarray,
                 valid: np.ndarray, *, reward_threshold: float = REWARD_THRESHOLD) -> dict[str, Any]:
    """Items 4 and 5 above over ``(W, P)`` arrays (real ``reward``, ``terminated``; the sample means
    ``predicted_reward``, ``end``): per-step ``reward_precision``, ``reward_recall`` ``(P,)`` and pooled scalars
    ``reward_precision``/``_recall`` (as ``..._all``), ``termination_auroc``/``_precision``/``_recall``, counts."""
    real_events = (np.abs(reward) >= reward_threshold) & valid
    predicted_events = (np.abs(predicted_reward) >= reward_threshold) & valid
    per_step = [precision_recall(predicted_events[:, j], real_events[:, j]) for j in range(reward.shape[1])]
    precision, recall = precision_recall(predicted_events, real_events)
    ends = terminated & valid
    end_precision, end_recall = precision_recall((end >= END_THRESHOLD) & valid, ends)
    return {"reward_precision": np.array([p for p, _ in per_step]), "reward_recall": np.array([r for _, r in per_step]),
            "reward_precision_all": precision, "reward_recall_all": recall, "reward_events": int(real_events.sum()),
            "termination_auroc": auroc(end[valid], terminated[valid]), "termination_precision": end_precision,
            "termination_recall": end_recall, "terminations": int(ends.sum())}


def score_windows(world_model: WorldModel, windows: Mapping[str, np.ndarray], *, context: int, samples: int,
                  moving_threshold: int = MOVING_THRESHOLD, reward_threshold: float = REWARD_THRESHOLD
                  ) -> dict[str, Any]:
    """Every series and scalar of items 2-5 for :func:`draw_windows`' ``windows`` (name -> ``(P,)`` or a number)."""
    obs = torch.as_tensor(windows["obs"])  # (W, K+H, H, W, C) uint8
    action = torch.as_tensor(windows["action"])  # (W, K+H, A) model encoding
    valid = windows["valid"][:, context:]  # (W, P)
    real, last = windows["obs"][:, context:], windows["obs"][:, context - 1]
    reward_sum, end_sum = np.zeros(valid.shape), np.zeros(valid.shape)

    def frames() -> Iterator[np.ndarray]:  # one sample at a time: S x (W, P, H, W, C) would not fit for big W
        nonlocal reward_sum, end_sum
        for future in sampled_futures(world_model, obs, action, context, samples):
            reward_sum, end_sum = reward_sum + future["reward"], end_sum + future["end"]
            yield future["frames"]

    out: dict[str, Any] = frame_errors(real, frames(), last, valid, moving_threshold=moving_threshold)
    out.update(event_scores(windows["reward"][:, context:], reward_sum / samples, windows["terminated"][:, context:],
                            end_sum / samples, valid, reward_threshold=reward_threshold))
    out["windows"], out["window_start_median"] = len(valid), float(np.median(windows["start"]))
    return out


def keyed(scores: Mapping[str, Any], horizons: Sequence[int], source: str) -> dict[str, float]:
    """``kpi/<name>_h<k>_<source>`` for series (entry ``k - 1``), ``kpi/<name>_<source>`` for scalars (``_all``
    dropped); undefined (``nan``) values are left out, so no key ever holds NaN."""
    out: dict[str, float] = {}
    for name, value in scores.items():
        if np.ndim(value) == 0:
            if np.isfinite(value):
                out[f"kpi/{name.removesuffix('_all')}_{source}"] = float(value)
            continue
        for k in horizons:
            if k <= len(value) and np.isfinite(value[k - 1]):
                out[f"kpi/{name}_h{k}_{source}"] = float(value[k - 1])
    return out


def fair_kpis(world_model: WorldModel, sources: Mapping[str, Sequence[Episode]], *, context: int, horizon: int,
              windows: int = WINDOWS, samples: int = SAMPLES, seed: int = 0,
              encode: Callable[[Any], torch.Tensor] | None = None, moving_threshold: int = MOVING_THRESHOLD,
              reward_threshold: float = REWARD_THRESHOLD) -> dict[str, float]:
    """The fair protocol's KPIs (module docstring) of ``world_model`` on each ``sources[name]`` (a list of whole
    episodes), keyed by :func:`keyed` at the horizons 1, 5 and ``horizon``. Seeded by ``seed`` (windows of source
    ``i``: ``seed + i``; the samples: torch seeded ``seed``), with the global and the model's RNG restored after."""
    if samples < 1 or windows < 1:
        raise ValueError(f"fair_kpis: samples ({samples}) and windows ({windows}) must be >= 1")
    if len(world_model.obs_shape) != 3:
        raise ValueError(f"fair_kpis scores predicted frames (H, W, C); this model observes {tuple(world_model.obs_shape)}")
    out: dict[str, float] = {"kpi/samples": float(samples)}
    with random_state_kept(world_model):
        torch.manual_seed(seed)
        for i, (source, episodes) in enumerate(sources.items()):
            chosen = draw_windows(episodes, context=context, horizon=horizon, count=windows, seed=seed + i,
                                  encode=encode)
            if chosen is None:  # no episode longer than the context: nothing to score for this source
                continue
            scores = score_windows(world_model, chosen, context=context, samples=samples,
                                   moving_threshold=moving_threshold, reward_threshold=reward_threshold)
            out.update(keyed(scores, kpi_horizons(horizon), source))
    return out


# Card columns of one source at step k: header -> key template (filled with k and the source). The moving-pixel
# ratio leads: a whole-frame MSE is mostly the static background.
CARD_COLUMNS = {"moving: mean / copy-last": "moving_vs_copy_h{k}", "moving: mean": "moving_sample_mean_mse_h{k}",
                "moving: best of K": "moving_best_of_k_mse_h{k}", "moving: copy-last": "moving_copy_last_mse_h{k}",
                "moving: mean frame": "moving_mean_frame_mse_h{k}", "moving share": "moving_fraction_h{k}",
                "frame: mean": "sample_mean_mse_h{k}", "frame: best of K": "best_of_k_mse_h{k}",
                "frame: one sample": "one_sample_mse_h{k}", "frame: copy-last": "copy_last_mse_h{k}",
                "frame: mean frame": "mean_frame_mse_h{k}"}
EVENT_COLUMNS = {"windows": "windows", "median start row": "window_start_median", "reward events": "reward_events",
                 "reward precision": "reward_precision", "reward recall": "reward_recall",
                 "terminations": "terminations", "end AUROC": "termination_auroc",
                 "end precision": "termination_precision", "end recall": "termination_recall"}


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def card_sources(metrics: Mapping[str, float]) -> list[str]:
    """The sources that ``metrics`` hold fair-protocol figures of (``kpi/windows_<source>``), random and agent first."""
    found = [key.removeprefix("kpi/windows_") for key in metrics if key.startswith("kpi/windows_")]
    return sorted(found, key=lambda s: (["random", "agent"].index(s) if s in ("random", "agent") else 2, s))


def card_section(metrics: Mapping[str, float]) -> str:
    """Markdown of the fair protocol's figures in ``metrics`` (a table per source, then the events); ``""`` if none."""
    sources = card_sources(metrics)
    if not sources:
        return ""
    samples = int(metrics.get("kpi/samples", SAMPLES))
    horizons = sorted({int(key.rsplit("_h", 1)[1].split("_")[0]) for key in metrics
                       if key.startswith("kpi/sample_mean_mse_h")})
    parts = []
    for source in sources:
        lines = [f"**{source}-policy episodes** ({_cell(metrics.get(f'kpi/windows_{source}'))} windows):", "",
                 "| steps ahead | " + " | ".join(CARD_COLUMNS) + " |", "|---" * (len(CARD_COLUMNS) + 1) + "|"]
        for k in horizons:
            cells = [metrics.get(f"kpi/{key.format(k=k)}_{source}") for key in CARD_COLUMNS.values()]
            lines.append(f"| {k} | " + " | ".join(_cell(v) for v in cells) + " |")
        parts.append("\n".join(lines))
    events = ["| episodes | " + " | ".join(EVENT_COLUMNS) + " |", "|---" * (len(EVENT_COLUMNS) + 1) + "|"]
    for source in sources:
        events.append(f"| {source} | " + " | ".join(_cell(metrics.get(f"kpi/{key}_{source}"))
                                                   for key in EVENT_COLUMNS.values()) + " |")
    return "\n\n".join([*parts, "Reward events (pooled over the predicted steps) and predicted termination:",
                        "\n".join(events), f"K = {samples} sampled futures per window. `-`: undefined (no moving "
                        "pixel, no event predicted or real, or no termination in the windows)."])
