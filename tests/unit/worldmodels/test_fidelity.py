"""Decision fidelity (issue 28) on a fake world model and env whose dream and real returns are known exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support.fidelity_fakes import (DREAM_VALUES, EPISODE_STEPS, BanditEnv, ConstantFramePolicy, ConstantHead,
                                          CounterWorldModel, bandit_factory)
from worldmodels.controllers.linear import make_controller
from worldmodels.envs.spaces import ActionSpec
from worldmodels.fidelity import (card_section, decision_fidelity, dream_returns, fidelity_table, metrics, ranks,
                                  regret, spearman)
from worldmodels.fidelity_real import play, start_frames
from worldmodels.fidelity_policies import EpsilonRandomPolicy, perturbed_controller
from worldmodels.policies import ControllerHead, ModelPolicy, RandomPolicy


def constant_policies(world_model) -> dict:
    return {f"always-{a}": ModelPolicy(world_model, ConstantHead(a)) for a in range(len(DREAM_VALUES))}


# ---------------------------------------------------------------------------------------------- statistics


def test_spearman_perfect_inverted_and_closed_form():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [9, 7, 5, -1]) == pytest.approx(-1.0)
    x, y = np.random.default_rng(0).permutation(9), np.random.default_rng(1).permutation(9)  # no ties
    d = ranks(x) - ranks(y)
    assert spearman(x, y) == pytest.approx(1 - 6 * (d ** 2).sum() / (9 * (81 - 1)))


def test_spearman_ties_share_their_mean_rank():
    assert ranks([5, 1, 5, 3]).tolist() == [3.5, 1.0, 3.5, 2.0]
    # ranks x = (1, 2.5, 2.5, 4), y = (1, 2, 3, 4): centred products 4.5 over sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / np.sqrt(4.5 * 5.0))
    assert np.isnan(spearman([2, 2, 2], [1, 2, 3]))  # one side constant: no ranking to compare


def test_regret_is_what_the_dream_pick_loses_and_averages_tied_picks():
    assert regret([0, 5, 10, 15], [0, 8, 4, 12]) == 0.0
    assert regret([0, 5, 10, 15], [12, 8, 4, 0]) == 12.0
    assert regret([1, 3, 3], [5, 2, 4]) == pytest.approx(5 - (2 + 4) / 2)


def test_bad_series_are_one_line_errors():
    with pytest.raises(ValueError, match="equally long"):
        spearman([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="equally long"):
        regret([1, 2], [1, 2, 3])


# ---------------------------------------------------------------------------------------------- the dream


def test_dream_ends_on_the_predicted_termination_counting_its_reward():
    world_model = CounterWorldModel(end=5)
    first = torch.zeros(3, 8, 8, 3, dtype=torch.uint8)
    out = dream_returns(world_model, ModelPolicy(world_model, ConstantHead(2)), first, horizon=100)
    assert out["lengths"].tolist() == [5, 5, 5]  # steps 1..5 lived, the 5th (cont 0) ends it
    assert out["returns"].tolist() == [10.0, 10.0, 10.0]  # 5 x DREAM_VALUES[2]: nothing after the end
    assert world_model.calls.count("imagine:actions") == 5  # once every row has ended, nothing more is imagined
    cut = dream_returns(world_model, ModelPolicy(world_model, ConstantHead(2)), first, horizon=3)
    assert cut["lengths"].tolist() == [3, 3, 3] and cut["returns"].tolist() == [6.0, 6.0, 6.0]


def test_frame_policies_dream_on_decoded_frames_with_the_same_returns():
    world_model = CounterWorldModel(end=5)
    first = torch.full((1, 8, 8, 3), 6, dtype=torch.uint8)
    frames = ConstantFramePolicy(3)
    out = dream_returns(world_model, frames, first, horizon=10)
    latent = dream_returns(world_model, ModelPolicy(world_model, ConstantHead(3)), first, horizon=10)
    assert out["returns"].tolist() == latent["returns"].tolist() == [15.0]
    assert frames.seen[:5] == [6, 1, 2, 3, 4]  # the real first frame, then decode(s_1), decode(s_2), ...


def test_sampled_ends_follow_the_continue_probability_and_the_seed():
    world_model = CounterWorldModel(cont=0.5)
    first = torch.zeros(4000, 8, 8, 3, dtype=torch.uint8)
    policy = ModelPolicy(world_model, ConstantHead(1))
    a = dream_returns(world_model, policy, first, horizon=200, termination="sample", seed=3)
    b = dream_returns(world_model, policy, first, horizon=200, termination="sample", seed=3)
    c = dream_returns(world_model, policy, first, horizon=200, termination="sample", seed=4)
    assert np.array_equal(a["returns"], b["returns"]) and not np.array_equal(a["returns"], c["returns"])
    # Geometric with p = 0.5: mean 2 steps, standard error sqrt(2 / 4000) = 0.022; 0.15 is ~7 standard errors.
    assert abs(a["lengths"].mean() - 2.0) < 0.15
    never = dream_returns(world_model, policy, first[:2], horizon=50, termination="threshold")
    assert never["lengths"].tolist() == [50, 50]  # 0.5 is not below the threshold: the dream never ends


def test_start_frames_are_the_resets_run_episodes_plays():
    env = bandit_factory()(3)
    try:
        frames = start_frames(env, episodes=5, seed=40)  # two waves: seeds 40..42, then 43..44
        policies = [ConstantFramePolicy(1), ConstantFramePolicy(3)]
        jobs = [(p, j) for j in range(4) for p in range(2)]  # 8 jobs through 3 env slots, refilled as they end
        returns, firsts = play(env, policies, jobs, seed=40, horizon=100)
        cut, _ = play(env, policies, jobs, seed=40, horizon=2)
    finally:
        env.close()
    expected = np.stack([BanditEnv().reset(seed=40 + j)[0] for j in range(5)])
    assert np.array_equal(frames.numpy(), expected)
    # every job's episode starts from reset(seed + j), whichever env slot and wave it ran in, played by its policy
    assert np.array_equal(firsts.numpy(), expected[[j for _, j in jobs]])
    assert returns.tolist() == [EPISODE_STEPS * (2.0, 3.0)[p] for p, _ in jobs]
    assert cut.tolist() == [2 * (2.0, 3.0)[p] for p, _ in jobs]  # two actions, two rewards, then the next job


# ---------------------------------------------------------------------------------------------- the measurement


def test_decision_fidelity_table_gap_spearman_and_regret():
    world_model = CounterWorldModel(end=5)
    report = decision_fidelity(world_model, constant_policies(world_model), bandit_factory((0.0, 2.0, 1.0, 3.0)),
                               episodes=3, seed=7, horizon=10)
    rows = report["policies"]
    assert [rows[f"always-{a}"]["dream_mean"] for a in range(4)] == [0.0, 5.0, 10.0, 15.0]
    assert [rows[f"always-{a}"]["real_mean"] for a in range(4)] == [0.0, 8.0, 4.0, 12.0]  # 4 steps x value
    assert [rows[f"always-{a}"]["gap"] for a in range(4)] == [0.0, -3.0, 6.0, 3.0]
    assert rows["always-1"]["dream_se"] == 0.0 and rows["always-1"]["dream_lengths"] == [5, 5, 5]
    assert report["spearman"] == pytest.approx(0.8)  # ranks (1, 2, 3, 4) vs (1, 3, 2, 4): 1 - 6 * 2 / 60
    assert report["regret"] == 0.0 and report["dream_best"] == report["real_best"] == "always-3"
    inverted = decision_fidelity(world_model, constant_policies(world_model), bandit_factory((3.0, 2.0, 1.0, 0.0)),
                                 episodes=2, seed=7, horizon=10)
    assert inverted["spearman"] == pytest.approx(-1.0) and inverted["regret"] == 3.0 * EPISODE_STEPS
    assert metrics(inverted) == {"kpi/decision_fidelity_regret": 12.0, "kpi/decision_fidelity_spearman": -1.0}
    table = fidelity_table(report)
    assert "| always-2 | 10.0 ± 0.0 | 4.0 ± 0.0 | +6.0 |" in table and "**0.800**" in table
    assert "seeds 7-9" in card_section(report)


def test_the_same_seeds_give_the_same_numbers():
    world_model = CounterWorldModel(cont=0.7)  # sampled ends: the dream draws from the seed
    spec = world_model.action_spec

    def measure(seed):
        policies = {"random": RandomPolicy(spec, seed=1), "always-3": ModelPolicy(world_model, ConstantHead(3)),
                    "eps": EpsilonRandomPolicy(ModelPolicy(world_model, ConstantHead(2)), 0.5, seed=2)}
        return decision_fidelity(world_model, policies, bandit_factory(), episodes=4, seed=seed, horizon=8,
                                 termination="sample")

    first, again, other = measure(11), measure(11), measure(12)
    assert first == again
    assert first["policies"]["always-3"]["dream_returns"] != other["policies"]["always-3"]["dream_returns"]
    assert len(set(first["policies"]["random"]["real_returns"])) > 1  # random play: not a constant to agree on


def test_bad_input_is_one_line():
    world_model = CounterWorldModel()
    two = dict(list(constant_policies(world_model).items())[:2])
    with pytest.raises(ValueError, match="at least 3, got 2"):
        decision_fidelity(world_model, two, bandit_factory(), episodes=1, seed=0, horizon=5)
    with pytest.raises(ValueError, match="termination must be one of"):
        decision_fidelity(world_model, constant_policies(world_model), bandit_factory(), episodes=1, seed=0,
                          horizon=5, termination="expected")
    with pytest.raises(ValueError, match="not a Policy"):
        decision_fidelity(world_model, {**two, "head": ConstantHead(1)}, bandit_factory(), episodes=1, seed=0,
                          horizon=5)


# ---------------------------------------------------------------------------------------------- the policy set


def test_epsilon_random_replaces_actions_and_tells_the_filter():
    world_model = CounterWorldModel(end=10)
    first = torch.zeros(2000, 8, 8, 3, dtype=torch.uint8)
    base = ModelPolicy(world_model, ConstantHead(3))
    none = dream_returns(world_model, EpsilonRandomPolicy(base, 0.0, seed=0), first[:4], horizon=20)
    assert none["returns"].tolist() == [30.0] * 4
    every = dream_returns(world_model, EpsilonRandomPolicy(base, 1.0, seed=0), first, horizon=20)
    # uniform actions: 1.5 per step over 10 steps, standard error 1.1 * sqrt(10) / sqrt(2000) = 0.08
    assert abs(every["returns"].mean() - 15.0) < 0.5
    policy = EpsilonRandomPolicy(base, 1.0, seed=0)
    action, state = policy.act(torch.zeros(64, 8, 8, 3, dtype=torch.uint8), torch.ones(64, dtype=torch.bool), None)
    assert torch.equal(state["action"], action) and (action.argmax(-1) != 3).any()


def test_weight_noise_scales_with_the_parameters_and_the_seed():
    controller = make_controller("linear", 4, ActionSpec("discrete", 3))
    head = ControllerHead(controller, torch.randn(1, controller.num_params, generator=torch.Generator().manual_seed(0)))
    same = perturbed_controller(CounterWorldModel(), head, 0.0, seed=1).head.params
    assert torch.equal(same, head.params)
    a = perturbed_controller(CounterWorldModel(), head, 0.5, seed=1).head.params
    b = perturbed_controller(CounterWorldModel(), head, 0.5, seed=1).head.params
    assert torch.equal(a, b) and not torch.equal(a, head.params)
    ratio = ((a - head.params).pow(2).mean() / head.params.pow(2).mean()).sqrt()
    assert 0.3 < float(ratio) < 0.7  # noise rms = 0.5 x the parameters' rms (tens of parameters: loose)
