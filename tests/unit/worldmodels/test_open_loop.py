"""The fair open-loop protocol (worldmodels.open_loop) on fake world models whose right answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dream_fakes import ClockWorldModel, ShiftWorldModel, clock_episode
from worldmodels import open_loop
from worldmodels.envs.spaces import ActionSpec

K, H, S = 3, 15, 8
SPEC = ActionSpec("discrete", 3)


def test_windows_are_spread_over_whole_episodes_and_seeded():
    episodes = [clock_episode(60), clock_episode(50), clock_episode(40)]
    windows = open_loop.draw_windows(episodes, context=K, horizon=H, count=40, seed=1, encode=SPEC.to_model)
    starts, lengths = windows["start"], np.array([60, 50, 40])[windows["episode"]]
    assert windows["obs"].shape == (40, K + H, S, S, 3) and windows["action"].shape == (40, K + H, 3)
    assert set(windows["episode"]) == {0, 1, 2}
    assert (starts <= lengths - K - 1).all()  # every window predicts at least one row of its episode
    # Uniform over 144 starts: not the first rows (the old protocol's), and into the episodes' last rows.
    assert np.median(starts) > 10 and (starts >= lengths - K - H).sum() >= 3 and (starts == 0).sum() <= 2
    assert (windows["valid"][:, :K]).all() and not windows["valid"].all()  # late windows run past the end
    np.testing.assert_array_equal(windows["terminated"].any(1), (windows["terminated"] & windows["valid"]).any(1))
    again = open_loop.draw_windows(episodes, context=K, horizon=H, count=40, seed=1, encode=SPEC.to_model)
    other = open_loop.draw_windows(episodes, context=K, horizon=H, count=40, seed=2, encode=SPEC.to_model)
    np.testing.assert_array_equal(again["start"], starts)
    assert not np.array_equal(other["start"], starts) or not np.array_equal(other["episode"], windows["episode"])
    assert open_loop.draw_windows([clock_episode(K)], context=K, horizon=H, count=4, seed=0) is None


def test_a_perfect_model_scores_zero_and_finds_every_event():
    L = 40
    model = ClockWorldModel(L, S)
    kpis = open_loop.fair_kpis(model, {"random": [clock_episode(L), clock_episode(L, column=3)]}, context=K,
                               horizon=H, windows=48, samples=2, seed=0, encode=SPEC.to_model)
    for name in ("sample_mean_mse", "best_of_k_mse", "one_sample_mse", "moving_sample_mean_mse"):
        for k in (1, 5, 15):
            assert kpis[f"kpi/{name}_h{k}_random"] == 0.0, name
    assert kpis["kpi/moving_copy_last_mse_h5_random"] > 0 and kpis["kpi/moving_vs_copy_h5_random"] == 0.0
    assert kpis["kpi/reward_events_random"] > 0 and kpis["kpi/terminations_random"] > 0
    for name in ("reward_precision", "reward_recall", "termination_precision", "termination_recall",
                 "termination_auroc"):
        assert kpis[f"kpi/{name}_random"] == 1.0, name
    assert kpis["kpi/windows_random"] == 48 and kpis["kpi/samples"] == 2
    assert all(np.isfinite(v) for v in kpis.values())


def test_best_of_k_and_the_sample_mean_never_exceed_one_sample():
    L = 40
    model = ClockWorldModel(L, S, noise=40.0)
    episodes = [clock_episode(L), clock_episode(L, column=5)]
    kpis = open_loop.fair_kpis(model, {"agent": episodes}, context=K, horizon=H, windows=32, samples=8, seed=3,
                               encode=SPEC.to_model)
    for prefix in ("", "moving_"):
        for k in (1, 5, 15):
            one = kpis[f"kpi/{prefix}one_sample_mse_h{k}_agent"]
            assert kpis[f"kpi/{prefix}best_of_k_mse_h{k}_agent"] <= one
            # Averaging 8 samples of independent noise leaves 1/8 of its variance, but clamping at 0 on the black
            # background biases every sample alike: E[max(0, n)]^2 / E[max(0, n)^2] = 1/pi of it stays. 0.5 > 1/pi + 1/8.
            assert kpis[f"kpi/{prefix}sample_mean_mse_h{k}_agent"] < 0.5 * one
    state = torch.random.get_rng_state()  # scoring samples, but leaves the global stream where it was
    open_loop.fair_kpis(model, {"agent": episodes}, context=K, horizon=H, windows=4, samples=2, seed=3,
                        encode=SPEC.to_model)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_best_of_k_and_the_sample_mean_have_no_order():
    """Two samples at +-d around a grey truth: their mean is exact, each is off by d (best of K > sample mean);
    two identical wrong samples: best of K equals the sample mean. So neither bound holds between them."""
    real = np.full((1, 1, 2, 2, 3), 128, np.uint8)
    last = np.zeros((1, 2, 2, 3), np.uint8)
    valid = np.ones((1, 1), bool)
    spread = open_loop.frame_errors(real, [real + 20, real - 20], last, valid)
    assert spread["sample_mean_mse"][0] == 0.0 < spread["best_of_k_mse"][0]
    same = open_loop.frame_errors(real, [real + 20, real + 20], last, valid)
    assert same["sample_mean_mse"][0] == pytest.approx(same["best_of_k_mse"][0])


def test_moving_mask_picks_the_pixels_that_changed():
    last = np.zeros((1, 4, 4, 3), np.uint8)
    real = np.zeros((1, 2, 4, 4, 3), np.uint8)
    real[0, 0, 1, 2, 0] = 200  # appears at step 0 (vs the last context frame)
    real[0, 1, 1, 2, 0] = 200  # stays at step 1: not moving
    real[0, 1, 3, 3, 2] = 5  # below the threshold: not moving
    real[0, 1, 0, 0, 1] = 9  # just above it
    mask = open_loop.moving_mask(real, last, threshold=8)
    assert mask.shape == (1, 2, 4, 4)
    assert [tuple(p) for p in np.argwhere(mask[0, 0])] == [(1, 2)]
    assert [tuple(p) for p in np.argwhere(mask[0, 1])] == [(0, 0)]


def test_copy_last_on_static_frames_is_exact_and_the_moving_error_is_undefined_not_nan():
    still = {"obs": np.full((30, S, S, 3), 70, np.uint8), "action": np.zeros(30, np.int64),
             "reward": np.zeros(30, np.float32), "terminated": np.zeros(30, bool)}
    model = ShiftWorldModel(S)
    windows = open_loop.draw_windows([still], context=K, horizon=H, count=8, seed=0, encode=SPEC.to_model)
    scores = open_loop.score_windows(model, windows, context=K, samples=2)
    assert (scores["copy_last_mse"][np.isfinite(scores["copy_last_mse"])] == 0).all()
    assert np.isnan(scores["moving_copy_last_mse"]).all() and (scores["moving_fraction"][:1] == 0).all()
    kpis = open_loop.keyed(scores, (1, 5, 15), "random")
    assert kpis["kpi/copy_last_mse_h1_random"] == 0.0 and kpis["kpi/moving_fraction_h1_random"] == 0.0
    assert not any(key.startswith(("kpi/moving_copy", "kpi/moving_sample", "kpi/moving_vs")) for key in kpis)
    # No real reward event or termination: recall and AUROC are undefined; the fake's constant 0.5 reward is a
    # predicted event at every step, all of them wrong (precision 0).
    assert "kpi/reward_recall_random" not in kpis and "kpi/termination_auroc_random" not in kpis
    assert kpis["kpi/reward_precision_random"] == 0.0
    assert all(np.isfinite(v) for v in kpis.values())


def test_auroc_and_precision_recall():
    labels = np.array([False, False, True, True])
    assert open_loop.auroc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert open_loop.auroc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert open_loop.auroc(np.full(4, 0.5), labels) == 0.5
    assert open_loop.auroc(np.array([0.1, 0.6, 0.6, 0.9]), labels) == pytest.approx(0.875)
    assert np.isnan(open_loop.auroc(np.ones(3), np.zeros(3, bool)))
    assert open_loop.precision_recall(np.array([True, True, False]), np.array([True, False, True])) == (0.5, 0.5)
    precision, recall = open_loop.precision_recall(np.zeros(2, bool), np.array([True, False]))
    assert np.isnan(precision) and recall == 0.0


def test_batch_fragments_cut_at_episode_starts():
    batch = {"obs": torch.zeros(2, 6, S, S, 3, dtype=torch.uint8), "action": torch.zeros(2, 6, 3),
             "reward": torch.zeros(2, 6), "terminated": torch.zeros(2, 6, dtype=torch.bool),
             "is_first": torch.tensor([[True, False, False, True, False, False], [False] * 6])}
    assert [len(p["obs"]) for p in open_loop.batch_fragments(batch)] == [3, 3, 6]


def test_card_section_lists_each_source():
    model = ClockWorldModel(40, S)
    kpis = open_loop.fair_kpis(model, {"random": [clock_episode(40)], "agent": [clock_episode(40, column=2)]},
                               context=K, horizon=H, windows=8, samples=2, seed=0, encode=SPEC.to_model)
    card = open_loop.card_section(kpis)
    assert card.index("**random-policy") < card.index("**agent-policy") and "| agent |" in card and "K = 2" in card
    assert open_loop.card_section({"kpi/open_loop_mse_h1": 0.1}) == ""


def test_policy_episodes_are_whole_episodes_from_the_seeds_in_waves():
    from worldmodels.driver import record_episode
    from worldmodels.envs import make_vector
    from worldmodels.policies import RandomPolicy

    env = make_vector("worldmodels/Catch-v0", 3, image_size=S)
    try:
        episodes = open_loop.policy_episodes(env, RandomPolicy(SPEC, seed=0), count=5, rows=100, seed=10)
        cut = open_loop.policy_episodes(env, RandomPolicy(SPEC, seed=0), count=2, rows=4, seed=10)
        single = make_vector("worldmodels/Catch-v0", 1, image_size=S)
        firsts = [record_episode(single, RandomPolicy(SPEC, seed=0), max_rows=1, seed=10 + i)["obs"][0] for i in range(5)]
        single.close()
    finally:
        env.close()
    assert len(episodes) == 5 and all(len(e["obs"]) == 10 and e["terminated"][-1] for e in episodes)  # Catch: 10 rows
    for episode, first in zip(episodes, firsts):  # episode i starts from reset(seed + i), in both waves
        np.testing.assert_array_equal(episode["obs"][0], first)
    assert [len(e["obs"]) for e in cut] == [4, 4] and all(e["action"][-1] == 0 for e in cut)


def test_policy_episodes_do_not_depend_on_the_torch_stream_before_them():
    """A policy sampling from torch's global RNG (a Dreamer's posterior) plays the same episodes whatever ran
    before, and the stream after is the caller's."""
    from worldmodels.envs import make_vector

    class Sampling:
        def initial(self, batch_size):
            return None

        def act(self, obs, is_first, state):
            return torch.nn.functional.one_hot(torch.randint(0, 3, (obs.shape[0],)), 3).float(), state

    env = make_vector("worldmodels/Catch-v0", 2, image_size=S)
    try:
        played = []
        for skip in (0, 5):
            torch.manual_seed(123)
            torch.rand(skip)
            before = torch.random.get_rng_state()
            played.append(open_loop.policy_episodes(env, Sampling(), count=3, rows=100, seed=4))
            assert torch.equal(torch.random.get_rng_state(), before)
    finally:
        env.close()
    for a, b in zip(*played):
        np.testing.assert_array_equal(a["action"], b["action"])
