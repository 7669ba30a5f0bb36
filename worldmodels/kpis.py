"""The KPIs of a planner run (issue 13, item 5), for any world model, through the protocol only.

``wm plan`` scores them on its evaluation episodes and ``wm pets`` on the latest real episode, then writes the
same TensorBoard tags (:func:`log_planner_kpis`; every training command also writes ``kpi/return_vs_env_steps``
with :func:`log_return_vs_env_steps`)::

    kpi/open_loop_mse_h{k}             open-loop prediction error k steps ahead, k in (1, 5, H): the decoded
                                       frames' MSE on the [0, 1] scale (pixel models), the state MSE (PETS)
    kpi/open_loop_disagreement_h{k}    PETS only: the ensemble's disagreement on the same imagined steps
    kpi/copy_last_mse_h{k}, kpi/mean_frame_mse_h{k}, kpi/open_loop_vs_copy_h{k}, kpi/open_loop_vs_mean_h{k}
                                       the two baselines on the same steps and the ratios to them
                                       (worldmodels.baselines: the one definition, shared with the dream KPIs)
    kpi/plan_ms_per_action             planning milliseconds per executed action

Open-loop windows cut from real episodes (store-encoded ``(L, ...)`` arrays), ``K = context`` rows each::

    rows of a window   t .. t+K-1 | t+K ... t+K+H-1
    observed           obs, action | --                     (dreams.open_loop: the one open-loop prediction)
    predicted                      | 1   ...   H  steps ahead, under the real actions a_{t+K-1} .. a_{t+K+H-2}
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from worldmodels import baselines, dreams, viz
from worldmodels.core import WorldModel, state_device

FRAME_CONTEXT = 4  # real frames filtered before a pixel model predicts (a recurrent belief needs a few)


class EpisodeRecorder:
    """A driver hook keeping the first ``limit`` complete episodes, store-encoded ``(L, ...)`` arrays."""

    def __init__(self, limit: int = 4) -> None:
        self.limit = limit
        self.episodes: list[dict[str, np.ndarray]] = []

    def on_episode(self, env_index: int, episode: dict[str, np.ndarray], complete: bool) -> None:
        if complete and len(self.episodes) < self.limit:
            self.episodes.append(episode)


@contextlib.contextmanager
def random_state_kept(world_model: WorldModel) -> Iterator[None]:
    """Scoring samples (PETS particles, RSSM priors) but must not change what the run samples next: a run with and
    without the KPIs trains the same. Restores the global torch RNG and the model's own ``generator``, if any."""
    generator = getattr(world_model, "generator", None)
    saved = generator.get_state() if generator is not None else None
    device = state_device(world_model.initial(1))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    if saved is not None:
        generator.set_state(saved)


def kpi_horizons(horizon: int) -> list[int]:
    """The horizons the KPIs are logged at: 1, 5 and ``H`` (those within ``H``)."""
    return sorted({k for k in (1, 5, horizon) if 1 <= k <= horizon})


def _windows(episodes: Sequence[dict[str, np.ndarray]], length: int, count: int) -> dict[str, np.ndarray] | None:
    """At most ``count`` windows of ``length`` rows, spread evenly over every start in ``episodes``."""
    starts = [(e, t) for e, episode in enumerate(episodes) for t in range(len(episode["obs"]) - length + 1)]
    if not starts:
        return None
    chosen = [starts[i] for i in np.unique(np.linspace(0, len(starts) - 1, min(count, len(starts))).astype(int))]
    return {key: np.stack([episodes[e][key][t:t + length] for e, t in chosen]) for key in ("obs", "action")}


@torch.no_grad()
def open_loop_errors(world_model: WorldModel, episodes: Sequence[dict[str, np.ndarray]], horizon: int, *,
                     windows: int = 32) -> dict[str, list[float | None]]:
    """``{"mse": [k = 1 .. H]}`` (+ ``"disagreement"`` for models with the optional ``disagreement`` method: PETS) over windows of real ``episodes``; ``{}`` when no
    episode is long enough (``context + H`` rows; context 1 for vector observations, :data:`FRAME_CONTEXT` for frames).

    Also the series of :data:`worldmodels.baselines.BASELINES` on the same windows (a ratio is ``None`` where its
    baseline is exact, e.g. a still episode).
    """
    frames = len(world_model.obs_shape) == 3
    context = FRAME_CONTEXT if frames else 1
    chunk = _windows(episodes, context + horizon, windows)
    if chunk is None:
        return {}
    with random_state_kept(world_model):
        return _score(world_model, chunk, context, horizon)


def _score(world_model: WorldModel, chunk: dict[str, np.ndarray], context: int,
           horizon: int) -> dict[str, list[float | None]]:
    W = chunk["obs"].shape[0]
    obs = torch.as_tensor(chunk["obs"])  # (W, K+H, ...) uint8 frames or float vectors
    action = world_model.action_spec.to_model(torch.as_tensor(chunk["action"])).float()  # (W, K+H, A)
    is_first = torch.zeros(W, context + horizon, dtype=torch.bool)
    is_first[:, 0] = True
    predicted = dreams.open_loop(world_model, obs, action, is_first, context)["frames"]  # (W, H, ...)
    errors = baselines.open_loop_vs_baselines(obs[:, context:], predicted, obs[:, context - 1])  # name -> (H,)
    # The model's own series keeps its eval.json name (``record["open_loop"]["mse"]``); None: JSON has no NaN.
    out: dict[str, list[float | None]] = {"mse" if name == baselines.MODEL else name:
                                          [float(v) if np.isfinite(v) else None for v in values]
                                          for name, values in errors.items()}
    disagreement = getattr(world_model, "disagreement", None)  # optional protocol method (worldmodels.core)
    if disagreement is not None:  # e.g. the PETS ensemble's spread along the same real actions
        device = state_device(world_model.initial(1))
        _, last = world_model.observe(obs[:, :context].to(device), action[:, :context].to(device),
                                      is_first[:, :context])
        spread = disagreement(last, action[:, context - 1:context - 1 + horizon].to(device))  # (W, H)
        out["disagreement"] = spread.mean(0).tolist()
    return out


def log_planner_kpis(writer: Any, step: int, *, open_loop: dict[str, list[float | None]],
                     ms_per_action: float | None) -> None:
    """Write the module's tags at ``step`` (env steps) on a torch ``SummaryWriter``."""
    if ms_per_action is not None:
        writer.add_scalar("kpi/plan_ms_per_action", ms_per_action, step)
    for name, values in open_loop.items():
        # The baselines are tagged as everywhere else; the model's own series ("mse", "disagreement") as open_loop_*.
        tag = name if name in baselines.BASELINES else f"open_loop_{name}"
        for key, value in baselines.by_horizon({tag: values}, kpi_horizons(len(values))).items():
            writer.add_scalar(key, value, step)


def log_return_vs_env_steps(logger: Any, env_steps: int, mean_return: float) -> None:
    """Write ``kpi/return_vs_env_steps`` at step = environment steps (the x axis sample-efficiency plots use).

    ``logger`` is a Lightning logger (``log_metrics``) or a torch ``SummaryWriter`` (``add_scalar``).
    """
    if hasattr(logger, "log_metrics"):
        logger.log_metrics({"kpi/return_vs_env_steps": float(mean_return)}, step=int(env_steps))
    else:
        logger.add_scalar("kpi/return_vs_env_steps", float(mean_return), int(env_steps))


def format_kpi_table(metrics: Mapping[str, float], logdir: str | None) -> str:
    """A two-column table of ``metrics`` (sorted by name) plus the ``tensorboard --logdir`` line."""
    rows = [(name, f"{float(value):.4g}") for name, value in sorted(metrics.items())]
    width = max([len("metric")] + [len(name) for name, _ in rows])
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 10}"]
    lines += [f"{name:<{width}}  {value}" for name, value in rows] or ["(no metrics logged)"]
    if logdir is not None:
        lines.append(f"tensorboard --logdir {logdir}")
    return "\n".join(lines)


def as_numpy(x: Any) -> np.ndarray:
    """A tensor (any device, dtype) or array-like as a numpy array; floats for tensors."""
    return x.detach().float().cpu().numpy() if torch.is_tensor(x) else np.asarray(x, np.float64)


def open_loop_kpis(batch: Mapping[str, torch.Tensor], out: Mapping[str, Any], context: int,
                   horizons: tuple[int, ...] = (1, 5, 15)) -> dict[str, float]:
    """KPIs of one open-loop prediction against the real rows ``context, context + 1, ...``.

    ``out`` is :func:`worldmodels.dreams.open_loop`'s dict. Predicted step ``j`` (0-based) is row ``context + j``;
    steps at or after the first ``is_first`` past the context belong to another episode and are masked::

        row        0 .. context-1 | context   context+1  ...
        given      real frames     | --
        predicted                  | frames[0] frames[1] ...   reward[j] ~ reward[context+j], end[j] ~ terminated[context+j]

    MSE / PSNR at horizon ``h`` use predicted frame ``h - 1`` (frames on the [0, 1] scale); a horizon
    longer than the prediction is left out. The MSE comes with the copy-last-context-frame and mean-frame
    baselines on the same frames and the ratios to them (:mod:`worldmodels.baselines`): PSNR alone flatters.
    """
    true = viz.as_uint8(batch["obs"][:, context:])  # (B, P, H, W, C)
    pred = viz.as_uint8(out["frames"])  # (B, P, H, W, C)
    P = pred.shape[1]
    true = true[:, :P]
    assert true.shape == pred.shape, f"real {true.shape} vs predicted {pred.shape}"
    new_episode = as_numpy(batch["is_first"][:, context : context + P]).astype(bool)  # (B, P)
    valid = ~np.logical_or.accumulate(new_episode, axis=1)  # (B, P)
    last = viz.as_uint8(batch["obs"][:, context - 1])  # (B, H, W, C): what the copy-last baseline repeats
    metrics = baselines.by_horizon(baselines.open_loop_vs_baselines(true, pred, last, valid=valid), horizons)
    db = viz.psnr(true, pred)  # (B, P)
    for h in horizons:
        if h <= P and valid[:, h - 1].any():
            metrics[f"kpi/open_loop_psnr_h{h}"] = float(db[:, h - 1][valid[:, h - 1]].mean())
    if valid.any():
        reward = as_numpy(batch["reward"][:, context : context + P])
        terminated = as_numpy(batch["terminated"][:, context : context + P]).astype(bool)
        metrics["kpi/reward_mae"] = float(np.abs(as_numpy(out["reward"]) - reward)[valid].mean())
        events = valid & (reward != 0)  # sparse rewards: an MAE near 0 can mean "always predicts 0"
        if events.any():  # the share of the real rewards the model predicts there: 1 = all of it, 0 = none
            # (a least-squares slope, sum(pred * real) / sum(real^2), not a mean of ratios: a small shaped reward
            # predicted a little high must not dominate)
            real, pred = reward[events], as_numpy(out["reward"])[events]
            metrics["kpi/reward_at_events"] = float((pred * real).sum() / (real * real).sum())
        metrics["kpi/termination_accuracy"] = float(((as_numpy(out["end"]) > 0.5) == terminated)[valid].mean())
    return metrics
