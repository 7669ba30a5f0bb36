"""Saved-model integrity: a model whose config.json records no digest of model.safetensors is refused by every
command that loads one, in one line, unless ``--allow-unverified`` is given (then a warning line says so once);
fresh runs and exports always record a digest, so the normal flows need no flag."""

from __future__ import annotations

import dataclasses
import importlib
import json
import struct

import pytest

import worldmodels
from scripts.cli import COMMANDS, main
from worldmodels.checkpoint import SHA256_KEY, WEIGHTS_NAME, CheckpointError, allow_unverified_arg, file_sha256

from model_fixtures import tiny_worldmodels

# Every command that reads a saved model's weights (wm checkpoints reads config.json only).
LOADERS = ("evaluate", "plan", "serve", "dream", "export", "remeasure", "finetune", "bench-finetune", "worldmodels")
WARNING = "without a digest (--allow-unverified)"


def _unverified(directory) -> None:
    """The model in ``directory`` without its digest, and one bit of its weights flipped."""
    config = json.loads((directory / "config.json").read_text())
    del config[SHA256_KEY]
    (directory / "config.json").write_text(json.dumps(config))
    weights = bytearray((directory / WEIGHTS_NAME).read_bytes())
    weights[8 + struct.unpack("<Q", weights[:8])[0]] ^= 0x01  # the first tensor's lowest mantissa byte
    (directory / WEIGHTS_NAME).write_bytes(bytes(weights))


@pytest.fixture
def model(tmp_path):
    tiny_worldmodels(tmp_path / "model")
    _unverified(tmp_path / "model")
    return tmp_path / "model"


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in captured.err, captured.err
    return errors[0]


@pytest.mark.parametrize("command", LOADERS)
def test_every_loading_command_declares_the_one_flag(command):
    fields = {f.name: f for f in dataclasses.fields(importlib.import_module(COMMANDS[command].module).CONFIG)}
    assert "allow_unverified" in fields, f"wm {command}: --allow-unverified missing"
    assert fields["allow_unverified"].default is False
    assert fields["allow_unverified"].metadata["help"] == allow_unverified_arg().metadata["help"]


@pytest.mark.parametrize("argv", [
    ["evaluate", "--run-dir", "{m}", "--episodes", "1", "--num-envs", "1"],
    ["plan", "--checkpoint", "{m}", "--episodes", "1", "--num-envs", "1"],
    ["dream", "--checkpoint", "{m}", "--logdir", "{t}/dreams", "--episodes", "1"],
    ["remeasure", "--checkpoint", "{m}", "--heldout-episodes", "1"],
    ["serve", "--checkpoint", "{m}", "--port", "0"],
    ["finetune", "--from", "{m}", "--run-dir", "{t}/ft", "--preset", "debug"],
    ["worldmodels", "--from", "{m}", "--run-dir", "{t}/wm", "--preset", "debug"],
], ids=lambda argv: argv[0])
def test_a_model_without_digest_is_refused_in_one_line(model, capsys, argv):
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    assert main([a.format(m=model, t=model.parent) for a in argv]) == 2
    line = _error_line(capsys)
    assert str(model / "config.json") in line and "no 'sha256' key" in line and "--allow-unverified" in line, line
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before  # nothing ran, nothing was written


@pytest.mark.parametrize("argv", [
    ["evaluate", "--run-dir", "{m}", "--episodes", "1", "--num-envs", "1", "--out", "{t}/eval.json"],
    ["dream", "--checkpoint", "{m}", "--logdir", "{t}/dreams", "--episodes", "1", "--context", "2", "--horizon", "2",
     "--mp4", "false"],
], ids=lambda argv: argv[0])
def test_allow_unverified_loads_it_with_one_warning(model, capsys, argv):
    assert main([*(a.format(m=model, t=model.parent) for a in argv), "--allow-unverified"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if WARNING in line]
    assert warnings == [f"warning: loading {model} {WARNING}"]


def test_the_python_api_needs_allow_unverified_too(model, capsys):
    with pytest.raises(CheckpointError, match="--allow-unverified"):
        worldmodels.load(model)
    assert worldmodels.load(model, allow_unverified=True).env_id == "worldmodels/Catch-v0"
    assert WARNING in capsys.readouterr().err


def test_a_wrong_digest_is_refused_even_with_the_flag(tmp_path, capsys):
    tiny_worldmodels(tmp_path / "model")
    weights = bytearray((tmp_path / "model" / WEIGHTS_NAME).read_bytes())
    weights[-3] ^= 0x01
    (tmp_path / "model" / WEIGHTS_NAME).write_bytes(bytes(weights))
    assert main(["evaluate", "--run-dir", str(tmp_path / "model"), "--episodes", "1", "--allow-unverified"]) == 2
    assert "SHA-256 differs" in _error_line(capsys)


def test_an_export_of_an_unverified_run_records_a_digest(tmp_path, capsys):
    """A run's stage directory without a digest (written before digests existed) exports only with the flag,
    and the export it writes carries a digest: it loads without one."""
    from worldmodels.config import save_json_atomic
    from worldmodels.controllers.linear import make_controller
    from worldmodels.families.vm import save_controller, save_stage

    from model_fixtures import CATCH

    run = tmp_path / "run"
    vae, mdnrnn, params = tiny_worldmodels(tmp_path / "ref")
    save_stage(run / "vae", "vae", vae)
    save_stage(run / "mdnrnn", "mdnrnn", mdnrnn)
    save_controller(run / "controller", make_controller("linear", 12, CATCH), params[0])
    (run / "episodes").mkdir()
    save_json_atomic(run / "episodes" / "store.json", {"format": "worldmodels-episodes/1", "env_id": "worldmodels/Catch-v0",
                                                       "obs_shape": [16, 16, 3], "action_spec": CATCH.to_dict()})
    config = json.loads((run / "vae" / "config.json").read_text())
    del config[SHA256_KEY]
    (run / "vae" / "config.json").write_text(json.dumps(config))
    argv = ["export", "--run-dir", str(run), "--heldout-episodes", "1", "--context", "2", "--horizon", "2"]
    assert main(argv) == 2
    assert str(run / "vae" / "config.json") in _error_line(capsys)
    assert main([*argv, "--allow-unverified"]) == 0
    assert [line for line in capsys.readouterr().err.splitlines() if WARNING in line] == \
        [f"warning: loading {run / 'vae'} {WARNING}"]
    exported = json.loads((run / "export" / "config.json").read_text())
    assert exported[SHA256_KEY] == {WEIGHTS_NAME: file_sha256(run / "export" / WEIGHTS_NAME)}
    assert worldmodels.load(run / "export").env_id == "worldmodels/Catch-v0"
