"""`wm worldmodels --from MODEL`: V and M are copied from a pretrained model, only C is trained (in its dream)."""

from __future__ import annotations

import json

import torch
from model_fixtures import tiny_dreamer, tiny_worldmodels

from scripts.cli import main
from worldmodels.registry import load


def test_from_pretrained_trains_only_the_controller(tmp_path, capsys):
    vae, mdnrnn, _ = tiny_worldmodels(tmp_path / "pretrained")
    run_dir = tmp_path / "run"
    code = main(["worldmodels", "--from", str(tmp_path / "pretrained"), "--preset", "debug", "--run-dir", str(run_dir)])
    assert code == 0
    for stage in ("vae", "mdnrnn"):  # finished stages that trained nothing
        assert json.loads((run_dir / stage / "DONE").read_text()) == {"steps": 0, "from": str(tmp_path / "pretrained")}
    run = load(run_dir)
    for name, module in (("vae", vae), ("mdnrnn", mdnrnn)):
        for key, value in module.state_dict().items():
            assert torch.equal(run.components[name].state_dict()[key], value), f"{name}.{key} changed"
    # The sizes come from the model (16 px, z 4), not from the debug preset (32 px, z 8).
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["image_size"], config["z_dim"], config["hidden_size"]) == (16, 4, 8)
    assert (run_dir / "controller" / "DONE").exists()
    record = json.loads((run_dir / "eval.json").read_text())
    assert record["episodes"] == 2 and len(record["random_returns"]) == 2
    assert "standard errors of the paired difference" in capsys.readouterr().out


def test_from_a_model_without_v_and_m_is_one_line(tmp_path, capsys):
    tiny_dreamer(tmp_path / "dreamer")
    code = main(["worldmodels", "--from", str(tmp_path / "dreamer"), "--preset", "debug",
                 "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "World Models model" in err, err
