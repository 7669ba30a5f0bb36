"""Issue 15 item 10 (files): outputs where a file or directory is in the way, edited or damaged ``config.json`` /
``store.json`` / ``eval.json``, and a full disk are each one line (exit 2, no traceback) naming the file or flag."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch

from scripts.cli import main
from worldmodels.config import WriteError, save_json_atomic
from worldmodels.data.store import EpisodeStore
from worldmodels.envs.spaces import ActionSpec

from model_fixtures import tiny_dreamer, tiny_worldmodels

DISK_FULL = "free space or choose another --run-dir"


def _one_line(capsys, *expected: str) -> str:
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if ": error: " in line]  # progress lines may precede it
    assert len(err) == 1 and "Traceback" not in captured.err, captured.err
    assert all(text in err[0] for text in expected), err[0]
    return err[0]


# ---------------------------------------------------------------------------------------------- outputs in the way


@pytest.mark.parametrize("out", ["afile", "afile/inside"])
def test_export_out_that_is_a_file_or_inside_one(tmp_path, capsys, out):
    (tmp_path / "afile").write_text("not a directory")
    assert main(["export", "--run-dir", str(tmp_path), "--out", str(tmp_path / out)]) == 2
    _one_line(capsys, "--out", "is a file")


@pytest.mark.parametrize("out, expected", [(".", "is a directory"), ("afile/record.json", "is a file")])
def test_bench_out_that_is_a_directory_or_inside_a_file_is_refused_before_benchmarking(tmp_path, capsys, out, expected):
    (tmp_path / "afile").write_text("not a directory")
    assert main(["bench", "--preset", "debug", "--what", "collect", "--out", str(tmp_path / out)]) == 2
    _one_line(capsys, "--out", expected)
    assert capsys.readouterr().out == ""  # refused up front: no benchmark ran, no record printed


@pytest.mark.parametrize("argv", [["dream", "--checkpoint", "{m}", "--logdir", "{t}/afile/x", "--episodes", "1"],
                                  ["dream", "--checkpoint", "{m}", "--logdir", "{t}/afile", "--episodes", "1"]],
                         ids=["inside a file", "a file"])
def test_dream_logdir_that_is_a_file_or_inside_one(tmp_path, capsys, argv):
    (tmp_path / "afile").write_text("not a directory")
    tiny_worldmodels(tmp_path / "m")
    assert main([a.format(m=tmp_path / "m", t=tmp_path) for a in argv]) == 2
    _one_line(capsys, "wm dream: error: --logdir", "is a file")
    assert (tmp_path / "afile").read_text() == "not a directory"


@pytest.mark.parametrize("command", ["evaluate", "plan"])
@pytest.mark.parametrize("out, expected", [("/dev/null/x.json", "'/dev/null' is a file"),
                                           ("adir", "is a directory"), ("afile/x.json", "is a file")])
def test_an_eval_out_in_the_way_is_refused_up_front_and_leaves_nothing(tmp_path, capsys, command, out, expected):
    (tmp_path / "afile").write_text("not a directory")
    (tmp_path / "adir").mkdir()
    tiny_worldmodels(tmp_path / "m")
    flag = "--run-dir" if command == "evaluate" else "--checkpoint"
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([command, flag, str(tmp_path / "m"), "--episodes", "1", "--num-envs", "1",
                 "--out", out if out.startswith("/") else str(tmp_path / out)]) == 2
    _one_line(capsys, f"wm {command}: error: --out", expected)
    assert capsys.readouterr().out == ""  # refused before any episode was played
    assert sorted(p.name for p in tmp_path.iterdir()) == before and list((tmp_path / "adir").iterdir()) == []


def test_write_eval_over_a_directory_is_one_line_and_leaves_no_temp_file(tmp_path):
    from worldmodels.evaluation import eval_record, write_eval

    (tmp_path / "adir").mkdir()
    with pytest.raises(WriteError, match="adir") as info:
        write_eval(tmp_path / "adir", eval_record(env_id="e", seed=0, returns=[1.0], random_returns=[0.0]))
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir"]


def test_export_of_a_pets_run_says_which_families_export(tmp_path, capsys):
    from worldmodels.envs.cartpole_continuous import CONTINUOUS_CARTPOLE_ID
    from worldmodels.pets import PETSWorldModel, ProbabilisticEnsemble
    from worldmodels.pets.family import PLANNER_KEYS, save_whole

    run = tmp_path / "pets-run"  # the layout `wm pets` writes: RUN/model (a whole model), eval.json, results.json
    spec = ActionSpec("continuous", 1, (-1.0,), (1.0,))
    ensemble = ProbabilisticEnsemble(4 + 1, 4 + 1, ensemble_size=2, hidden=8, layers=2)  # CartPole: 4 obs, 1 action
    save_whole(run / "model", PETSWorldModel(ensemble, spec), env_id=CONTINUOUS_CARTPOLE_ID, known_task=False,
               planner={key: 2 for key in PLANNER_KEYS})
    save_json_atomic(run / "results.json", {"env_steps": 10})
    before = sorted(p.name for p in run.iterdir())
    assert main(["export", "--run-dir", str(run), "--heldout-episodes", "1"]) == 2
    _one_line(capsys, "wm export: error:", "`wm pets` run", "`wm worldmodels` and `wm dreamer`", str(run / "model"))
    assert sorted(p.name for p in run.iterdir()) == before  # no export/ directory left behind


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_model_and_eval_files_honour_the_umask(tmp_path, umask, mode):
    """As a plain open() would: temp files from mkstemp or safetensors are 0600 whatever the umask."""
    import os
    import stat

    from worldmodels.evaluation import eval_record, write_eval

    previous = os.umask(umask)
    try:
        tiny_worldmodels(tmp_path / "model")
        write_eval(tmp_path / "eval.json", eval_record(env_id="e", seed=0, returns=[1.0], random_returns=[0.0]))
        save_json_atomic(tmp_path / "record.json", {"a": 1})
    finally:
        os.umask(previous)
    for path in (tmp_path / "model" / "model.safetensors", tmp_path / "model" / "config.json", tmp_path / "eval.json",
                 tmp_path / "record.json"):
        assert oct(stat.S_IMODE(path.stat().st_mode)) == oct(mode), path.name


# ---------------------------------------------------------------------------------------------- edited files


def _evaluate_edited(run_dir, edit) -> None:
    """A tiny World Models run whose config.json ``edit`` changed in place: ``wm evaluate`` on it exits 2."""
    tiny_worldmodels(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    edit(config)
    (run_dir / "config.json").write_text(json.dumps(config))
    assert main(["evaluate", "--run-dir", str(run_dir), "--episodes", "1", "--num-envs", "1"]) == 2


@pytest.mark.parametrize("edit, field", [
    (lambda c: c.update(family="nope"), "family 'nope'"),
    (lambda c: c["sizes"]["vae"].update(z_dim="abc"), "sizes.vae.z_dim is 'abc'"),
    (lambda c: c["sizes"]["vae"].update(z_dim=-3), "sizes.vae.z_dim is -3"),
    (lambda c: c["sizes"]["mdnrnn"].update(hidden_size=0), "sizes.mdnrnn.hidden_size is 0"),
    (lambda c: c.update(obs_shape=[16, -16, 3]), "obs_shape[1] is -16"),
])
def test_an_edited_worldmodels_config_json_names_the_file_and_field(tmp_path, capsys, edit, field):
    _evaluate_edited(tmp_path, edit)
    _one_line(capsys, str(tmp_path / "config.json"), field)


TAMPERED = [10**9, -1, True, "3"]  # absurd, negative, a bool, a string: each refused before any layer is built


@pytest.mark.parametrize("value", TAMPERED, ids=repr)
@pytest.mark.parametrize("field", ["action_spec.dim", "sizes.mdnrnn.hidden_size", "sizes.vae.z_dim",
                                   "sizes.controller.input_dim"])
def test_a_tampered_size_names_the_file_and_field(tmp_path, capsys, field, value):
    *parents, key = field.split(".")

    def edit(config):
        for name in parents:
            config = config[name]
        config[key] = value

    _evaluate_edited(tmp_path, edit)
    _one_line(capsys, str(tmp_path / "config.json"), f"{field} is {value!r}")


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c["sizes"]["mdnrnn"].update(hidden_size=16), "mdnrnn.lstm.weight_ih_l0: shape (32, 7) in the checkpoint, "
                                                            "but the model expects (64, 7)"),  # plausible, not the weights'
    (lambda c: c["action_spec"].update(dim=2), "mdnrnn.lstm.weight_ih_l0"),
    (lambda c: c["action_spec"].update(kind="weird"), "action_spec.kind is 'weird'"),
    (lambda c: c["sizes"]["controller"].update(kind="nope"), "unknown controller 'nope'"),
])
def test_sizes_that_do_not_match_the_weights_name_the_file(tmp_path, capsys, edit, expected):
    _evaluate_edited(tmp_path, edit)
    _one_line(capsys, str(tmp_path / "config.json"), expected)


@pytest.mark.parametrize("make, family, holds", [(tiny_worldmodels, "dreamer", "['controller', 'mdnrnn', 'vae']"),
                                                  (tiny_worldmodels, "pets", "['controller', 'mdnrnn', 'vae']"),
                                                  (tiny_dreamer, "worldmodels", "['actor', 'critic', 'world_model']")])
def test_another_family_written_into_config_json_names_the_file_and_field(tmp_path, capsys, make, family, holds):
    make(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["family"] = family
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert main(["evaluate", "--run-dir", str(tmp_path), "--episodes", "1", "--num-envs", "1"]) == 2
    _one_line(capsys, str(tmp_path / "config.json"), f"family {family!r}", holds)


@pytest.mark.parametrize("value", TAMPERED, ids=repr)
def test_a_tampered_dreamer_size_names_the_field(tmp_path, capsys, value):
    tiny_dreamer(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["config"]["hidden"] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert main(["evaluate", "--run-dir", str(tmp_path), "--episodes", "1", "--num-envs", "1"]) == 2
    _one_line(capsys, str(tmp_path / "config.json"), f"config.hidden is {value!r}")


def test_an_edited_dreamer_config_json_names_the_field(tmp_path, capsys):
    tiny_dreamer(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["config"]["deter"] = "abc"  # the agent config the modules are built from
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert main(["evaluate", "--run-dir", str(tmp_path), "--episodes", "1", "--num-envs", "1"]) == 2
    _one_line(capsys, str(tmp_path / "config.json"), "config.deter is 'abc'")


@pytest.mark.parametrize("text, expected", [("{oops", "not valid JSON"), ("[1, 2]", "holds a JSON list")])
def test_a_damaged_store_json_is_named(tmp_path, capsys, text, expected):
    store = tmp_path / "store"
    EpisodeStore.create(store, env_id="worldmodels/Catch-v0", obs_shape=(16, 16, 3), action_spec=ActionSpec("discrete", 3))
    (store / "store.json").write_text(text)
    assert main(["collect", "--env", "worldmodels/Catch-v0", "--episodes", "1", "--image-size", "16",
                 "--out", str(store)]) == 2
    _one_line(capsys, str(store / "store.json"), expected)


def test_a_store_json_with_a_bad_field_is_named(tmp_path, capsys):
    store = tmp_path / "store"
    EpisodeStore.create(store, env_id="worldmodels/Catch-v0", obs_shape=(16, 16, 3), action_spec=ActionSpec("discrete", 3))
    values = json.loads((store / "store.json").read_text())
    values["obs_shape"] = ["abc", 16, 3]
    (store / "store.json").write_text(json.dumps(values))
    assert main(["collect", "--env", "worldmodels/Catch-v0", "--episodes", "1", "--out", str(store)]) == 2
    _one_line(capsys, str(store / "store.json"), "restore the file")


@pytest.mark.parametrize("name", ["eval.json", "config.json"])
def test_a_damaged_eval_or_config_json_of_a_run_is_named(tmp_path, capsys, name):
    """A World Models run's own JSON files (read by wm export and worldmodels.load) name themselves when damaged."""
    from worldmodels.controllers.linear import make_controller
    from worldmodels.families.vm import save_controller, save_stage

    from model_fixtures import CATCH

    run = tmp_path / "run"
    vae, mdnrnn, params = tiny_worldmodels(tmp_path / "ref")
    save_stage(run / "vae", "vae", vae)
    save_stage(run / "mdnrnn", "mdnrnn", mdnrnn)
    save_controller(run / "controller", make_controller("linear", 12, CATCH), params[0])
    (run / "controller" / "DONE").write_text("{}")
    (run / "episodes").mkdir()
    save_json_atomic(run / "episodes" / "store.json", {"format": "worldmodels-episodes/1", "env_id": "worldmodels/Catch-v0",
                                                       "obs_shape": [16, 16, 3], "action_spec": CATCH.to_dict()})
    save_json_atomic(run / "config.json", {"vae_steps": 7})
    (run / name).write_text("{oops")
    assert main(["export", "--run-dir", str(run), "--heldout-episodes", "1"]) == 2
    _one_line(capsys, str(run / name), "not valid JSON")


# ---------------------------------------------------------------------------------------------- disk full


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_enospc_from_numpy_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(np, "save", _no_space)
    out = tmp_path / "store"
    assert main(["collect", "--env", "worldmodels/Catch-v0", "--episodes", "1", "--num-envs", "1", "--image-size", "16",
                 "--out", str(out)]) == 2
    _one_line(capsys, "disk full writing", str(out), ".npy", DISK_FULL)


def test_enospc_from_torch_save_names_the_checkpoint(tmp_path, monkeypatch):
    from trainers.runs.checkpoint_io import AtomicCheckpointIO

    monkeypatch.setattr(torch, "save", _no_space)
    path = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(WriteError, match=rf"^disk full writing {path}: {DISK_FULL}"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, path)
    assert not path.exists()


def test_enospc_from_safetensors_and_json_writes(tmp_path, monkeypatch):
    import worldmodels.checkpoint
    import worldmodels.config

    monkeypatch.setattr(worldmodels.checkpoint, "save_file", _no_space)
    with pytest.raises(WriteError, match="disk full writing .*model.safetensors"):
        tiny_worldmodels(tmp_path / "model")
    assert list((tmp_path / "model").iterdir()) == []  # no temp weights left behind
    monkeypatch.setattr(worldmodels.config.os, "replace", _no_space)
    with pytest.raises(WriteError, match="disk full writing .*eval.json"):
        save_json_atomic(tmp_path / "eval.json", {"return_mean": 0.0})
    assert list(tmp_path.glob(".eval.json*")) == []  # no temp file left behind


# ---------------------------------------------------------------------------------------------- the flag named


@pytest.mark.parametrize("argv, flag", [(["evaluate", "--episodes", "0"], "--episodes"),
                                        (["export", "--heldout-episodes", "0"], "--heldout-episodes")])
def test_the_message_names_the_flag_given(tmp_path, capsys, monkeypatch, argv, flag):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert "num_envs" not in _one_line(capsys, f"{flag} must be a positive integer")
