"""TD-MPC2-style value-equivalent model: shapes, the WorldModel protocol, SimNorm and the loss contract."""

import pytest
import torch
import torch.nn.functional as F

from worldmodels.core import WorldModel
from worldmodels.envs.spaces import ActionSpec
from worldmodels.planning import MPPI, RandomShooting
from worldmodels.policies import PlannerPolicy
from worldmodels.tdmpc import (MODEL_LOSS_PARTS, PriorHead, RunningScale, SimNorm, TDMPCWorldModel, model_loss,
                               prior_loss, valid_transitions)

BOX = ActionSpec("continuous", 2, (-2.0, -1.0), (2.0, 1.0))
DISCRETE = ActionSpec("discrete", 3)
B, T = 3, 4


def make(obs_shape, spec):
    torch.manual_seed(0)
    return TDMPCWorldModel(obs_shape, spec, latent_dim=16, hidden=16, num_q=3)


def batch_for(obs_shape, spec):
    g = torch.Generator().manual_seed(1)
    obs = (torch.randn(B, T, *obs_shape, generator=g) if len(obs_shape) == 1
           else torch.randint(0, 256, (B, T, *obs_shape), generator=g, dtype=torch.uint8))
    if spec.discrete:
        action = F.one_hot(torch.randint(spec.dim, (B, T), generator=g), spec.dim).float()
    else:
        action = torch.rand(B, T, spec.dim, generator=g) * 2 - 1
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[0, 2] = True  # an episode boundary inside window 0
    return {"obs": obs, "action": action, "reward": torch.randn(B, T, generator=g),
            "terminated": torch.zeros(B, T, dtype=torch.bool), "is_first": is_first}


def test_simnorm_groups_sum_to_one():
    out = SimNorm(group=4)(torch.randn(5, 7, 12))
    assert out.shape == (5, 7, 12)
    torch.testing.assert_close(out.view(5, 7, 3, 4).sum(-1), torch.ones(5, 7, 3))
    assert (out >= 0).all()


@pytest.mark.parametrize("obs_shape,spec", [((4,), BOX), ((64, 64, 3), DISCRETE)], ids=["vector", "pixels"])
def test_world_model_protocol_shapes(obs_shape, spec):
    model = make(obs_shape, spec)
    assert isinstance(model, WorldModel)
    batch = batch_for(obs_shape, spec)
    states, last = model.observe(batch["obs"], batch["action"], batch["is_first"])
    assert states["latent"].shape == (B, T, 16) and last["latent"].shape == (B, 16)
    assert states["reward"].shape == states["cont"].shape == (B, T)
    assert states["reward"][0, 2] == 0 and states["cont"][0, 2] == 1  # an episode start has no arrival reward
    trajectory = model.imagine(last, PriorHead(model), 5)
    assert trajectory.feature.shape == (B, 6, 16) and trajectory.action.shape == (B, 5, spec.dim)
    assert trajectory.reward.shape == trajectory.cont.shape == (B, 5)
    assert model.predict_reward(trajectory.states).shape == (B, 6)
    assert model.value(last["latent"]).shape == (B,)
    if spec.discrete:
        assert (trajectory.action.sum(-1) == 1).all()
    else:  # the squashed prior stays inside the Box
        assert (trajectory.action.abs() <= torch.tensor([2.0, 1.0])).all()
    with pytest.raises(ValueError, match="no decoder"):
        model.decode(last)


@pytest.mark.parametrize("obs_shape,spec", [((4,), BOX), ((64, 64, 3), DISCRETE)], ids=["vector", "pixels"])
def test_loss_contract(obs_shape, spec):
    model = make(obs_shape, spec)
    batch = batch_for(obs_shape, spec)
    losses, rolled = model_loss(model, batch, rho=0.5)
    assert set(losses) == set(MODEL_LOSS_PARTS) and rolled.shape == (B, T - 1, 16)
    assert all(v.shape == () and torch.isfinite(v) for v in losses.values()), losses
    total = sum(losses.values())
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in model.encoder.parameters() if g is not None)
    assert all(p.grad is None for p in model.target_q.parameters())  # the EMA target is never trained
    zero = sum(0.0 * losses[name] for name in MODEL_LOSS_PARTS)
    assert float(zero.detach()) == 0.0  # zero at zero weight
    prior = prior_loss(model, rolled, RunningScale(), rho=0.5, entropy_coef=1e-4,
                       valid=valid_transitions(batch["is_first"]))["prior"]
    model.zero_grad()
    prior.backward()
    assert torch.isfinite(prior) and all(torch.isfinite(p.grad).all() for p in model.prior.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.prior.parameters())


def test_valid_transitions_stop_at_episode_boundary():
    is_first = torch.tensor([[True, False, True, False], [False, False, False, False]])
    assert valid_transitions(is_first).tolist() == [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]


def test_mppi_with_value_and_prior_plans_over_the_model():
    model = make((4,), BOX)
    planner = MPPI(BOX, horizon=3, candidates=16, iterations=2, gamma=0.99, value=model.value,
                   prior=PriorHead(model), prior_candidates=4)
    policy = PlannerPolicy(model, planner)
    action, state = policy.act(torch.randn(2, 4), torch.ones(2, dtype=torch.bool), None)
    assert action.shape == (2, 2) and (action.abs() <= torch.tensor([2.0, 1.0])).all()
    discrete = make((64, 64, 3), DISCRETE)  # discrete actions: shooting over one-hot sequences
    policy = PlannerPolicy(discrete, RandomShooting(DISCRETE, horizon=3, candidates=8, value=discrete.value))
    action, _ = policy.act(torch.zeros(2, 64, 64, 3, dtype=torch.uint8), torch.ones(2, dtype=torch.bool), None)
    assert (action.sum(-1) == 1).all()


def test_rejects_a_single_q_head():
    with pytest.raises(ValueError, match="num_q must be >= 2"):
        TDMPCWorldModel((4,), BOX, num_q=1)
