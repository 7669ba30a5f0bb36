"""The decision-fidelity policy set: seven named policies per family, the same for the same seed, refused in one
line for a model it cannot be built for."""

from __future__ import annotations

import pytest
import torch

from model_fixtures import tiny_dreamer, tiny_worldmodels

import trainers.runs.fidelity_checkpoints as fidelity_checkpoints
from trainers.runs.fidelity_checkpoints import policy_set
from worldmodels.envs import make_vector
from worldmodels.envs.toy import register_toy_envs
from worldmodels.registry import Pretrained, load


@pytest.fixture(autouse=True)
def small_set(monkeypatch):
    """Seconds, not minutes: two CMA-ES generations, a few actor updates on a little random play."""
    register_toy_envs()
    monkeypatch.setattr(fidelity_checkpoints, "CMAES_GENERATIONS", (1, 2))
    monkeypatch.setattr(fidelity_checkpoints, "ACTOR_UPDATES", (1, 3))
    monkeypatch.setattr(fidelity_checkpoints, "ACTOR_START_ENVS", 2)
    monkeypatch.setattr(fidelity_checkpoints, "ACTOR_START_ROWS", 12)
    monkeypatch.setattr(fidelity_checkpoints, "ACTOR_BATCH", 8)


def make_env(num_envs: int):
    return make_vector("worldmodels/Catch-v0", num_envs, image_size=16, seed=0)


def weights(policy) -> list[torch.Tensor]:
    """What a policy acts with: C's parameters, or the actor's weights (the random and epsilon ones: nothing)."""
    head = getattr(policy, "head", None)
    if head is None:
        return []
    if hasattr(head, "params"):
        return [head.params.clone()]
    return [p.detach().clone() for p in head.actor.parameters()]


@pytest.mark.parametrize("family", ["worldmodels", "dreamer"])
def test_seven_policies_the_same_for_the_same_seed(tmp_path, family):
    (tiny_worldmodels if family == "worldmodels" else tiny_dreamer)(tmp_path / "model")
    model = load(tmp_path / "model")
    policies, how = policy_set(model, make_env, seed=5, horizon=12)
    middle = ["cmaes-1gen", "cmaes-2gen"] if family == "worldmodels" else ["actor-1upd", "actor-3upd"]
    assert list(policies) == ["random", "trained", *middle, "noise-0.3", "noise-1", "epsilon-0.3"]
    assert set(how) == set(policies)
    again, _ = policy_set(model, make_env, seed=5, horizon=12)
    for name in policies:
        assert all(torch.equal(a, b) for a, b in zip(weights(policies[name]), weights(again[name]), strict=True)), name
    trained = weights(policies["trained"])
    for name in [*middle, "noise-0.3", "noise-1"]:  # each differs from the shipped policy
        assert not all(torch.equal(a, b) for a, b in zip(weights(policies[name]), trained, strict=True)), name
    assert all(p.world_model is model.world_model for n, p in policies.items() if hasattr(p, "world_model"))


def test_a_model_without_a_policy_or_of_another_family_is_one_line(tmp_path):
    tiny_worldmodels(tmp_path / "vm", controller=False)
    with pytest.raises(ValueError, match="holds no trained policy"):
        policy_set(load(tmp_path / "vm"), make_env, seed=0, horizon=5)
    model = load(tmp_path / "vm")
    pets = Pretrained(family="pets", world_model=model.world_model, components={}, action_spec=model.action_spec,
                      obs_shape=(4,), env_id="CartPole-v1", env_options={})
    with pytest.raises(ValueError, match="World Models and Dreamer models; this is a 'pets' model"):
        policy_set(pets, make_env, seed=0, horizon=5)
