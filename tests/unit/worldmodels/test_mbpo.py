"""MBPO pieces: SAC's loss contract, the transition replays, real_ratio mixing, scheduled branched rollouts."""

import pytest
import torch

from trainers.runs.mbpo import SACLearner
from worldmodels.envs.spaces import ActionSpec
from worldmodels.mbpo import (SAC, SAC_LOSS_PARTS, SACPolicy, TransitionReplay, branched_rollouts, mixed_batch,
                              rollout_length, sac_losses)
from worldmodels.pets import PETSWorldModel, ProbabilisticEnsemble

BOX = ActionSpec("continuous", 2, (-2.0, -1.0), (2.0, 1.0))
D = 3


def transitions(n, *, reward=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(n, D, generator=g), "action": torch.rand(n, 2, generator=g) * 2 - 1,
            "reward": torch.full((n,), reward), "next_obs": torch.randn(n, D, generator=g),
            "done": (torch.rand(n, generator=g) < 0.2).float()}


def test_rollout_length_schedule_is_linear_between_a_and_b():
    schedule = (100, 300, 1, 5)
    assert [rollout_length(schedule, s) for s in (0, 100, 200, 300, 10_000)] == [1, 1, 3, 5, 5]
    assert rollout_length((0, 0, 2, 2), 7) == 2


def test_replay_wraps_and_samples():
    replay = TransitionReplay(5, D, 2)
    replay.add(transitions(4, reward=1.0))
    replay.add(transitions(3, reward=2.0))
    assert len(replay) == 5 and replay.count == 7
    assert sorted(replay.all()["reward"].tolist()) == [1.0, 1.0, 2.0, 2.0, 2.0]  # the two oldest were overwritten
    batch = replay.sample(16, torch.Generator().manual_seed(0))
    assert batch["obs"].shape == (16, D) and batch["action"].shape == (16, 2) and batch["done"].shape == (16,)


def test_mixed_batch_follows_real_ratio():
    real, model = TransitionReplay(100, D, 2), TransitionReplay(100, D, 2)
    real.add(transitions(50, reward=1.0))
    g = torch.Generator().manual_seed(0)
    assert mixed_batch(real, model, batch_size=20, real_ratio=0.25, generator=g)["reward"].sum() == 20  # no model data yet
    model.add(transitions(50, reward=0.0))
    batch = mixed_batch(real, model, batch_size=20, real_ratio=0.25, generator=g)
    assert batch["reward"].shape == (20,) and batch["reward"].sum() == 5  # exactly 25 % real (reward 1)


def test_sac_loss_contract_and_update():
    torch.manual_seed(0)
    sac = SAC(D, BOX, hidden=16)
    losses = sac_losses(sac, transitions(32))
    assert set(losses) == set(SAC_LOSS_PARTS) and all(v.shape == () and torch.isfinite(v) for v in losses.values())
    zero = sum(0.0 * v for v in losses.values())
    assert float(zero.detach()) == 0.0  # zero at zero weight
    # Each part reaches only its own parameters (one backward serves the three optimisers).
    for name, params in (("critic", sac.critic.parameters()), ("actor", sac.actor.parameters()), ("alpha", [sac.log_alpha])):
        sac.zero_grad(set_to_none=True)
        losses = sac_losses(sac, transitions(32))
        losses[name].backward()
        own = [p.grad for p in params]
        assert all(g is not None and torch.isfinite(g).all() for g in own) and any(g.abs().sum() > 0 for g in own), name
        others = {"critic": sac.critic, "actor": sac.actor}
        for other, module in others.items():
            if other != name:
                assert all(p.grad is None for p in module.parameters()), (name, other)
    before = [p.clone() for p in sac.target_critic.parameters()]
    learner = SACLearner(sac, lr=3e-4)  # the optimisers live in trainers/ (the library holds none)
    learner.update(transitions(32))
    assert learner.updates == 1 and any(not torch.equal(a, b) for a, b in zip(before, sac.target_critic.parameters()))
    action, _ = SACPolicy(sac, sample=False).act(torch.randn(4, D), torch.ones(4, dtype=torch.bool), None)
    assert action.shape == (4, 2) and (action.abs() <= torch.tensor([2.0, 1.0])).all()  # squashed into the Box


def test_branched_rollouts_stop_at_terminal_states():
    torch.manual_seed(0)
    ensemble = ProbabilisticEnsemble(D + 2, D + 1, ensemble_size=2, hidden=8, layers=2)
    terminal = lambda obs, action, next_obs: next_obs[:, 0] > 0  # noqa: E731  about half of all steps end
    model = PETSWorldModel(ensemble, BOX, propagation="ts1", termination_fn=terminal)
    sac = SAC(D, BOX, hidden=8)
    out = branched_rollouts(model, SACPolicy(sac), torch.randn(64, D), length=3)
    M = out["obs"].shape[0]
    assert 64 <= M < 64 * 3  # every branch's first step counts; later ones only while no state was terminal
    assert out["action"].shape == (M, 2) and out["reward"].shape == out["done"].shape == (M,)
    torch.testing.assert_close(out["done"], (out["next_obs"][:, 0] > 0).float())


def test_sac_rejects_discrete_actions():
    with pytest.raises(ValueError, match="Box action"):
        SAC(D, ActionSpec("discrete", 3))
