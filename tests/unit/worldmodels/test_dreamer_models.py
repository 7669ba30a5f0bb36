"""Dreamer model contracts: distributions, RSSM shapes, time alignment, preset sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldmodels.models.distributions import OneHotCategorical, TwoHot, symexp, symlog, unimix_logits
from worldmodels.models.rssm import RSSM
from worldmodels.core import flatten_start
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.actor_critic import Actor
from worldmodels.models.world_model import DreamerWorldModel
from worldmodels.policies import ActorHead

B, T, E, A = 3, 6, 10, 4


def make_rssm() -> RSSM:
    torch.manual_seed(0)
    return RSSM(embed_dim=E, action_dim=A, deter=16, hidden=16, stoch=4, classes=5)


def test_symlog_symexp_round_trip():
    x = torch.tensor([-1e6, -300.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 20.0, 1e6])
    torch.testing.assert_close(symexp(symlog(x)), x, rtol=1e-5, atol=1e-6)
    assert symlog(torch.tensor(0.0)) == 0 and symlog(torch.tensor(np.e - 1)) == pytest.approx(1.0)


def test_twohot_round_trip_and_weights():
    twohot = TwoHot(255, -20.0, 20.0)
    y = torch.tensor([-5000.0, -3.3, -1.0, 0.0, 0.25, 1.0, 7.0, 123.4, 1e5])
    weights = twohot.encode(y)  # (9, 255)
    assert weights.shape == (9, 255)
    torch.testing.assert_close(weights.sum(-1), torch.ones(9))
    assert ((weights > 0).sum(-1) <= 2).all()
    # log of the two-hot weights as logits decodes back to the target (softmax(log w) = w).
    torch.testing.assert_close(twohot.decode(torch.log(weights + 1e-30)), y, rtol=1e-4, atol=1e-4)
    # Cross-entropy is minimised by the target's own two-hot logits.
    assert twohot.loss(torch.log(weights + 1e-30), y).mean() < twohot.loss(torch.zeros(9, 255), y).mean()


def test_unimix_straight_through_categorical():
    logits = torch.tensor([[30.0, 0.0, 0.0, 0.0]], requires_grad=True)
    dist = OneHotCategorical(unimix_logits(logits, 0.01))
    assert dist.probs.min() >= 0.01 / 4 - 1e-6  # 1% uniform mix keeps every class possible
    sample = dist.sample()
    assert sample.detach().sum() == 1 and set(sample.detach().flatten().tolist()) <= {0.0, 1.0}
    (sample * torch.arange(4.0)).sum().backward()  # straight-through: gradient reaches the logits
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_rssm_observe_and_imagine_shapes():
    rssm = make_rssm()
    embed, action = torch.randn(B, T, E), torch.randn(B, T, A)
    is_first = torch.zeros(B, T, dtype=torch.bool)
    post, prior = rssm.observe(embed, action, is_first)
    assert post["deter"].shape == (B, T, 16) and post["stoch"].shape == (B, T, 4, 5)
    assert prior["logits"].shape == (B, T, 4, 5)
    assert rssm.feature(post).shape == (B, T, rssm.feat_dim) == (B, T, 16 + 20)
    step = rssm.img_step({k: v[:, -1] for k, v in post.items()}, torch.randn(B, A))  # the prior step imagine runs
    assert step["deter"].shape == (B, 16) and step["stoch"].shape == (B, 4, 5)
    torch.manual_seed(0)
    world_model = DreamerWorldModel(obs_shape=(16, 16, 3), action_spec=ActionSpec("discrete", A), deter=16, hidden=16,
                                    stoch=4, classes=5, depth=4, stages=2, layers=1, num_bins=15)
    actor = Actor(world_model.feature_dim, A, discrete=True, hidden=8, layers=1)
    states, _ = world_model.observe(torch.randint(0, 256, (B, T, 16, 16, 3), dtype=torch.uint8), action, is_first)
    with torch.no_grad():
        traj = world_model.imagine(flatten_start(states), ActorHead(actor, world_model.action_spec), horizon=5)
    # Features of s_0 .. s_5; actions a_0 .. a_4 (a_H is never taken, so the trajectory has none).
    assert traj.feature.shape == (B * T, 6, world_model.feature_dim) and traj.action.shape == (B * T, 5, A)


def test_categorical_samples_follow_the_probabilities():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    dist = OneHotCategorical(probs.log().expand(100_000, 4))
    samples = dist.sample(torch.Generator().manual_seed(0))
    # 100k draws: the standard error of a frequency is <= 0.0016, so 0.01 is > 6 standard errors.
    torch.testing.assert_close(samples.mean(0), probs, atol=0.01, rtol=0.0)
    again = dist.sample(torch.Generator().manual_seed(0))
    assert torch.equal(samples, again)  # seeded generator -> same draws


def test_batched_observe_matches_per_step_obs_step(monkeypatch):
    """observe lifts the action/embedding halves of its Linears and the prior head out of the time loop;
    it must equal T plain obs_step calls (resets mid-chunk, a given start state and prev_action)."""
    monkeypatch.setattr(OneHotCategorical, "sample", lambda self, generator=None: self.mode())  # deterministic
    rssm = make_rssm()
    embed, action = torch.randn(B, T, E), torch.randn(B, T, A)
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[0, 2] = is_first[1, 4] = True
    start = rssm.img_step(rssm.initial(B), torch.randn(B, A))
    prev_action = torch.randn(B, A)
    post, prior = rssm.observe(embed, action, is_first, start, prev_action)
    state, posts, priors = start, [], []
    for t in range(T):
        step_action = prev_action if t == 0 else action[:, t - 1]
        state, step_prior = rssm.obs_step(state, step_action, embed[:, t], is_first[:, t])
        posts.append(state)
        priors.append(step_prior)
    for key in ("deter", "stoch", "logits"):
        torch.testing.assert_close(post[key], torch.stack([s[key] for s in posts], 1), atol=1e-5, rtol=0.0)
        torch.testing.assert_close(prior[key], torch.stack([s[key] for s in priors], 1), atol=1e-5, rtol=0.0)


def test_fused_channel_layer_norm_silu_matches_the_unfused_pair():
    """The conv stacks' fused LayerNorm + SiLU (keeps less for backward) has the same values and gradients."""
    from worldmodels.models.conv import ChannelLayerNorm, _LayerNormSiLU

    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: _LayerNormSiLU.apply(a[0].permute(0, 2, 3, 1), a[1], a[2], 1e-5),
                                    (x, weight, bias))
    norm = ChannelLayerNorm(5, silu=True)
    images = torch.randn(4, 5, 6, 6).to(memory_format=torch.channels_last).requires_grad_()
    fused = norm(images)
    unfused = torch.nn.functional.silu(norm.norm(images.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
    torch.testing.assert_close(fused, unfused)
    grads = torch.autograd.grad(fused.square().sum(), (images, norm.norm.weight, norm.norm.bias))
    expected = torch.autograd.grad(unfused.square().sum(), (images, norm.norm.weight, norm.norm.bias))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)


def test_fused_norm_silu_conv_pairs_match_the_plain_stacks(monkeypatch):
    """LayerNorm + SiLU + conv run as one function (the conv's input is recomputed in backward, not kept):
    exact gradients (gradcheck, float64) and, through whole encoder/decoder stacks, the plain path's values."""
    from worldmodels.models import conv as conv_module

    torch.manual_seed(0)
    for conv in (torch.nn.Conv2d(5, 4, 4, stride=2, padding=1, bias=False),
                 torch.nn.ConvTranspose2d(5, 3, 4, stride=2, padding=1, bias=True)):
        conv = conv.double()
        x = torch.randn(2, 5, 6, 6, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_()
        weight = torch.randn(5, dtype=torch.float64, requires_grad=True)
        bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
        conv_bias = () if conv.bias is None else (conv.bias,)

        def fused(x, weight, bias, conv_weight, *conv_bias, conv=conv):
            return conv_module._LayerNormSiLUConv.apply(x, weight, bias, 1e-5, conv_weight,
                                                        conv_bias[0] if conv_bias else None,
                                                        conv_module._conv_args(conv))
        assert torch.autograd.gradcheck(fused, (x, weight, bias, conv.weight, *conv_bias)), type(conv).__name__

    encoder = conv_module.ConvEncoder(3, 32, 8, norm="layer", act="silu")
    decoder = conv_module.ConvDecoder(encoder.out_dim, 3, 32, 8, norm="layer", act="silu")
    images = torch.randn(3, 3, 32, 32)
    params = [*encoder.parameters(), *decoder.parameters()]

    def run():
        out = decoder(encoder(images))
        return out.detach(), torch.autograd.grad(out.square().mean(), params)

    fused_calls = []
    real_apply = conv_module._LayerNormSiLUConv.apply
    monkeypatch.setattr(conv_module._LayerNormSiLUConv, "apply",
                        lambda *args: fused_calls.append(args[4].shape) or real_apply(*args))
    out, grads = run()
    # Encoder and decoder have 4 stages each: 3 LayerNorm + SiLU -> conv pairs each, all fused.
    assert len(fused_calls) == 6, fused_calls
    monkeypatch.setattr(conv_module, "run_stack", lambda net, x: net(x))  # the plain Sequential
    want_out, want_grads = run()
    torch.testing.assert_close(out, want_out)
    for got, want in zip(grads, want_grads):
        torch.testing.assert_close(got, want)


def test_action_alignment_action_t_only_affects_later_states():
    """Row t's action is taken at obs[t] and leads to obs[t+1]: it may change states t+1.., never 0..t."""
    rssm = make_rssm()
    embed, action = torch.randn(1, T, E), torch.randn(1, T, A)
    is_first = torch.zeros(1, T, dtype=torch.bool)
    changed = action.clone()
    changed[:, 2] += 5.0
    torch.manual_seed(1)
    post_a, _ = rssm.observe(embed, action, is_first)
    torch.manual_seed(1)
    post_b, _ = rssm.observe(embed, changed, is_first)
    torch.testing.assert_close(post_a["deter"][:, :3], post_b["deter"][:, :3])  # states 0, 1, 2 untouched
    assert not torch.allclose(post_a["deter"][:, 3], post_b["deter"][:, 3])  # state 3 = f(.., action[2])
    # The last row's action is not consumed inside the chunk.
    last = action.clone()
    last[:, -1] += 5.0
    torch.manual_seed(1)
    post_c, _ = rssm.observe(embed, last, is_first)
    torch.testing.assert_close(post_a["deter"], post_c["deter"])


def test_is_first_resets_state_and_prev_action():
    """The posterior at an is_first position does not depend on anything before it."""
    rssm = make_rssm()
    embed = torch.randn(2, T, E)
    embed[1, :3] = torch.randn(3, E) * 3  # different history before the reset at t = 3
    embed[1, 3:] = embed[0, 3:]
    action = torch.randn(2, T, A)
    action[1, 3:] = action[0, 3:]
    action[1, 2] = -action[0, 2] + 1.0  # the action just before the reset differs too
    is_first = torch.zeros(2, T, dtype=torch.bool)
    is_first[:, 3] = True
    post, _ = rssm.observe(embed, action, is_first)
    torch.testing.assert_close(post["deter"][0, 3], post["deter"][1, 3])
    torch.testing.assert_close(post["logits"][0, 3], post["logits"][1, 3])
    # Without the reset the histories would differ at t = 3.
    post_no_reset, _ = rssm.observe(embed, action, torch.zeros(2, T, dtype=torch.bool))
    assert not torch.allclose(post_no_reset["deter"][0, 3], post_no_reset["deter"][1, 3])


def test_online_rows_follow_store_convention(tmp_path):
    """Catch rows from the online dataset: action[t] moves the paddle between obs[t] and obs[t+1]."""
    from trainers.data.online import OnlineReplay
    from worldmodels.data.store import EpisodeStore

    replay = OnlineReplay("worldmodels/Catch-v0", None, num_envs=2, batch_size=2, seq_len=8, replay_ratio=1.0,
                          prefill=10_000, capacity=1000, seed=3, store_dir=str(tmp_path / "store"),
                          env_options={"image_size": 20})
    replay._start()
    for _ in range(40):
        replay.step()
    rows = {k: v[: replay.replay.count[0]] for k, v in replay.replay.data[0].items()}

    def paddle(frame: np.ndarray) -> int:  # 20 px / 5 columns = 4 px per column; paddle is green on the last row
        return int(np.flatnonzero(frame[-1, :, 1] > 200)[0] // 4)

    checked = 0
    for t in range(len(rows["obs"]) - 1):
        if rows["terminated"][t]:
            assert not rows["action"][t].any(), "the action stored with a terminal obs is zeros"
            assert rows["is_first"][t + 1] and rows["reward"][t + 1] == 0.0
            continue
        move = int(rows["action"][t]) - 1  # replay rows hold the executed action index (store encoding)
        assert paddle(rows["obs"][t + 1]) == int(np.clip(paddle(rows["obs"][t]) + move, 0, 4))
        checked += 1
    assert checked > 20 and rows["is_first"][0]
    assert rows["reward"][rows["terminated"]].tolist() and set(np.abs(rows["reward"][rows["terminated"]])) == {1.0}
    store = EpisodeStore.open(tmp_path / "store")
    assert len(store) == replay.episodes and store.load(0).action[-1] == 0


# DreamerV3 arXiv v1 Table B.1: S 18M, M 37M, L 77M parameters (64x64 images); allow +-10%.
# DreamerV3 parameter budgets: S ~ 12M, M ~ 25M, L ~ 50M (within 10%, our dense GRU vs their block GRU).
# S-v1 = DreamerV3 arXiv v1 "S" / sheeprl's dreamer_v3_S (dense 512): 18M within 10%; XS-v1 = arXiv v1 "XS" /
# sheeprl's dreamer_v3_XS (dense 256): 8M within 10%.
PARAM_RANGES = {"XS-v1": (7.2e6, 8.8e6), "S": (11e6, 13.5e6), "S-v1": (16.2e6, 19.8e6), "M": (22.5e6, 27.5e6), "L": (45e6, 55e6)}


@pytest.mark.parametrize("preset", ["debug", "tiny", "XS-v1", "S", "S-v1", "M", "L"])
def test_preset_param_counts(preset, capsys):
    from scripts.dreamer import CONFIG, PRESETS
    from trainers.modules.dreamer import DreamerAgentConfig, DreamerModule
    from worldmodels.config import build_config, from_dict, to_dict
    from worldmodels.envs.spaces import ActionSpec

    cfg = build_config(CONFIG, {}, presets=PRESETS, preset=preset)
    side = cfg.image_size
    with torch.device("meta"):  # count without allocating the 77M-parameter L model
        module = DreamerModule(obs_shape=(side, side, 3), action_spec=ActionSpec("discrete", 6),
                               config=from_dict(DreamerAgentConfig, to_dict(cfg)))
    count = sum(p.numel() for name, p in module.named_parameters() if not name.startswith("slow_critic"))
    with capsys.disabled():
        print(f"\n  preset {preset}: {count / 1e6:.1f}M trainable parameters (64x64 or preset image, 6 actions)")
    low, high = PARAM_RANGES.get(preset, (0, 10e6))
    assert low <= count <= high, f"{preset}: {count}"
