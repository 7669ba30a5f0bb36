"""Open-loop error next to the copy-last-frame and mean-frame baselines (issue 14, item 5: KPIs that do not flatter).

Frames are uint8 ``(B, T, H, W, C)``: ``K`` context rows, then ``P`` predicted ones (``worldmodels.baselines``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldmodels.heldout import pooled_kpis
from worldmodels.model_card import open_loop_table
from worldmodels.kpis import open_loop_kpis
from worldmodels import viz
from worldmodels.baselines import BASELINES, MODEL, by_horizon, open_loop_vs_baselines
from worldmodels.kpis import log_planner_kpis

B, K, P, S = 3, 4, 15, 64
BACKGROUND, BALL = 100, 255
STEP = 3  # pixels the ball moves per row: more than its 2-pixel size, so consecutive balls never overlap


def pong_like(seed: int = 0) -> np.ndarray:
    """``(B, K + P, S, S, 3)`` uint8: a static grey background and a 2x2 white ball moving STEP px right per row."""
    rng = np.random.default_rng(seed)
    frames = np.full((B, K + P, S, S, 3), BACKGROUND, np.uint8)
    for b in range(B):
        y = int(rng.integers(4, S - 4))
        for t in range(K + P):
            x = 2 + STEP * t
            frames[b, t, y:y + 2, x:x + 2] = BALL
    return frames


def test_a_model_that_predicts_the_true_frames_has_ratio_zero():
    obs = pong_like()
    errors = open_loop_vs_baselines(obs[:, K:], obs[:, K:], obs[:, K - 1])
    assert set(errors) == {MODEL, *BASELINES} and all(v.shape == (P,) for v in errors.values())
    assert np.all(errors[MODEL] == 0) and np.all(errors["open_loop_vs_copy"] == 0) and np.all(errors["open_loop_vs_mean"] == 0)
    assert np.all(errors["copy_last_mse"] > 0) and np.all(errors["mean_frame_mse"] > 0)  # the ball moves: baselines err


def test_a_model_that_outputs_the_last_context_frame_has_copy_ratio_exactly_one():
    obs = pong_like()
    frozen = np.repeat(obs[:, K - 1:K], P, axis=1)  # (B, P, S, S, 3)
    errors = open_loop_vs_baselines(obs[:, K:], frozen, obs[:, K - 1])
    assert np.array_equal(errors[MODEL], errors["copy_last_mse"]) and np.all(errors["open_loop_vs_copy"] == 1.0)


def test_a_model_that_lost_the_ball_matches_the_copy_baseline_despite_high_psnr():
    obs = pong_like()
    rng = np.random.default_rng(1)
    # The ball stays where it was last seen; the background is right to within a grey level: the Pong failure.
    lost = np.repeat(obs[:, K - 1:K], P, axis=1).astype(np.int16) + rng.integers(-1, 2, (B, P, S, S, 3))
    lost = np.clip(lost, 0, 255).astype(np.uint8)
    errors = open_loop_vs_baselines(obs[:, K:], lost, obs[:, K - 1])
    psnr = viz.psnr(obs[:, K:], lost).mean()
    assert psnr > 30.0  # "good" by PSNR: 2 x 12 ball values wrong of 12,288 give ~31 dB
    # ~1: the +-1 grey-level noise adds (2/3)/255^2 = 1e-5 to the copy baseline's ~7e-4 (2 balls of d = 155/255).
    assert errors["open_loop_vs_copy"] == pytest.approx(np.ones(P), abs=0.05)
    # Even the mean frame beats it: the mean smears the ball along its path, so it is wrong ~once per step where the
    # lost model is wrong twice (at the old and the new position): ratio 2 / (1 - 1/P) ~ 2.1.
    assert np.all(errors["open_loop_vs_mean"] > 1.5)
    tracking = obs[:, K:].copy()  # a model that tracks the ball, with the same background noise
    tracking = np.clip(tracking.astype(np.int16) + rng.integers(-1, 2, tracking.shape), 0, 255).astype(np.uint8)
    assert np.all(open_loop_vs_baselines(obs[:, K:], tracking, obs[:, K - 1])["open_loop_vs_copy"] < 0.05)


def test_errors_are_frame_mse_means_over_valid_windows_and_the_mean_frame_over_valid_frames():
    obs = pong_like()
    real, last = obs[:, K:], obs[:, K - 1]
    predicted = np.full_like(real, BACKGROUND)
    valid = np.ones((B, P), bool)
    valid[2, 5:] = False  # window 2's episode ended: its rows 5.. are another episode
    errors = open_loop_vs_baselines(torch.as_tensor(real), torch.as_tensor(predicted), torch.as_tensor(last), valid=valid)
    mse = viz.frame_mse(real, predicted)  # (B, P)
    assert errors[MODEL][0] == pytest.approx(mse[:, 0].mean()) and errors[MODEL][9] == pytest.approx(mse[:2, 9].mean())
    mean_frame = real[valid].astype(np.float64).mean(0) / 255  # (S, S, 3)
    expected = ((real[0, 9] / 255 - mean_frame) ** 2).mean() / 2 + ((real[1, 9] / 255 - mean_frame) ** 2).mean() / 2
    assert errors["mean_frame_mse"][9] == pytest.approx(expected)
    none_valid = open_loop_vs_baselines(real, predicted, last, valid=np.zeros((B, P), bool))
    assert np.all(np.isnan(none_valid[MODEL])) and by_horizon(none_valid, (1, 5)) == {}
    vectors = open_loop_vs_baselines(np.zeros((2, 3, 4)), np.ones((2, 3, 4)), np.zeros((2, 4)))  # (B, P, D), unscaled
    assert np.all(vectors[MODEL] == 1.0) and np.all(np.isnan(vectors["open_loop_vs_copy"]))  # copy is exact: undefined
    with pytest.raises(ValueError, match=r"last_context \(3, 64, 64\) must be \(B, \*obs\)"):
        open_loop_vs_baselines(real, predicted, last[..., 0])
    with pytest.raises(ValueError, match=r"valid \(3,\) must be \(B, P\)"):
        open_loop_vs_baselines(real, predicted, last, valid=np.ones(B, bool))


def test_keys_by_horizon_are_the_same_in_the_callbacks_the_planners_and_the_card():
    obs = pong_like()
    frozen = np.repeat(obs[:, K - 1:K], P, axis=1)
    errors = open_loop_vs_baselines(obs[:, K:], frozen, obs[:, K - 1])
    flat = by_horizon(errors, (1, 5, 15, 16))  # 16 > P: left out
    names = ("open_loop_mse", "copy_last_mse", "mean_frame_mse", "open_loop_vs_copy", "open_loop_vs_mean")
    assert set(flat) == {f"kpi/{n}_h{k}" for n in names for k in (1, 5, 15)}
    batch = {"obs": torch.as_tensor(obs), "is_first": torch.zeros(B, K + P, dtype=torch.bool),
             "reward": torch.zeros(B, K + P), "terminated": torch.zeros(B, K + P, dtype=torch.bool)}
    out = {"frames": torch.as_tensor(frozen), "reward": torch.zeros(B, P), "end": torch.zeros(B, P)}
    kpis = open_loop_kpis(batch, out, K)  # the dream callbacks' and `wm dream`'s KPIs
    assert {k: kpis[k] for k in flat} == pytest.approx(flat) and kpis["kpi/open_loop_vs_copy_h5"] == 1.0
    assert kpis["kpi/open_loop_psnr_h1"] > 30.0  # PSNR is kept, next to the ratios

    class Writer:  # a SummaryWriter's add_scalar only
        def __init__(self):
            self.tags: dict[str, float] = {}

        def add_scalar(self, tag, value, step):
            self.tags[tag] = value

    writer = Writer()
    planner = {"mse" if n == MODEL else n: errors[n].tolist() for n in errors}  # as worldmodels.kpis.open_loop_errors
    log_planner_kpis(writer, 0, open_loop=planner, ms_per_action=None)
    assert writer.tags == pytest.approx(flat)  # the planners log h1, h5 and H = 15 under the same names
    card = open_loop_table(kpis)
    header = card.splitlines()[0]
    assert header.index("model / copy-last") < header.index("model MSE") < header.index("PSNR")  # ratios lead
    assert card.splitlines()[2].startswith("| 1 | 1 |")  # h1, ratio to copy 1


def test_wm_dream_scores_all_episodes_together_with_short_ones_masked():
    obs = torch.as_tensor(pong_like())
    short = 8  # episode 1 ends after 8 rows: it reaches horizons 1 .. 4 only
    batches, outs = [], []
    for b, length in enumerate((K + P, short, K + P)):
        is_first = torch.zeros(1, length, dtype=torch.bool)
        is_first[0, 0] = True
        batches.append({"obs": obs[b:b + 1, :length], "is_first": is_first, "reward": torch.zeros(1, length),
                        "terminated": torch.zeros(1, length, dtype=torch.bool)})
        outs.append({"frames": torch.full_like(obs[b:b + 1, K:length], BACKGROUND), "reward": torch.zeros(1, length - K),
                     "end": torch.zeros(1, length - K)})
    kpis = pooled_kpis(batches, outs, K)
    mse = viz.frame_mse(obs[:, K:].numpy(), np.full(obs[:, K:].shape, BACKGROUND, np.uint8))  # (B, P)
    assert kpis["kpi/open_loop_mse_h1"] == pytest.approx(mse[:, 0].mean())  # all three episodes
    assert kpis["kpi/open_loop_mse_h5"] == pytest.approx(mse[[0, 2], 4].mean())  # episode 1 ended at horizon 4
    assert kpis["kpi/reward_mae"] == 0.0
