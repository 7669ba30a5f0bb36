"""`wm finetune` at debug sizes: across action spaces, frozen parts stay fixed, reward-only, one-line errors."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
import torch

from scripts.cli import main as cli_main
from scripts.finetune import PRESETS, FinetuneConfig, run
from worldmodels.checkpoint import read_tensors
from worldmodels.config import apply_overrides
from worldmodels.envs.toy import CatchEnv
from worldmodels.pretrained import from_pretrained

from model_fixtures import tiny_dreamer, tiny_worldmodels

WIDE_CATCH = "test/WideCatch-v0"


class WideCatch(CatchEnv):
    """Catch with 5 actions (3 and 4 repeat 'right'): another action space on the same pixels, for Dreamer."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.action_space = gym.spaces.Discrete(5)

    def step(self, action):
        return super().step(min(int(action), 2))


def debug(**overrides) -> FinetuneConfig:
    return apply_overrides(apply_overrides(FinetuneConfig(), PRESETS["debug"], source="debug"), overrides, source="test")


def test_worldmodels_catch_to_pong_reinitialises_only_action_columns(tmp_path, capsys):
    tiny_worldmodels(tmp_path / "src")
    result = run(debug(source=str(tmp_path / "src"), env="ALE/Pong-v5", run_dir=str(tmp_path / "run")))
    # M's LSTM reads [z (4), action]: only the action columns 4: are new; C is re-trained at the new size.
    assert result["reinitialised"] == ["mdnrnn.lstm.weight_ih_l0[:, 4:]", "controller (re-trained by CMA-ES)"]
    out = capsys.readouterr().out
    line = [x for x in out.splitlines() if x.startswith("wm finetune:")]
    assert len(line) == 1 and "discrete(3) -> discrete(6): re-initialised mdnrnn.lstm.weight_ih_l0[:, 4:]" in line[0]
    assert "  agent " in out and "  random " in out  # it ends with the agent vs random table
    bundle = from_pretrained(result["pretrained_dir"], family="worldmodels")
    assert bundle.env_id == "ALE/Pong-v5" and bundle.components["mdnrnn"].action_dim == 6
    assert bundle.components["controller"].controller.action_dim == 6


def test_dreamer_across_action_spaces_with_frozen_dynamics(tmp_path):
    if WIDE_CATCH not in gym.registry:
        gym.register(WIDE_CATCH, entry_point=WideCatch, max_episode_steps=100)
    tiny_dreamer(tmp_path / "src")
    result = run(debug(source=str(tmp_path / "src"), env=WIDE_CATCH, run_dir=str(tmp_path / "run"), freeze="dynamics"))
    assert result["reinitialised"] == ["world_model.rssm.img_in.0.weight[:, 16:]", "actor.mlp.out.weight", "actor.mlp.out.bias"]
    # The new action columns stay trainable inside the frozen RSSM; the copied columns get zero gradient.
    assert result["frozen"] == ["world_model.rssm", "except the new world_model.rssm.img_in.0.weight[:, 16:]"]
    assert result["gradient_steps"] == 4
    source, tuned = read_tensors(tmp_path / "src")["world_model"], from_pretrained(result["pretrained_dir"], family="dreamer")
    tuned_state = tuned.world_model.state_dict()
    assert torch.equal(tuned_state["rssm.gru.linear.weight"], source["rssm.gru.linear.weight"])  # frozen: unchanged
    assert torch.equal(tuned_state["rssm.img_in.0.weight"][:, :16], source["rssm.img_in.0.weight"][:, :16])
    assert not torch.equal(tuned_state["decoder.project.weight"], source["decoder.project.weight"])  # trained
    assert tuned.action_spec.dim == 5
    # Issue 25 item 6: the debug preset's 20-step episode limit reached the World Models path only; the Dreamer path
    # dropped it (config.json said null and the evaluation played full episodes, e99b721).
    assert json.loads((tmp_path / "run" / "config.json").read_text())["max_episode_steps"] == 20
    assert tuned.env_options["max_episode_steps"] == 20  # saved with the model: its evaluations play by it


def test_worldmodels_reward_only_moves_only_the_reward_output(tmp_path):
    tiny_worldmodels(tmp_path / "src")
    result = run(debug(source=str(tmp_path / "src"), run_dir=str(tmp_path / "run"), reward_only=True))
    assert result["reinitialised"] == [] and "vae" in result["frozen"] and "mdnrnn.lstm" in result["frozen"]
    source, tuned = read_tensors(tmp_path / "src"), from_pretrained(result["pretrained_dir"], family="worldmodels")
    vae, mdnrnn = tuned.components["vae"], tuned.components["mdnrnn"]
    for key, value in vae.state_dict().items():
        assert torch.equal(value, source["vae"][key]), key
    head, saved = mdnrnn.head.weight, source["mdnrnn"]["head.weight"]  # rows: mixture..., reward (-2), done (-1)
    assert torch.equal(head[:-2], saved[:-2]) and torch.equal(head[-1], saved[-1])
    assert not torch.equal(head[-2], saved[-2])
    assert torch.equal(mdnrnn.lstm.weight_hh_l0, source["mdnrnn"]["lstm.weight_hh_l0"])
    assert json.loads((tmp_path / "run" / "finetune.json").read_text())["eval_return"] == result["eval_return"]


@pytest.mark.parametrize("argv, message", [
    (["--from", "no/such/dir"], "no pretrained directory"),
    (["--reward-only", "--freeze", "encoder"], "leave --freeze at none"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    tiny_worldmodels(tmp_path / "src")
    argv = ["finetune", "--preset", "debug", "--from", str(tmp_path / "src"), "--run-dir", str(tmp_path / "run"), *argv]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err


def test_bench_finetune_reports_step_ratio_per_model(tmp_path):
    from scripts.bench_finetune import PRESETS as BENCH_PRESETS, BenchFinetuneConfig, run as bench_finetune

    tiny_worldmodels(tmp_path / "src")
    config = apply_overrides(BenchFinetuneConfig(), {**BENCH_PRESETS["debug"], "source": str(tmp_path / "src"),
                                                     "run_dir": str(tmp_path / "bench"), "out": str(tmp_path / "b.json")},
                             source="test")
    result = bench_finetune(config)
    assert result["env"] == "ALE/Breakout-v5" and json.loads((tmp_path / "b.json").read_text())["models"].keys() == {"vae", "mdnrnn"}
    for model in result["models"].values():
        assert [step for step, _ in model["scratch_curve"]] == [0, 2, 4, 6] == [step for step, _ in model["finetune_curve"]]
        assert model["steps_scratch"] is not None  # the scratch run reaches its own final loss by definition
        assert model["ratio"] is None or model["ratio"] == model["steps_finetune"] / model["steps_scratch"]


def test_steps_is_a_deprecated_alias_of_updates(capsys):
    """Issue 25 item 5: `--steps` counted optimiser steps in wm finetune and agent steps in every training command.
    The optimiser steps are --updates now; --steps still works here, with a one-line warning that says so."""
    assert cli_main(["finetune", "--preset", "debug", "--steps", "7", "--print-config"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["updates"] == 7
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert warnings == ["wm finetune: warning: --steps is deprecated (here it meant optimiser steps; --steps counts "
                        "agent steps on every training command); use --updates"], warnings
    assert cli_main(["finetune", "--preset", "debug", "--updates", "5", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["updates"] == 5
