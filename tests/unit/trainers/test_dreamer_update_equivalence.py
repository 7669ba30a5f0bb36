"""The speed paths of the Dreamer update compute the same numbers as the plain formulation.

Each speed change (issue 12) keeps the losses and gradients: same seed, same batch, the plain path written
out here (imagination with the plain actor head, every state stacked, the actor and the slow critic run
again over all imagined states) against the module's. Tolerances are fp32 rounding: matmuls over a
different number of rows may block their sums differently.
"""

from __future__ import annotations

import copy

import pytest
import torch

from trainers.modules.dreamer import DreamerAgentConfig, DreamerModule
from worldmodels.core import flatten_start
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.actor_critic import actor_loss, critic_loss, lambda_return, trajectory_weight
from worldmodels.models.conv import to_float_image

B, T, SIDE, HORIZON = 2, 6, 16, 5
# fp32 rounding of sums over at most a few hundred terms of O(1) values.
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def make_module(kind: str) -> DreamerModule:
    torch.manual_seed(0)
    spec = ActionSpec("discrete", 3) if kind == "discrete" else ActionSpec("continuous", 2, (-1.0, -1.0), (1.0, 1.0))
    config = DreamerAgentConfig(deter=16, hidden=16, stoch=4, classes=4, depth=4, stages=2, layers=2, horizon=HORIZON)
    module = DreamerModule(obs_shape=(SIDE, SIDE, 3), action_spec=spec, config=config)
    # Non-zero critic and reward outputs (they start at zero), so returns and advantages are not trivial.
    torch.nn.init.normal_(module.critic.mlp.out.weight, std=0.3)
    torch.nn.init.normal_(module.world_model.reward.mlp.out.weight, std=0.3)
    return module


def make_batch(action_dim: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    terminated = torch.zeros(B, T, dtype=torch.bool)
    terminated[1, 3] = True
    return {"obs": torch.randint(0, 256, (B, T, SIDE, SIDE, 3), generator=generator, dtype=torch.uint8),
            "action": torch.rand(B, T, action_dim, generator=generator),
            "reward": torch.randn(B, T, generator=generator), "terminated": terminated,
            "truncated": torch.zeros(B, T, dtype=torch.bool), "is_first": is_first}


def plain_actor_critic_losses(module: DreamerModule, post, terminated) -> dict[str, torch.Tensor]:
    """The update before the speed work: imagine with the plain head, then run actor and slow critic again."""
    cfg = module.config
    start = flatten_start(post)
    start["action"] = start["deter"].new_zeros(start["deter"].shape[0], module.action_spec.dim)
    with torch.no_grad():
        traj = module.world_model.imagine(start, module.actor_head(), cfg.horizon)
        traj.states  # noqa: B018 -- the old rollout stacked every state
    feat = traj.feature
    critic_logits = module.critic(feat)
    with torch.no_grad():
        start_cont = 1.0 - terminated.reshape(-1, 1).float()
        value = module.critic.mean(critic_logits.detach())
        slow_value = module.slow_critic.mean(module.slow_critic(feat))
        returns = lambda_return(traj.reward, traj.cont, value, gamma=cfg.gamma, lam=cfg.lam)
        weight = trajectory_weight(torch.cat([start_cont, traj.cont], 1), gamma=cfg.gamma)[:, :-1]
        module.return_norm.update(returns)
        scale = module.return_norm.scale()
    parts = actor_loss(module.actor(feat[:, :-1].detach()), traj.action, returns, value[:, :-1], weight, scale)
    parts.update(critic_loss(module.critic, critic_logits[:, :-1], returns, slow_value[:, :-1], weight))
    return parts


def losses_and_grads(module: DreamerModule, batch, losses) -> tuple[dict, dict]:
    torch.manual_seed(2)  # the same posterior and imagination samples on both paths
    _, post, _ = module.world_model.loss(batch)
    parts = losses(module, post, batch["terminated"])
    grads = {}
    for owner, keys in ((module.actor, ("policy", "entropy")), (module.critic, ("value", "value_slow"))):
        total = sum(parts[k] for k in keys)
        grads.update({name: g for name, g in zip([n for n, _ in owner.named_parameters()],
                                                 torch.autograd.grad(total, list(owner.parameters())))})
    return {k: v.detach() for k, v in parts.items()}, grads


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_actor_critic_losses_and_grads_match_the_plain_path(kind):
    module = make_module(kind)
    batch = make_batch(module.action_spec.dim)
    reference = copy.deepcopy(module)  # own return normaliser: update() changes its state
    parts, grads = losses_and_grads(module, batch, lambda m, p, t: m.actor_critic_losses(p, t)[0])
    want_parts, want_grads = losses_and_grads(reference, batch, plain_actor_critic_losses)
    assert set(parts) == set(want_parts) == {"policy", "entropy", "value", "value_slow"}
    for key in parts:
        torch.testing.assert_close(parts[key], want_parts[key], **TOLERANCE, msg=f"loss part {key}")
    assert set(grads) == set(want_grads)
    for name in grads:
        assert grads[name].abs().sum() > 0 or want_grads[name].abs().sum() == 0, name
        torch.testing.assert_close(grads[name], want_grads[name], **TOLERANCE, msg=f"gradient of {name}")


def test_world_model_loss_and_grads_match_the_unfused_conv_stacks(monkeypatch):
    """Fused in-place LayerNorm + SiLU and the in-place image scaling: the same Eq. 5 parts and gradients."""
    module = make_module("discrete")
    batch = make_batch(3)

    def run():
        torch.manual_seed(3)
        module.zero_grad()
        parts, _, _ = module.world_model.loss(batch)
        sum(parts.values()).backward()
        return ({k: v.detach() for k, v in parts.items()},
                {n: p.grad.clone() for n, p in module.world_model.named_parameters() if p.grad is not None})

    parts, grads = run()
    # The plain formulation: unfused LayerNorm then SiLU (the path autocast takes), out-of-place scaling.
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda *args: True)
    monkeypatch.setattr("worldmodels.models.world_model.to_float_image",
                        lambda obs: (obs.float() / 255.0 - 0.5).permute(*range(obs.dim() - 3), -1, -3, -2))
    want_parts, want_grads = run()
    for key in parts:
        torch.testing.assert_close(parts[key], want_parts[key], **TOLERANCE, msg=f"loss part {key}")
    assert set(grads) == set(want_grads)
    for name in grads:
        torch.testing.assert_close(grads[name], want_grads[name], **TOLERANCE, msg=f"gradient of {name}")


def test_to_float_image_leaves_its_input_alone():
    frames = torch.randint(0, 256, (2, 4, 4, 3), dtype=torch.uint8)
    as_float = frames.float()
    images = to_float_image(as_float)
    torch.testing.assert_close(images, (frames.float() / 255.0 - 0.5).permute(0, 3, 1, 2), rtol=0, atol=0)
    assert torch.equal(as_float, frames.float()), "to_float_image scaled a float input in place"
