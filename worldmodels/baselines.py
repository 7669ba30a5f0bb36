"""Open-loop error next to two baselines on the SAME frames (issue 14, item 5: KPIs that do not flatter).

A frame MSE or PSNR alone flatters: in Pong the background is nearly every pixel, so a forecast that loses the
ball and both paddles still scores ~35 dB. Two predictors that know nothing of the dynamics give the scale:

    copy_last    the last context frame, repeated at every step ahead ("nothing moves")
    mean_frame   the per-pixel mean of the evaluated real frames ("only the background")

The old (``first-rows``) open-loop protocol (``wm dream --protocol first-rows``, the dream callbacks with
``protocol="first-rows"``, both through ``worldmodels.kpis.open_loop_kpis``) and the planner KPIs of
:mod:`worldmodels.kpis` are computed by :func:`open_loop_vs_baselines` and named by :func:`by_horizon`; the fair
protocol, the default of ``wm dream`` / ``wm export`` / ``wm remeasure`` and the dream callbacks, scores the same two
baselines on the same frames AND on the moving pixels (:mod:`worldmodels.open_loop`)::

    kpi/open_loop_mse_h{k}      the model, k steps ahead
    kpi/copy_last_mse_h{k}      copy the last context frame forward
    kpi/mean_frame_mse_h{k}     the mean frame
    kpi/open_loop_vs_copy_h{k}  open_loop_mse / copy_last_mse    (< 1: better than the baseline, 1: no better, 0: exact)
    kpi/open_loop_vs_mean_h{k}  open_loop_mse / mean_frame_mse

Alignment (``K`` context rows, ``P`` predicted ones; step ``j`` (0-based) is ``j + 1`` steps ahead)::

    rows          0 .. K-1           | K                K+1              ...  K+P-1
    real          context            | real[:, 0]       real[:, 1]       ...  real[:, P-1]       (B, P, *obs)
    model                            | predicted[:, 0]  predicted[:, 1]  ...                     (B, P, *obs)
    copy_last     last_context = K-1 | last_context     last_context     ...                     (B, *obs)
    mean_frame                       | mean of every valid real[b, j], the same frame at each step  (*obs)

Ratios are of the MEAN errors over the windows, not means of per-window ratios: one window whose baseline is exact
(a still frame before the serve) would send a mean of ratios to infinity. A ratio whose baseline error is 0 is
undefined (``nan`` here, left out of :func:`by_horizon`).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

MODEL = "open_loop_mse"
BASELINES = ("copy_last_mse", "mean_frame_mse", "open_loop_vs_copy", "open_loop_vs_mean")
"""The series :func:`open_loop_vs_baselines` adds to the model's own ``open_loop_mse``."""


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)  # torch.Tensor or array


def _scaled(x: Any) -> np.ndarray:
    """float64; uint8 frames on the [0, 1] scale (``viz.frame_mse``'s), vectors as they are (PETS' state MSE)."""
    x = _numpy(x)
    return x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)


def _ratio(model: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(baseline > 0, model / baseline, np.nan)


def open_loop_vs_baselines(real: Any, predicted: Any, last_context: Any, *, valid: Any = None) -> dict[str, np.ndarray]:
    """The model's open-loop MSE, both baselines' on the same frames, and the ratios: name -> ``(P,)`` float64.

    ``real, predicted (B, P, *obs)``: uint8 frames ``(B, P, H, W, C)`` (scored on the [0, 1] scale) or float
    vectors ``(B, P, D)``; ``last_context (B, *obs)``: the last real row before the prediction (row ``K - 1``);
    ``valid (B, P)`` bool: the steps to score (``False``: past the window's episode; default all). Entry ``j`` is the
    mean over the windows valid at step ``j``, ``nan`` where none is. Names: :data:`MODEL` and :data:`BASELINES`.
    """
    real, predicted, last = _scaled(real), _scaled(predicted), _scaled(last_context)
    B, P = real.shape[:2]
    obs = real.shape[2:]
    if predicted.shape != real.shape or last.shape != (B, *obs):
        raise ValueError(f"open_loop_vs_baselines: predicted {predicted.shape} must equal real {real.shape} "
                         f"(B, P, *obs), and last_context {last.shape} must be (B, *obs) = {(B, *obs)}")
    valid = np.ones((B, P), bool) if valid is None else _numpy(valid).astype(bool)
    if valid.shape != (B, P):
        raise ValueError(f"open_loop_vs_baselines: valid {valid.shape} must be (B, P) = {(B, P)}")
    mean_frame = real[valid].mean(0) if valid.any() else np.zeros(obs)  # (*obs): over every evaluated real frame
    axes = tuple(range(2, real.ndim))
    per_window = {MODEL: ((predicted - real) ** 2).mean(axes),  # (B, P) each
                  "copy_last_mse": ((last[:, None] - real) ** 2).mean(axes),
                  "mean_frame_mse": ((mean_frame - real) ** 2).mean(axes)}
    counts = valid.sum(0)  # (P,)
    with np.errstate(divide="ignore", invalid="ignore"):
        errors = {name: np.where(valid, e, 0.0).sum(0) / counts for name, e in per_window.items()}  # (P,)
    errors["open_loop_vs_copy"] = _ratio(errors[MODEL], errors["copy_last_mse"])
    errors["open_loop_vs_mean"] = _ratio(errors[MODEL], errors["mean_frame_mse"])
    return errors


def by_horizon(errors: Mapping[str, Sequence[float | None]], horizons: Iterable[int]) -> dict[str, float]:
    """``{"kpi/{name}_h{k}": errors[name][k - 1]}`` for each ``k`` in ``horizons`` within the series; undefined
    values (``nan`` / ``None``: no valid window, or an exact baseline) are left out."""
    out: dict[str, float] = {}
    for k in horizons:
        for name, values in errors.items():
            value = values[k - 1] if 1 <= k <= len(values) else None
            if value is not None and np.isfinite(value):
                out[f"kpi/{name}_h{k}"] = float(value)
    return out
