"""The one latent loop (worldmodels.core.rollout) for both families, its time alignment, the CMA-ES dream's
end on predicted death, and the dream temperature."""

from __future__ import annotations

import math

import pytest
import torch

from worldmodels import dreams
from worldmodels.controllers.linear import LinearController
from worldmodels.core import WorldModel, index_state
from worldmodels.envs.spaces import ActionSpec
from worldmodels.imagination.cmaes_dream import dream_rollout
from worldmodels.models.actor_critic import Actor
from worldmodels.models.mdnrnn import MDNRNN, mdn_sample
from worldmodels.models.vae import ConvVAE
from worldmodels.models.vm_world_model import VMWorldModel
from worldmodels.models.world_model import DreamerWorldModel
from worldmodels.policies import ActorHead, ControllerHead, RandomPolicy
from batches import random_chunk

S, A, B, T, H = 16, 3, 2, 5, 4
SPEC = ActionSpec("discrete", A)


def dreamer() -> DreamerWorldModel:
    torch.manual_seed(0)
    return DreamerWorldModel(obs_shape=(S, S, 3), action_spec=SPEC, deter=16, hidden=16, stoch=4, classes=4, depth=4,
                             stages=2, layers=1, num_bins=15).eval()


def vm(mdnrnn: MDNRNN | None = None) -> VMWorldModel:
    torch.manual_seed(0)
    return VMWorldModel(ConvVAE(3, S, z_dim=4, depth=4, stages=4), mdnrnn or MDNRNN(4, A, 8, 2), SPEC).eval()


def chunk() -> dict[str, torch.Tensor]:
    return random_chunk(B, T, S, A)


def head_for(world_model: WorldModel):
    if isinstance(world_model, DreamerWorldModel):
        return ActorHead(Actor(world_model.feature_dim, A, discrete=True, hidden=8, layers=1), SPEC)
    controller = LinearController(world_model.feature_dim, SPEC)
    return ControllerHead(controller, torch.randn(1, controller.num_params))


@pytest.mark.parametrize("make", [dreamer, vm], ids=["dreamer", "vm"])
@pytest.mark.parametrize("how", ["latent_policy", "random_policy", "actions"])
def test_observe_imagine_decode_through_the_protocol(make, how):
    world_model = make()
    assert isinstance(world_model, WorldModel)
    b = chunk()
    with torch.no_grad():
        states, last = world_model.observe(b["obs"], b["action"], b["is_first"])
        assert world_model.feature(states).shape == (B, T, world_model.feature_dim)
        policy = {"latent_policy": head_for(world_model), "random_policy": RandomPolicy(SPEC, seed=0),
                  "actions": b["action"][:, :H]}[how]
        traj = world_model.imagine(last, policy, H)
        frames = world_model.decode(traj.states)
    assert traj.feature.shape == (B, H + 1, world_model.feature_dim) and traj.horizon == H
    assert traj.action.shape == (B, H, A) and traj.reward.shape == traj.cont.shape == (B, H)
    assert ((traj.cont >= 0) & (traj.cont <= 1)).all()
    assert frames.shape == (B, H + 1, S, S, 3) and frames.dtype == torch.uint8
    if how == "actions":
        torch.testing.assert_close(traj.action, b["action"][:, :H])
    else:  # a policy's actions are one-hot in the discrete space
        assert torch.equal(traj.action.sum(-1), torch.ones(B, H))
    # keep_states=False keeps only what a long dream needs.
    with torch.no_grad():
        lean = world_model.imagine(last, policy, H, keep_states=False)
    assert lean.states is None and lean.feature is None and lean.reward.shape == (B, H)


def test_rssm_imagine_with_actions_equals_a_manual_prior_rollout():
    """imagine(s_0, a, H): a_k is read at s_k, gives s_{k+1}; r_{k+1}, c_{k+1} are the heads AT s_{k+1}."""
    world_model = dreamer()
    b = chunk()
    with torch.no_grad():
        _, last = world_model.observe(b["obs"], b["action"], b["is_first"])
        actions = torch.nn.functional.one_hot(torch.randint(0, A, (B, H)), A).float()
        torch.manual_seed(5)
        traj = world_model.imagine(last, actions, H)
        torch.manual_seed(5)  # the prior samples its stochastic state: same draws in the same order
        rssm, state = world_model.rssm, {k: v for k, v in last.items() if k != "action"}
        for k in range(H):
            state = rssm.img_step(state, actions[:, k])
            imagined = index_state(traj.states, (slice(None), k + 1))
            torch.testing.assert_close(imagined["deter"], state["deter"])
            torch.testing.assert_close(imagined["stoch"], state["stoch"])
            feat = rssm.feature(state)
            torch.testing.assert_close(traj.reward[:, k], world_model.reward.mean(world_model.reward(feat)))
            torch.testing.assert_close(traj.cont[:, k], world_model.cont.prob(world_model.cont(feat)))
        torch.testing.assert_close(traj.states["deter"][:, 0], last["deter"])  # s_0 is the start itself


class DiesAtStep(VMWorldModel):
    """M whose done head is forced: alive (cont 1) for ``death`` steps, then dead (cont 0); reward 1, then 100."""

    def __init__(self, death: int) -> None:
        base = vm()
        super().__init__(base.vae, base.mdnrnn, SPEC)
        self.death, self.steps = death, 0

    def _prior_step(self, state, action):
        next_state, _, _ = super()._prior_step(state, action)
        self.steps += 1
        N = action.shape[0]
        dead = self.steps >= self.death
        reward = torch.full((N,), 100.0 if self.steps > self.death else 1.0)
        return next_state, reward, torch.full((N,), 0.0 if dead else 1.0)


@pytest.mark.parametrize("sample_done", [False, True])
def test_cmaes_dream_ends_on_predicted_death(sample_done):
    """Issue 11 pitfall: after M predicts the end, the dream earns nothing (here the 100s would dominate)."""
    world_model = DiesAtStep(death=3)
    controller = LinearController(world_model.feature_dim, SPEC)
    params = torch.randn(4, controller.num_params)
    out = dream_rollout(world_model, controller, params, torch.randn(3, 4), torch.zeros(3, 4), repeats=2, horizon=10,
                        sample_done=sample_done)
    # Steps 1, 2 live, step 3 arrives at the predicted end: its reward counts, none of the 100s after it.
    assert torch.equal(out["return"], torch.full((4, 2), 3.0)) and torch.equal(out["length"], torch.full((4, 2), 3.0))


def test_cmaes_dream_is_reproducible_with_the_world_models_generator():
    world_model = vm()
    controller = LinearController(world_model.feature_dim, SPEC)
    params = torch.randn(3, controller.num_params)
    start = torch.randn(5, 4), torch.zeros(5, 4)
    results = []
    for seed in (1, 1, 2):
        world_model.generator = torch.Generator().manual_seed(seed)
        results.append(dream_rollout(world_model, controller, params, *start, repeats=2, horizon=6)["return"])
    assert torch.equal(results[0], results[1]) and not torch.equal(results[0], results[2])


def test_temperature_scales_mixture_weights_and_sigma():
    """mdn_sample: logits / tau (Ha & Schmidhuber 2018, Sec. 4.4) AND sigma * sqrt(tau)."""
    torch.manual_seed(0)
    N = 40000
    # Weights: two well-separated narrow components with logits 0 and 2; P(second) = sigmoid(2 / tau).
    logit_pi = torch.tensor([0.0, 2.0]).expand(N, 1, 2)
    mu = torch.tensor([-5.0, 5.0]).expand(N, 1, 2)
    narrow = torch.full((N, 1, 2), -5.0)
    for tau in (0.5, 1.0, 2.0):
        share = (mdn_sample(logit_pi, mu, narrow, temperature=tau) > 0).float().mean().item()
        assert abs(share - 1.0 / (1.0 + math.exp(-2.0 / tau))) < 0.01, (tau, share)
    # Sigma: one unit-variance component; the sample's spread is sqrt(tau).
    one = torch.zeros(N, 1, 1)
    for tau in (0.25, 1.0, 2.25):
        spread = mdn_sample(one, one, one, temperature=tau).std().item()
        assert abs(spread - math.sqrt(tau)) < 0.02 * math.sqrt(tau), (tau, spread)


def test_world_models_forecast_settings_are_set_for_the_call_and_restored():
    """Open loop: posterior means + temperature 0 (a deterministic forecast); the model's own settings stay."""
    world_model = vm()
    world_model.temperature, world_model.sample_latent = 1.7, True
    b = chunk()
    with torch.no_grad():
        first = dreams.open_loop(world_model, b["obs"], b["action"], b["is_first"], context=2)
        second = dreams.open_loop(world_model, b["obs"], b["action"], b["is_first"], context=2)
        dreamed = dreams.dream(world_model, None, b["obs"][:, :2], b["action"][:, :2], b["is_first"][:, :2], horizon=3)
    assert (world_model.temperature, world_model.sample_latent) == (1.7, True)
    torch.testing.assert_close(first["reward"], second["reward"], atol=1e-3, rtol=0)  # tau 0: sigma ~ 0
    assert first["frames"].shape == (B, T - 2, S, S, 3) and dreamed["frames"].shape == (B, 3, S, S, 3)
