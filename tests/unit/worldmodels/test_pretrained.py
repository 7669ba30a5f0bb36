"""Pretrained world models of both families: round trip, dispatch, refusal of mismatches, transfer, export."""

from __future__ import annotations

import json

import pytest
import torch

from worldmodels.checkpoint import CheckpointError, read_config, read_tensors, save_pretrained
from worldmodels.controllers.linear import make_controller
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.vae import ConvVAE
import worldmodels
from worldmodels.families.vm import save_controller, save_stage, vae_sizes
from worldmodels.models.vm_world_model import VMWorldModel
from worldmodels.models.world_model import DreamerWorldModel
from worldmodels.policies import ModelPolicy, RandomPolicy
from worldmodels.pretrained import from_pretrained, transfer
from worldmodels.registry import FAMILIES, Pretrained

from model_fixtures import CATCH, dreamer_parts, tiny_dreamer, tiny_worldmodels


def test_vae_sizes_read_back_from_layers():
    assert vae_sizes(ConvVAE(3, 32, z_dim=8, depth=8, stages=2)) == {"in_channels": 3, "image_size": 32, "z_dim": 8, "depth": 8, "stages": 2}


def test_worldmodels_round_trip_gives_identical_outputs(tmp_path):
    vae, mdnrnn, params = tiny_worldmodels(tmp_path)
    bundle = from_pretrained(tmp_path)
    assert isinstance(bundle, Pretrained) and bundle.family == "worldmodels" and isinstance(bundle.world_model, VMWorldModel)
    assert bundle.env_id == "worldmodels/Catch-v0" and bundle.action_spec == CATCH
    loaded_vae, loaded_mdnrnn = bundle.components["vae"], bundle.components["mdnrnn"]
    images = torch.rand(2, 3, 16, 16) - 0.5
    assert torch.equal(loaded_vae.encode(images)[0], vae.eval().encode(images)[0])
    assert torch.equal(loaded_vae.decode(torch.ones(2, 4)), vae.decode(torch.ones(2, 4)))
    z, action = torch.randn(2, 5, 4), torch.eye(3)[torch.randint(3, (2, 5))]
    assert torch.equal(loaded_mdnrnn(z, action)[0]["mu"], mdnrnn.eval()(z, action)[0]["mu"])
    assert torch.equal(bundle.components["controller"].params.unsqueeze(0), params)
    assert isinstance(bundle.policy(), ModelPolicy)
    config = read_config(tmp_path)
    assert config["family"] == "worldmodels" and config["library_version"] and config["format"]
    assert config["sizes"]["mdnrnn"] == {"z_dim": 4, "action_dim": 3, "hidden_size": 8, "num_mixtures": 2}
    assert config["training_steps"] == {"vae_steps": 3} and config["metrics"] == {"return": 0.5}
    assert config["model_class"] == {"vae": "ConvVAE", "mdnrnn": "MDNRNN", "controller": "LinearController"}


def test_dreamer_round_trip_gives_identical_outputs(tmp_path):
    saved = {name: module.eval() for name, module in tiny_dreamer(tmp_path).items()}
    bundle = from_pretrained(tmp_path)
    assert isinstance(bundle, Pretrained) and bundle.obs_shape == (16, 16, 3)
    assert isinstance(bundle.world_model, DreamerWorldModel) and isinstance(bundle.policy(), ModelPolicy)
    loaded = bundle.components
    obs = torch.randint(0, 255, (2, 3, 16, 16, 3), dtype=torch.uint8)
    batch = {"obs": obs, "action": torch.eye(3)[torch.randint(3, (2, 3))], "is_first": torch.tensor([[1, 0, 0]] * 2).bool()}
    torch.manual_seed(1)
    post, _ = saved["world_model"].rssm.observe(saved["world_model"].embed(obs), batch["action"], batch["is_first"])
    torch.manual_seed(1)
    post2, _ = bundle.world_model.rssm.observe(bundle.world_model.embed(obs), batch["action"], batch["is_first"])
    assert torch.equal(post["deter"], post2["deter"]) and torch.equal(post["logits"], post2["logits"])
    feat = saved["world_model"].rssm.feature(post)
    assert torch.equal(saved["actor"](feat).mode(), loaded["actor"](feat).mode())
    assert torch.equal(saved["critic"](feat), loaded["critic"](feat))


def test_dreamer_directory_loads_in_the_dream_viewer(tmp_path):
    from worldmodels.dreams import dream_models
    from worldmodels.registry import load

    tiny_dreamer(tmp_path)
    assert isinstance(dream_models(load(tmp_path))[0], DreamerWorldModel)


def test_mismatched_shape_is_refused_with_one_line(tmp_path):
    tiny_worldmodels(tmp_path)
    tensors = read_tensors(tmp_path)
    tensors["mdnrnn"]["head.weight"] = torch.zeros(7, 8)  # a tampered / foreign layer size
    save_pretrained(tmp_path, {name: _Holder(state) for name, state in tensors.items()},
                    {k: v for k, v in read_config(tmp_path).items() if k not in ("format", "library_version", "components")})
    with pytest.raises(CheckpointError) as info:
        from_pretrained(tmp_path, family="worldmodels")
    message = str(info.value)
    assert "\n" not in message and "mdnrnn.head.weight" in message and "shape" in message


def test_wrong_family_and_stage_directories_are_refused(tmp_path):
    tiny_dreamer(tmp_path / "d")
    with pytest.raises(CheckpointError, match="family 'dreamer', expected 'worldmodels'"):
        from_pretrained(tmp_path / "d", family="worldmodels")
    save_pretrained(tmp_path / "stage", {"vae": ConvVAE(3, 16, 4, 4, 2)}, {"family": "worldmodels", "kind": "vae"})
    with pytest.raises(CheckpointError, match="export_from_run"):
        from_pretrained(tmp_path / "stage")


def test_transfer_to_another_action_space_reinitialises_only_action_layers(tmp_path):
    tiny_dreamer(tmp_path)
    pong = ActionSpec("discrete", 6)
    torch.manual_seed(5)
    parts = dreamer_parts(pong)
    fresh = parts["world_model"].rssm.img_in[0].weight.detach().clone()
    reports = transfer(tmp_path, {"world_model": parts["world_model"], "actor": parts["actor"]},
                       reinit={"world_model": ("rssm.img_in.0.weight",), "actor": ("mlp.out.",)},
                       keep_columns={"world_model.rssm.img_in.0.weight": 16})
    assert reports["world_model"].reinitialised == ["rssm.img_in.0.weight"]
    assert sorted(reports["actor"].reinitialised) == ["mlp.out.bias", "mlp.out.weight"]
    saved = read_tensors(tmp_path)["world_model"]["rssm.img_in.0.weight"]  # (hidden, 16 + 3)
    weight = parts["world_model"].rssm.img_in[0].weight
    assert torch.equal(weight[:, :16], saved[:, :16]) and torch.equal(weight[:, 16:], fresh[:, 16:])
    assert torch.equal(parts["world_model"].rssm.gru.linear.weight, read_tensors(tmp_path)["world_model"]["rssm.gru.linear.weight"])


def test_export_from_worldmodels_run_directory(tmp_path):
    from worldmodels.config import save_json_atomic
    from worldmodels.pretrained import export_from_run

    run = tmp_path / "run"
    vae, mdnrnn, params = tiny_worldmodels(tmp_path / "ref")
    save_stage(run / "vae", "vae", vae)
    save_stage(run / "mdnrnn", "mdnrnn", mdnrnn)
    save_controller(run / "controller", make_controller("linear", 12, CATCH), params[0])
    (run / "controller" / "DONE").write_text("{}")
    (run / "episodes").mkdir()
    save_json_atomic(run / "episodes" / "store.json", {"env_id": "worldmodels/Catch-v0", "obs_shape": [16, 16, 3],
                                                       "action_spec": CATCH.to_dict()})
    save_json_atomic(run / "config.json", {"vae_steps": 7, "mdnrnn_steps": 9})
    save_json_atomic(run / "eval.json", {"return_mean": 0.25, "returns": [0.25]})
    bundle = from_pretrained(export_from_run(run), family="worldmodels")
    assert bundle.config["training_steps"] == {"vae_steps": 7, "mdnrnn_steps": 9}
    assert bundle.config["metrics"] == {"return_mean": 0.25}
    assert torch.equal(bundle.components["controller"].params.unsqueeze(0), params)
    from_run = worldmodels.load(run)  # the run's stage directories: the same format, through the same loader
    for name, module in bundle.components.items():
        for key, value in module.state_dict().items():
            assert torch.equal(from_run.components[name].state_dict()[key], value), f"{name}.{key}"


class _Holder(torch.nn.Module):
    """Re-save a raw state dict (to build a tampered checkpoint)."""

    def __init__(self, state):
        super().__init__()
        for key, value in state.items():
            self.register_buffer(key.replace(".", "__"), value)

    def state_dict(self, *args, **kwargs):
        return {key.replace("__", "."): value for key, value in super().state_dict(*args, **kwargs).items()}


def test_worldmodels_directory_loads_in_the_dream_viewer(tmp_path):
    from worldmodels.dreams import dream_models
    from worldmodels.registry import load
    from worldmodels.policies import ControllerHead

    tiny_worldmodels(tmp_path)
    model, head = dream_models(load(tmp_path))
    assert isinstance(model, VMWorldModel) and model.mdnrnn is not None and isinstance(head, ControllerHead)


def test_registry_is_a_dict_literal_of_every_family():
    assert sorted(FAMILIES) == ["dreamer", "mbpo", "pets", "tdmpc", "worldmodels"]


def test_a_model_without_a_controller_acts_randomly(tmp_path):
    tiny_worldmodels(tmp_path, controller=False)
    assert isinstance(worldmodels.load(tmp_path).policy(), RandomPolicy)


def test_an_unknown_name_is_a_one_line_error_naming_where_it_looked():
    with pytest.raises(FileNotFoundError) as info:
        worldmodels.load("no-such-model")
    message = str(info.value)
    assert "\n" not in message and "checkpoints" in message and "pong-dreamer-tiny" in message


@pytest.mark.parametrize("family", ["worldmodels", "dreamer"])
def test_wm_evaluate_runs_every_family_on_the_one_evaluation_path(tmp_path, family):
    from scripts.evaluate import EvaluateConfig, run
    from worldmodels.evaluation import EVAL_KEYS

    (tiny_worldmodels if family == "worldmodels" else tiny_dreamer)(tmp_path / "model")
    record = run(EvaluateConfig(run_dir=str(tmp_path / "model"), episodes=3, num_envs=2, seed=5, device="cpu"))
    saved = json.loads((tmp_path / "model" / "eval-3ep-seed5.json").read_text())  # never the run's eval.json
    assert set(EVAL_KEYS) <= set(saved) and saved == record
    assert record["env"] == "worldmodels/Catch-v0" and record["episodes"] == len(record["returns"]) == 3
