"""Every registered family, built at its ``debug`` preset, driven ONLY through the core protocols.

observe -> imagine (with a LatentPolicy and with an action tensor) -> decode / predict -> act in a real
env through the Driver -> save in the exchange format -> ``worldmodels.load`` -> the same outputs.
A family added to ``worldmodels.registry.FAMILIES`` without a fixture here fails ``test_every_family_has_a_fixture``.
Pixel families (World Models, Dreamer) act in the discrete LeftRight toy; PETS, a vector-observation family
without a policy head (it acts by planning), in the continuous cart-pole through its own ``Family.make_env``, and
so do TD-MPC, a value-equivalent family without a decoder (``decodes = False``) that acts by MPPI, and MBPO (SAC's
actor on the PETS ensemble's feature, the observation).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import worldmodels
from trainers.runs.dreamer import PRESETS as DREAMER_PRESETS
from trainers.runs.worldmodels_config import PRESETS as WM_PRESETS
from worldmodels.core import LatentPolicy, Policy, Trajectory, WorldModel
from worldmodels.driver import Driver
from worldmodels.envs import make_vector
from worldmodels.envs.spaces import ActionSpec
from worldmodels.envs.cartpole_continuous import CONTINUOUS_CARTPOLE_ID
from worldmodels.families import dreamer, vm
from worldmodels.mbpo import family as mbpo
from worldmodels.mbpo.sac import SAC
from worldmodels.pets import family as pets
from worldmodels.pets.envs import make_state_env
from worldmodels.tdmpc import family as tdmpc
from worldmodels.policies import RandomPolicy
from worldmodels.registry import FAMILIES

ENV = "worldmodels/LeftRight-v0"
ENVS = {vm.WORLDMODELS: ENV, dreamer.DREAMER: ENV, pets.PETS: CONTINUOUS_CARTPOLE_ID, tdmpc.TDMPC: CONTINUOUS_CARTPOLE_ID,
        mbpo.MBPO: CONTINUOUS_CARTPOLE_ID}
B, T, H = 2, 6, 4


def _spec(env_id: str = ENV) -> ActionSpec:
    env = make_vector(env_id, 1, image_size=16) if env_id == ENV else make_state_env(env_id, 1)
    spec = ActionSpec.from_space(env.single_action_space)
    env.close()
    return spec


def _random_actions(spec: ActionSpec, *shape: int) -> torch.Tensor:
    """Model-encoded actions ``(*shape, A)``: one-hot classes, or uniform inside the Box."""
    if spec.discrete:
        return spec.to_model(torch.randint(spec.dim, shape))
    low, high = torch.tensor(spec.low), torch.tensor(spec.high)
    return low + (high - low) * torch.rand(*shape, spec.dim)


def _worldmodels(tmp: Path, spec: ActionSpec) -> Path:
    p = WM_PRESETS["debug"]
    size = 16
    config = {"action_spec": spec.to_dict(), "sizes": {
        "vae": {"in_channels": 3, "image_size": size, "z_dim": p["z_dim"], "depth": p["vae_depth"], "stages": 2},
        "mdnrnn": {"z_dim": p["z_dim"], "hidden_size": p["hidden_size"], "num_mixtures": p["num_mixtures"]},
        "controller": {"kind": "linear", "input_dim": p["z_dim"] + p["hidden_size"], "hidden_size": 32}}}
    components = vm.build(config)
    components["controller"].params.normal_(0.0, 0.5)  # a controller that is not all zeros
    return vm.save_whole(tmp / "worldmodels", components, env_id=ENV, action_spec=spec)


def _dreamer(tmp: Path, spec: ActionSpec) -> Path:
    p = DREAMER_PRESETS["debug"]
    agent = {k: p[k] for k in dreamer.SIZE_KEYS if k in p}
    agent.setdefault("num_bins", 255)
    config = {"obs_shape": [p["image_size"], p["image_size"], 3], "action_spec": spec.to_dict(), "config": agent}
    components = dreamer.build(config)
    return dreamer.save_whole(tmp / "dreamer", components, agent_config=agent, env_id=ENV)


def _pets(tmp: Path, spec: ActionSpec) -> Path:
    config = {"obs_shape": [4], "sizes": {"in_dim": 4 + spec.dim, "out_dim": 4, "ensemble_size": 3, "hidden": 8,
                                          "layers": 2, "elites": 2}}
    world_model = pets.world_model(pets.build(config), {"action_spec": spec.to_dict(), "env_id": ENVS[pets.PETS],
                                                        "known_task": True})
    planner = {"horizon": 3, "candidates": 8, "iterations": 1, "particles": 2, "elites": 2, "seed": 0}
    return pets.save_whole(tmp / "pets", world_model, env_id=ENVS[pets.PETS], known_task=True, planner=planner)


def _tdmpc(tmp: Path, spec: ActionSpec) -> Path:
    config = {"obs_shape": [4], "action_spec": spec.to_dict(),
              "sizes": {"latent_dim": 16, "hidden": 16, "layers": 2, "depth": 8, "simnorm_group": 8, "num_q": 2,
                        "num_bins": 11}}
    planner = {"acting": "mppi", "horizon": 3, "candidates": 8, "iterations": 1, "prior_candidates": 2,
               "temperature": 0.1, "noise_std": 0.3, "seed": 0}
    return tdmpc.save_whole(tmp / "tdmpc", tdmpc.build(config)["model"], env_id=ENVS[tdmpc.TDMPC],
                            env_options={"obs": "vector"}, planner=planner)


def _mbpo(tmp: Path, spec: ActionSpec) -> Path:
    config = {"obs_shape": [4], "sizes": {"in_dim": 4 + spec.dim, "out_dim": 4, "ensemble_size": 3, "hidden": 8,
                                          "layers": 2, "elites": 2}}
    world_model = pets.world_model(pets.build(config), {"action_spec": spec.to_dict(), "env_id": ENVS[mbpo.MBPO],
                                                        "known_task": True, "propagation": "ts1"})
    return mbpo.save_whole(tmp / "mbpo", world_model, SAC(4, spec, hidden=8), env_id=ENVS[mbpo.MBPO], known_task=True)


FIXTURES = {vm.WORLDMODELS: _worldmodels, dreamer.DREAMER: _dreamer, pets.PETS: _pets, tdmpc.TDMPC: _tdmpc,
            mbpo.MBPO: _mbpo}


def test_every_family_has_a_fixture():
    assert set(FIXTURES) == set(FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_through_the_protocols(family, tmp_path):
    torch.manual_seed(0)
    spec = _spec(ENVS[family])
    model = worldmodels.load(FIXTURES[family](tmp_path, spec))
    wm = model.world_model
    assert isinstance(wm, WorldModel) and model.family == family
    side = wm.obs_shape[0]
    pixels = len(wm.obs_shape) == 3
    obs = torch.randint(0, 256, (B, T, side, side, 3), dtype=torch.uint8) if pixels else torch.randn(B, T, side)
    action = _random_actions(spec, B, T)  # (B, T, A) one-hot or inside the Box
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True

    with torch.no_grad():
        states, last = wm.observe(obs, action, is_first)
        assert all(v.shape[:2] == (B, T) for v in states.values())
        assert all(v.shape[0] == B for v in last.values())
        assert torch.equal(states["action"], action)  # each state carries the action taken at it

        head = FAMILIES[family].head(model.components, model.config)
        if head is None:  # a family that acts by planning (PETS) says so in the registry, and imagines any policy
            assert FAMILIES[family].policy is not None
            head = RandomPolicy(spec, seed=0)
        assert isinstance(head, LatentPolicy)
        traj = wm.imagine(last, head, H)
        assert isinstance(traj, Trajectory)
        assert traj.feature.shape == (B, H + 1, wm.feature_dim)
        assert traj.action.shape == (B, H, spec.dim) and traj.reward.shape == (B, H) and traj.cont.shape == (B, H)
        assert ((traj.cont >= 0) & (traj.cont <= 1)).all()
        if not getattr(wm, "decodes", True):  # value-equivalent (TD-MPC): it says so, in one line
            with pytest.raises(ValueError, match="no decoder"):
                wm.decode(traj.states)
        elif pixels:
            frames = wm.decode(traj.states)
            assert frames.shape == (B, H + 1, side, side, 3) and frames.dtype == torch.uint8
        else:  # a vector-observation model decodes to predicted observations
            frames = wm.decode(traj.states)
            assert frames.shape == (B, H + 1, side) and frames.dtype == torch.float32

        given = wm.imagine(last, action[:, :H], H, keep_states=False)
        assert torch.equal(given.action, action[:, :H]) and given.feature is None and given.states is None
        assert wm.predict_reward(states).shape == (B, T) and wm.predict_cont(states).shape == (B, T)

    policy = model.policy()
    assert isinstance(policy, Policy)
    env = FAMILIES[family].make_env(ENVS[family], 2, seed=0, **model.env_options)
    driver = Driver(env, policy)
    driver.reset(seed=0)
    rows = [driver.step() for _ in range(3)]
    executed = (2,) if spec.discrete else (2, spec.dim)
    assert all(r["action"].shape == executed for r in rows)  # executed actions, one per env (discrete: an index)
    env.close()

    # Saved and loaded again: the same modules give the same outputs (same RNG draws for the sampled latents).
    reloaded = worldmodels.load(model.path)
    outputs = []
    for candidate in (wm, reloaded.world_model):
        torch.manual_seed(1)
        with torch.no_grad():
            states, last = candidate.observe(obs, action, is_first)
            outputs.append({**states, "imagined": candidate.imagine(last, action[:, :H], H).feature,
                            **({"frames": candidate.decode(states)} if getattr(candidate, "decodes", True) else {})})
    for key in outputs[0]:
        torch.testing.assert_close(outputs[0][key], outputs[1][key], msg=f"{family}: {key} differs after reload")
    for name, module in model.components.items():
        for (k, a), (_, b) in zip(module.state_dict().items(), reloaded.components[name].state_dict().items()):
            assert torch.equal(a, b), f"{family}.{name}.{k} changed in the save/load round trip"


def test_actions_of_a_policy_lie_in_the_space(tmp_path):
    for family, fixture in FIXTURES.items():
        spec = _spec(ENVS[family])
        model = worldmodels.load(fixture(tmp_path, spec))
        policy = model.policy()
        side = 16
        obs = torch.zeros(3, side, side, 3, dtype=torch.uint8) if len(model.obs_shape) == 3 else torch.zeros(3, 4)
        action, _ = policy.act(obs, torch.ones(3, dtype=torch.bool), None)
        assert action.shape == (3, spec.dim)
        if spec.discrete:
            assert torch.equal(action.sum(-1), torch.ones(3))  # one-hot: a valid discrete action for every env
        else:  # inside the Box bounds
            assert bool(((action >= torch.tensor(spec.low)) & (action <= torch.tensor(spec.high))).all())
