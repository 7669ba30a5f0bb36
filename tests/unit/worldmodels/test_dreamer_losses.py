"""Dreamer loss contracts: each named part is finite, vanishes with its scale, and has finite non-zero grads."""

from __future__ import annotations

import pytest
import torch

from trainers.modules.dreamer import DEFAULT_LOSS_SCALES, DreamerAgentConfig, DreamerModule
from trainers.modules.losses import weighted_sum
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.actor_critic import ReturnNormalizer, lambda_return, trajectory_weight
from worldmodels.models.world_model import WORLD_MODEL_LOSSES

B, T, SIDE = 2, 5, 16


def make_module() -> DreamerModule:
    torch.manual_seed(0)
    config = DreamerAgentConfig(deter=16, hidden=16, stoch=4, classes=4, depth=4, stages=2, layers=1, horizon=4)
    return DreamerModule(obs_shape=(SIDE, SIDE, 3), action_spec=ActionSpec("discrete", 3), config=config)


def make_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    terminated = torch.zeros(B, T, dtype=torch.bool)
    terminated[0, 3] = True
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    is_first[0, 4] = True
    return {
        "obs": torch.randint(0, 256, (B, T, SIDE, SIDE, 3), generator=generator, dtype=torch.uint8),
        "action": torch.nn.functional.one_hot(torch.randint(0, 3, (B, T), generator=generator), 3).float(),
        "reward": torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0, 2.5]]),
        "terminated": terminated, "truncated": torch.zeros(B, T, dtype=torch.bool), "is_first": is_first,
    }


def grads_of(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad for p in module.parameters() if p.grad is not None]


def assert_good_grads(module: torch.nn.Module, name: str) -> None:
    grads = grads_of(module)
    assert grads, f"{name}: no gradient reached {type(module).__name__}"
    assert all(torch.isfinite(g).all() for g in grads), f"{name}: non-finite gradient"
    assert sum(g.abs().sum() for g in grads) > 0, f"{name}: all-zero gradient"


@pytest.mark.parametrize("part", WORLD_MODEL_LOSSES)
def test_world_model_loss_part_contract(part):
    module = make_module()
    # Free bits make dyn/rep flat (zero grad) below 1 nat, as at initialisation; test the raw KL terms.
    module.world_model.free_nats = 0.0
    parts, post, metrics = module.world_model.loss(make_batch())
    assert tuple(parts) == WORLD_MODEL_LOSSES and post["deter"].shape == (B, T, 16)
    value = parts[part]
    assert value.shape == () and torch.isfinite(value), f"{part} = {value}"
    # Zero when its scale is zero: the weighted total without it equals the total with scale 0.
    scales = dict(DEFAULT_LOSS_SCALES)
    without = weighted_sum({k: v for k, v in parts.items() if k != part}, scales)
    torch.testing.assert_close(weighted_sum(parts, {**scales, part: 0.0}), without)
    module.zero_grad()
    value.backward()
    assert_good_grads(module.world_model, part)


def test_kl_balancing_directions():
    """Eq. 5 stop-gradients on one step (no history): dyn trains the prior only, rep the encoder/posterior."""
    module = make_module()
    module.world_model.free_nats = 0.0
    batch = {k: v[:, :1] for k, v in make_batch().items()}
    parts, _, _ = module.world_model.loss(batch)
    wm = module.world_model
    module.zero_grad()
    parts["dyn"].backward(retain_graph=True)
    assert not [p for p in [*wm.encoder.parameters(), *wm.rssm.obs_out.parameters()] if p.grad is not None]
    assert wm.rssm.img_out[-1].weight.grad.abs().sum() > 0
    module.zero_grad()
    parts["rep"].backward()
    assert wm.encoder.net[0].weight.grad.abs().sum() > 0 and wm.rssm.obs_out[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("part", ["policy", "entropy", "value", "value_slow"])
def test_actor_critic_loss_part_contract(part):
    module = make_module()
    batch = make_batch()
    _, post, _ = module.world_model.loss(batch)
    # Give the zero-initialised critic/reward outputs some weight so returns and advantages are non-trivial.
    torch.nn.init.normal_(module.critic.mlp.out.weight, std=0.1)
    torch.nn.init.normal_(module.world_model.reward.mlp.out.weight, std=0.1)
    parts, metrics = module.actor_critic_losses(post, batch["terminated"])
    assert set(parts) == {"policy", "entropy", "value", "value_slow"} and torch.isfinite(metrics["return"])
    value = parts[part]
    assert value.shape == () and torch.isfinite(value)
    torch.testing.assert_close(weighted_sum({part: value}, {part: 0.0}), torch.zeros(()))
    module.zero_grad()
    value.backward()
    owner = module.actor if part in ("policy", "entropy") else module.critic
    assert_good_grads(owner, part)
    assert not grads_of(module.world_model), "actor/critic losses must not reach the world model"


def test_lambda_return_matches_hand_computation():
    reward = torch.tensor([[1.0, 2.0, 3.0]])
    cont = torch.tensor([[1.0, 0.0, 1.0]])
    value = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    gamma, lam = 0.9, 0.5
    r2 = 3.0 + gamma * 1.0 * ((1 - lam) * 40.0 + lam * 40.0)
    r1 = 2.0 + gamma * 0.0 * ((1 - lam) * 30.0 + lam * r2)
    r0 = 1.0 + gamma * 1.0 * ((1 - lam) * 20.0 + lam * r1)
    torch.testing.assert_close(lambda_return(reward, cont, value, gamma=gamma, lam=lam), torch.tensor([[r0, r1, r2]]))
    weight = trajectory_weight(torch.tensor([[1.0, 1.0, 0.0, 1.0]]), gamma=gamma)
    torch.testing.assert_close(weight, torch.tensor([[1.0, 0.9, 0.0, 0.0]]))


def test_free_bits_clip_small_kl():
    """max(1 nat, KL): at initialisation the KL is below 1 nat, so dyn = rep = 1 exactly."""
    parts, _, metrics = make_module().world_model.loss(make_batch())
    assert metrics["kl"] < 1.0 and parts["dyn"].item() == parts["rep"].item() == 1.0


def test_return_normalizer_percentile_scale():
    norm = ReturnNormalizer(decay=0.99)
    norm.update(torch.linspace(0.0, 0.5, 101))
    assert norm.scale() == 1.0  # range 0.45 < 1: max(1, S) leaves small returns unscaled
    norm.update(torch.linspace(0.0, 1000.0, 1001))
    expected = 0.99 * 0.45 + 0.01 * 900.0
    assert norm.scale().item() == pytest.approx(expected, rel=1e-4)
    assert set(dict(norm.named_buffers())) == {"low_ema", "high_ema", "initialised"}  # saved in checkpoints
