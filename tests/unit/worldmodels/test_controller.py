"""C and the dream: batched population controllers, one-batch dream rollouts, done-masking, CMA-ES + resume."""

from __future__ import annotations

import numpy as np
import torch

from worldmodels.controllers.cmaes import load_state, train_cmaes
from worldmodels.controllers.linear import LinearController, MLPController
from worldmodels.envs.spaces import ActionSpec
from worldmodels.imagination.cmaes_dream import bench_dream, dream_fitness, dream_rollout
from worldmodels.models.mdnrnn import MDNRNN
from worldmodels.models.vae import ConvVAE
from worldmodels.models.vm_world_model import VMWorldModel

CAR = ActionSpec("continuous", 3, (-1.0, 0.0, 0.0), (1.0, 1.0, 1.0))
DISCRETE = ActionSpec("discrete", 3)


def test_population_matches_one_by_one():
    torch.manual_seed(0)
    for controller in (LinearController(10, CAR), MLPController(10, DISCRETE, hidden_size=8)):
        params = torch.randn(5, controller.num_params)
        features = torch.randn(5, 4, 10)  # (P, R, D)
        batched = controller(params, features)  # (P, R, A)
        assert batched.shape == (5, 4, 3)
        for p in range(5):
            assert torch.allclose(batched[p:p + 1], controller(params[p:p + 1], features[p:p + 1]), atol=1e-5)
    assert LinearController(32 + 256, CAR).num_params == 867  # the paper's CarRacing controller size


def test_action_squashing():
    torch.manual_seed(0)
    params = 10 * torch.randn(3, LinearController(6, CAR).num_params)
    actions = LinearController(6, CAR)(params, 10 * torch.randn(3, 50, 6))
    assert actions[..., 0].min() >= -1 and actions[..., 0].max() <= 1  # steering in [-1, 1]
    assert actions[..., 1:].min() >= 0 and actions[..., 1:].max() <= 1  # gas, brake in [0, 1]
    onehot = LinearController(6, DISCRETE)(params[:, :LinearController(6, DISCRETE).num_params], torch.randn(3, 50, 6))
    assert torch.equal(onehot.sum(-1), torch.ones(3, 50)) and set(onehot.unique().tolist()) == {0.0, 1.0}


def _tiny_dream(done_bias: float, reward_bias: float = 1.0) -> tuple[VMWorldModel, LinearController]:
    torch.manual_seed(0)
    mdnrnn = MDNRNN(z_dim=4, action_dim=3, hidden_size=8, num_mixtures=2).eval()
    with torch.no_grad():
        mdnrnn.head.weight[-2:].zero_()
        mdnrnn.head.bias[-2] = reward_bias  # reward head: exactly reward_bias every step
        mdnrnn.head.bias[-1] = done_bias  # done logit
    controller = LinearController(4 + 8, DISCRETE)
    vae = ConvVAE(3, 16, z_dim=4, depth=4, stages=4).eval()  # the dream starts from latents: V never runs
    return VMWorldModel(vae, mdnrnn, DISCRETE), controller


def test_dream_is_one_batch_of_population_times_repeats():
    world_model, controller = _tiny_dream(done_bias=-20.0)
    batch_sizes = []
    world_model.mdnrnn.lstm.register_forward_hook(lambda module, inputs, output: batch_sizes.append(inputs[0].shape[0]))
    params = torch.randn(6, controller.num_params)  # P = 6
    out = dream_rollout(world_model, controller, params, torch.randn(3, 4), torch.zeros(3, 4), repeats=5, horizon=7)
    assert batch_sizes == [6 * 5] * 7  # one LSTM call per time step, over all P x R rows
    assert out["return"].shape == out["length"].shape == (6, 5)
    assert torch.allclose(out["return"], torch.full((6, 5), 7.0), atol=1e-5)  # never done: 7 steps x reward 1
    assert dream_fitness(world_model, controller, params, torch.randn(3, 4), torch.zeros(3, 4), repeats=5, horizon=7).shape == (6,)


def test_dream_done_masking():
    # done logit +20: every dream ends on its first step; the reward of that arriving step counts, none after.
    world_model, controller = _tiny_dream(done_bias=20.0)
    params = torch.randn(4, controller.num_params)
    out = dream_rollout(world_model, controller, params, torch.randn(3, 4), torch.zeros(3, 4), repeats=2, horizon=10)
    assert torch.equal(out["length"], torch.ones(4, 2)) and torch.allclose(out["return"], torch.ones(4, 2))
    out = dream_rollout(world_model, controller, params, torch.randn(3, 4), torch.zeros(3, 4), repeats=2, horizon=10, sample_done=True)
    assert torch.equal(out["length"], torch.ones(4, 2))


def test_cmaes_solves_quadratic_and_resumes(tmp_path):
    target = torch.linspace(-1, 1, 6)
    fitness = lambda params: -(params - target).pow(2).sum(-1)  # noqa: E731 - max 0 at target
    first = train_cmaes(fitness, 6, generations=10, population=16, sigma0=0.5, seed=1, checkpoint_dir=tmp_path)
    assert load_state(tmp_path)["generation"] == 10
    resumed = train_cmaes(fitness, 6, generations=40, population=16, sigma0=0.5, seed=1, checkpoint_dir=tmp_path)
    assert resumed["generation"] == 40 and len(resumed["history"]) == 40
    assert resumed["best_fitness"] >= first["best_fitness"]
    # Random search at sigma 0.5 around 0 scores about -(2.8 + 6 * 0.25) = -4.3; CMA-ES must get close to 0.
    assert resumed["best_fitness"] > -0.05, resumed["best_fitness"]
    assert np.abs(resumed["mean"] - target.numpy()).max() < 0.2


def test_bench_dream_runs():
    result = bench_dream(population=4, repeats=2, steps=3, device="cpu")
    assert result["dream_steps_per_second"] > 0 and result["population"] * result["repeats"] * result["steps"] == 24


def test_an_old_state_without_fitness_resumes_twice(tmp_path):
    """A state file from before fitness was kept restarts from its mean; the NaN rows that restart leaves for the
    earlier generations must not be replayed (told to cma) on the next resume."""
    target = torch.linspace(-1, 1, 6)
    fitness = lambda params: -(params - target).pow(2).sum(-1)  # noqa: E731 - max 0 at target
    train_cmaes(fitness, 6, generations=5, population=16, sigma0=0.5, seed=1, checkpoint_dir=tmp_path)
    arrays = dict(np.load(tmp_path / "es_state.npz"))
    np.savez(tmp_path / "es_state.npz", mean=arrays["mean"], best_params=arrays["best_params"])  # the old format
    train_cmaes(fitness, 6, generations=8, population=16, sigma0=0.5, seed=1, checkpoint_dir=tmp_path)
    assert np.isnan(load_state(tmp_path)["fitness"][:5]).all()  # generations 0..4 were never replayed
    saved = load_state(tmp_path)["mean"]
    again = train_cmaes(fitness, 6, generations=8, population=16, sigma0=0.5, seed=1, checkpoint_dir=tmp_path)
    # Restarted from the saved mean, not rebuilt by telling cma NaN for generations 0..4 (a different search state).
    assert np.array_equal(again["mean"], saved)
