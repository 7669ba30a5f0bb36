"""PETS: the batched probabilistic ensemble, its loss contract, and the world model's three propagations."""

from __future__ import annotations

import pytest
import torch

from trainers.runs.pets import EnsembleTrainer
from worldmodels.core import WorldModel
from worldmodels.envs.spaces import ActionSpec
from worldmodels.kpis import open_loop_errors
from worldmodels.models.conv import to_float_image
from worldmodels.models.vae import ConvVAE
from worldmodels.pets import PROPAGATIONS, EnsembleLinear, PETSWorldModel, ProbabilisticEnsemble, bootstrap_indices
from worldmodels.pets.family import load_whole, save_whole
from worldmodels.pets.tasks import alive_reward, cartpole_terminated
from worldmodels.planning.cem import CEM
from worldmodels.policies import PlannerPolicy

SPEC = ActionSpec("continuous", 2, (-1.0, -1.0), (1.0, 1.0))
D, A = 3, 2


def ensemble(out_dim: int = D, **kwargs) -> ProbabilisticEnsemble:
    torch.manual_seed(0)
    return ProbabilisticEnsemble(D + A, out_dim, **{"ensemble_size": 4, "hidden": 16, "layers": 3, **kwargs})


def world_model(propagation: str = "tsinf", **kwargs) -> PETSWorldModel:
    model = PETSWorldModel(ensemble(), SPEC, propagation=propagation, reward_fn=lambda o, a, n: -(n ** 2).sum(-1),
                           **kwargs)
    model.generator = torch.Generator().manual_seed(0)
    return model


def start_state(model: PETSWorldModel, rows: int) -> dict:
    obs = torch.randn(1, 1, D, generator=torch.Generator().manual_seed(1)).expand(rows, 1, D)
    return model.observe(obs, None, torch.ones(rows, 1, dtype=torch.bool))[1]


# ---------------------------------------------------------------------------- ensemble


def test_ensemble_linear_runs_every_member_in_one_einsum():
    layer = EnsembleLinear(5, 7, 3)
    x = torch.randn(5, 11, 7)
    out = layer(x)
    assert out.shape == (5, 11, 3)
    # Member e is its own linear map: row-for-row the same as x[e] @ W[e] + b[e].
    torch.testing.assert_close(out[2], x[2] @ layer.weight[2] + layer.bias[2])
    assert layer(x[:2], torch.tensor([4, 1])).shape == (2, 11, 3)


def test_forward_shapes_from_shared_and_per_member_inputs():
    net = ensemble()
    mean, logvar = net(torch.randn(6, D + A))  # one batch fed to all E members
    assert mean.shape == logvar.shape == (4, 6, D)
    mean, std = net.predict(torch.randn(4, 6, D + A))
    assert mean.shape == std.shape == (4, 6, D) and (std > 0).all()
    assert net(torch.randn(6, D + A), torch.tensor([0, 3]))[0].shape == (2, 6, D)


def test_loss_contract_finite_zero_weight_and_finite_grads():
    net = ensemble()
    x, y = torch.randn(4, 8, D + A), torch.randn(4, 8, D)
    parts = net.loss(x, y)
    assert set(parts) == {"nll", "logvar_bound"} and all(v.dim() == 0 and torch.isfinite(v) for v in parts.values())
    assert net.loss(x, y, weight=torch.zeros(4, 8))["nll"] == 0  # zero weight: no sample counts
    (parts["nll"] + 0.01 * parts["logvar_bound"]).backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)  # every layer and both bounds learn


def test_logvar_stays_between_the_learned_bounds():
    net = ensemble()
    with torch.no_grad():
        net.head.bias[..., D:] = 1e4  # raw logvar far above max_logvar
        _, high = net(torch.randn(5, D + A))
        net.head.bias[..., D:] = -1e4  # and far below min_logvar
        _, low = net(torch.randn(5, D + A))
    # The bounds are soft: the outer softplus lifts the top by log(1 + exp(-(max - min))) = 2.8e-5 at init.
    assert (high <= net.max_logvar + 1e-4).all() and (low >= net.min_logvar).all()
    assert (high > net.max_logvar - 1e-3).all() and (low < net.min_logvar + 1e-3).all()  # soft, but it saturates


def test_bootstrap_indices_differ_per_member():
    index = bootstrap_indices(100, 5, generator=torch.Generator().manual_seed(0))
    assert index.shape == (5, 100) and index.min() >= 0 and index.max() < 100
    assert all(not torch.equal(index[0], index[e]) for e in range(1, 5))
    # With replacement: a bootstrap of 100 leaves about 1/e of the samples out (far more than zero).
    assert all(len(set(row.tolist())) < 90 for row in index)


def test_elites_are_the_lowest_validation_mse():
    net = ensemble(elites=2)
    assert net.set_elites(torch.tensor([0.5, 0.1, 0.9, 0.2])).tolist() == [1, 3]
    assert net.planning_members().tolist() == [1, 3]
    assert ensemble().planning_members() is None  # all members are elites: no indexing


def test_normalizer_and_mse():
    net = ensemble()
    inputs, targets = torch.randn(50, D + A) * 10 + 3, torch.randn(50, D) * 0.01
    targets[:, 0] = 2.0  # a constant target column must not divide by zero
    net.set_normalizer(inputs, targets)
    assert net.target_std[0] == 1 and torch.isfinite(net.mse(inputs, targets)).all()
    assert net.mse(inputs, targets).shape == (4,)


@pytest.mark.parametrize("kwargs, words", [
    (dict(in_dim=0, out_dim=3), "in_dim must be an int >= 1"),
    (dict(in_dim=5, out_dim=3, ensemble_size=2, elites=3), "elites must be in [1, ensemble_size=2]"),
])
def test_ensemble_bad_sizes_are_one_line_errors(kwargs, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[")):
        ProbabilisticEnsemble(**kwargs)


def test_ensemble_bad_shapes_are_one_line_errors():
    net = ensemble()
    with pytest.raises(ValueError, match=r"want \(B, 5\) or \(4, B, 5\)"):
        net(torch.randn(3, 6))
    with pytest.raises(ValueError, match="ensemble loss: inputs"):
        net.loss(torch.randn(4, 8, D + A), torch.randn(4, 8, D + 1))
    with pytest.raises(ValueError, match=r"set_elites: validation_mse \(3,\)"):
        net.set_elites(torch.zeros(3))


# ---------------------------------------------------------------------------- world model


def test_is_a_world_model_with_vector_obs():
    model = world_model()
    assert isinstance(model, WorldModel)
    assert model.obs_shape == (D,) and model.feature_dim == D


@pytest.mark.parametrize("propagation", PROPAGATIONS)
def test_propagation_shapes(propagation):
    model = world_model(propagation)
    start = start_state(model, 8)
    trajectory = model.imagine(start, torch.rand(8, 5, A) * 2 - 1, 5)
    assert trajectory.reward.shape == trajectory.cont.shape == (8, 5)
    assert trajectory.states["obs"].shape == (8, 6, D) and trajectory.feature.shape == (8, 6, D)
    assert trajectory.states["member"].shape == (8, 6) and trajectory.states["disagreement"].shape == (8, 6)
    lean = model.imagine(start, torch.zeros(8, 5, A), 5, keep_states=False)  # what the planners call
    assert lean.states is None and lean.reward.shape == (8, 5)


def test_tsinf_keeps_each_particle_on_one_member_ts1_resamples_every_step():
    rows = 40  # 10 particles per member for the 4 members
    fixed = world_model("tsinf").imagine(start_state(world_model(), rows), torch.zeros(rows, 6, A), 6)
    member = fixed.states["member"]  # (B, H+1)
    assert (member == member[:, :1]).all()  # Chua et al. 2018 Sec. 5: TS-inf never changes the bootstrap
    assert torch.bincount(member[:, 0], minlength=4).tolist() == [10] * 4  # particles spread evenly
    moving = world_model("ts1").imagine(start_state(world_model(), rows), torch.zeros(rows, 6, A), 6)
    changes = (moving.states["member"][:, 1:] != moving.states["member"][:, :-1]).float().mean()
    assert changes > 0.5  # TS1 redraws each step: a row keeps its member only ~1/4 of the time


def test_expectation_has_zero_disagreement_across_particles_sampling_does_not():
    actions = (torch.rand(1, 6, A, generator=torch.Generator().manual_seed(2)) * 2 - 1).expand(10, 6, A)
    for propagation, same in (("expectation", True), ("tsinf", False), ("ts1", False)):
        model = world_model(propagation)
        trajectory = model.imagine(start_state(model, 10), actions, 6)  # 10 particles, same start and actions
        spread = trajectory.states["obs"].std(0).max()
        assert (spread == 0) if same else (spread > 1e-3), (propagation, spread)


def test_disagreement_kpi_is_the_spread_of_member_means():
    model = world_model("expectation")
    start, actions = start_state(model, 3), torch.rand(3, 4, A)
    assert model.disagreement(start, actions).shape == (3, 4) and (model.disagreement(start, actions) > 0).all()
    with torch.no_grad():  # identical members agree: zero disagreement
        for layer in [*model.ensemble.layers, model.ensemble.head]:
            layer.weight[:] = layer.weight[:1]
            layer.bias[:] = layer.bias[:1]
    assert model.disagreement(start, actions).abs().max() < 1e-6


def test_termination_is_absorbing():
    spec = ActionSpec("continuous", 1, (-1.0,), (1.0,))
    net = ProbabilisticEnsemble(5, 4, ensemble_size=2, hidden=8, layers=2)
    with torch.no_grad():
        net.target_mean.copy_(torch.tensor([0.0, 0.0, 0.05, 0.0]))  # theta grows 0.05 rad per step
        net.target_std.fill_(1e-6)  # (almost) deterministic
    model = PETSWorldModel(net, spec, propagation="tsinf", reward_fn=alive_reward, termination_fn=cartpole_terminated)
    start = model.observe(torch.zeros(2, 1, 4), None, torch.ones(2, 1, dtype=torch.bool))[1]
    trajectory = model.imagine(start, torch.zeros(2, 8, 1), 8)
    # 12 deg = 0.209 rad: theta passes it on the 5th step (0.25), which is terminal and still earns its reward.
    assert trajectory.cont[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert trajectory.reward[0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    frozen = trajectory.states["obs"][0, 5:]
    assert torch.equal(frozen, frozen[:1].expand_as(frozen))  # a terminated particle stops moving


def test_learned_reward_head_and_observed_rewards():
    net = ensemble(out_dim=D + 1)  # delta obs + reward
    model = PETSWorldModel(net, SPEC)
    assert model.learned_reward
    with torch.no_grad():
        net.target_mean[D] = 3.0
        net.target_std[D] = 1e-6  # the reward column predicts ~3 everywhere
    obs = torch.randn(2, 4, D)
    states, last = model.observe(obs, torch.zeros(2, 4, A), torch.zeros(2, 4, dtype=torch.bool))
    assert states["reward"][:, 0].tolist() == [0, 0]  # the first state of a chunk without a carry: no arrival reward
    torch.testing.assert_close(states["reward"][:, 1:], torch.full((2, 3), 3.0), atol=1e-3, rtol=0)
    trajectory = model.imagine(last, torch.zeros(2, 3, A), 3)
    torch.testing.assert_close(trajectory.reward, torch.full((2, 3), 3.0), atol=1e-3, rtol=0)
    inputs, targets = model.transitions(obs[0], torch.zeros(4, A), obs[1], torch.ones(4))
    assert inputs.shape == (4, D + A) and targets.shape == (4, D + 1) and (targets[:, D] == 1).all()


def test_plans_with_the_shared_cem_planner():
    model = world_model()
    policy = PlannerPolicy(model, CEM(SPEC, horizon=4, candidates=16, iterations=2, particles=3, elites=4))
    obs = torch.randn(5, D)
    action, state = policy.act(obs, torch.ones(5, dtype=torch.bool), None)
    action, state = policy.act(obs, torch.zeros(5, dtype=torch.bool), state)  # the warm-started second plan
    assert action.shape == (5, A) and action.abs().max() <= 1


def test_runs_over_a_pixel_models_latents():
    torch.manual_seed(0)
    vae = ConvVAE(image_size=16, z_dim=4, depth=4, stages=2).eval()
    encoder = lambda frames: vae.encode(to_float_image(frames))[0].detach()  # noqa: E731 - the VAE mean
    spec = ActionSpec("continuous", 1, (-1.0,), (1.0,))
    model = PETSWorldModel(ProbabilisticEnsemble(4 + 1, 4 + 1, ensemble_size=3, hidden=16, layers=2), spec,
                           encoder=encoder, obs_shape=(16, 16, 3))
    frames = torch.randint(0, 256, (2, 5, 16, 16, 3), dtype=torch.uint8)
    states, last = model.observe(frames, torch.zeros(2, 5, 1), torch.zeros(2, 5, dtype=torch.bool))
    assert states["obs"].shape == (2, 5, 4) and model.obs_shape == (16, 16, 3) and model.feature_dim == 4
    assert model.imagine(last, torch.zeros(2, 3, 1), 3).states["obs"].shape == (2, 4, 4)
    # The ensemble learns the latent dynamics: a frame that moves one column per step (action-dependent speed).
    g = torch.Generator().manual_seed(0)
    actions = torch.rand(64, 1, generator=g) * 2 - 1
    columns = torch.randint(0, 12, (64,), generator=g)
    frame = lambda col: torch.stack([torch.zeros(16, 16, 3, dtype=torch.uint8).index_fill_(1, c.view(1), 255)  # noqa: E731
                                     for c in col])
    data = {"obs": frame(columns), "action": actions, "next_obs": frame(columns + 1 + (actions[:, 0] > 0).long()),
            "reward": actions[:, 0]}
    trainer = EnsembleTrainer(model, lr=3e-3, weight_decay=0.0, batch_size=16, epochs=1, holdout=0.0, seed=0)
    first = torch.tensor(trainer.fit(data)["val_mse"]).mean()
    for _ in range(30):
        last_fit = trainer.fit(data)
    # Normalised units: an untrained mean scores ~1 (the target variance); fitting halves it at least.
    assert torch.tensor(last_fit["val_mse"]).mean() < 0.5 * first


def test_checkpoint_round_trip(tmp_path):
    model = world_model()
    save_whole(tmp_path / "model", model, env_id="worldmodels/ContinuousCartPole-v0", known_task=False)
    with pytest.raises(ValueError, match="needs a reward_fn"):  # saved without a known task and no reward column
        load_whole(tmp_path / "model")
    learned = PETSWorldModel(ensemble(out_dim=D + 1), SPEC)
    save_whole(tmp_path / "learned", learned, env_id="Any-v0", known_task=False)
    loaded = load_whole(tmp_path / "learned")
    x = torch.randn(3, D + A)
    torch.testing.assert_close(loaded.ensemble.predict(x)[0], learned.ensemble.predict(x)[0])


@pytest.mark.parametrize("kwargs, words", [
    (dict(propagation="ts2"), "unknown propagation 'ts2'; choose one of"),
    (dict(encoder=lambda x: x), "an encoder needs obs_shape"),
])
def test_world_model_bad_arguments_are_one_line_errors(kwargs, words):
    with pytest.raises(ValueError, match=words):
        world_model(**kwargs)


def test_world_model_bad_input_is_a_one_line_error():
    with pytest.raises(ValueError, match="needs a reward_fn or an ensemble that predicts the reward"):
        PETSWorldModel(ensemble(), SPEC)
    with pytest.raises(ValueError, match=r"want 3 \(delta obs\) or 4"):
        PETSWorldModel(ensemble(out_dim=7), SPEC)
    with pytest.raises(ValueError, match=r"do not end in obs_shape \(3,\)"):
        world_model().observe(torch.zeros(2, 1, 5), None, torch.ones(2, 1, dtype=torch.bool))


def test_open_loop_kpis_by_horizon():
    spec = ActionSpec("continuous", 1, (-1.0,), (1.0,))
    net = ProbabilisticEnsemble(4 + 1, 4, ensemble_size=2, hidden=8, layers=2)
    with torch.no_grad():
        net.target_mean.copy_(torch.tensor([0.1, 0.0, 0.0, 0.0]))  # x moves 0.1 per step, (almost) surely
        net.target_std.fill_(1e-6)
    model = PETSWorldModel(net, spec, reward_fn=alive_reward)
    obs = torch.zeros(10, 4)
    obs[:, 0] = 0.1 * torch.arange(10)
    episode = {"obs": obs.numpy(), "action": torch.zeros(10, 1).numpy()}
    kpis = open_loop_errors(model, [episode], horizon=4)
    assert len(kpis["mse"]) == len(kpis["disagreement"]) == 4
    assert max(kpis["mse"]) < 1e-8  # the model is right: no open-loop error at any horizon
    episode["obs"][:, 0] = 0.2 * torch.arange(10).numpy()  # the real cart moves twice as fast
    mse = open_loop_errors(model, [episode], horizon=4)["mse"]
    assert all(a < b for a, b in zip(mse, mse[1:]))  # open-loop error compounds with the horizon: (0.1 k)^2 / 4
    assert open_loop_errors(model, [{"obs": obs[:3].numpy(), "action": episode["action"][:3]}], 4) == {}  # too short
