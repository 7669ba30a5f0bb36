"""`wm fidelity` and the opt-in `wm remeasure --fidelity-episodes N` on a tiny World Models model of Catch."""

from __future__ import annotations

import hashlib
import json

import pytest
from model_fixtures import tiny_worldmodels
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import trainers.runs.fidelity_checkpoints as fidelity_checkpoints
from scripts.cli import main


@pytest.fixture(autouse=True)
def small_set(monkeypatch):
    monkeypatch.setattr(fidelity_checkpoints, "CMAES_GENERATIONS", (1, 2))


def test_fidelity_writes_the_report_and_the_kpi(tmp_path, capsys):
    tiny_worldmodels(tmp_path / "model")
    out = tmp_path / "f" / "fidelity.json"
    assert main(["fidelity", "--checkpoint", str(tmp_path / "model"), "--episodes", "2", "--horizon", "12",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["order"] == ["random", "trained", "cmaes-1gen", "cmaes-2gen", "noise-0.3", "noise-1",
                                        "epsilon-0.3"]
    assert report["horizon"] == 12 and report["episodes"] == 2 and set(report["policy_set"]) == set(report["policies"])
    for row in report["policies"].values():
        assert len(row["real_returns"]) == len(row["dream_returns"]) == 2
        assert row["gap"] == pytest.approx(row["dream_mean"] - row["real_mean"])
        assert max(row["dream_lengths"]) <= 12
    printed = capsys.readouterr().out
    assert "| policy | dream return | real return | gap (dream - real) |" in printed and "regret" in printed
    events = EventAccumulator(str(tmp_path / "f" / "tb" / "fidelity"))
    events.Reload()
    assert "kpi/decision_fidelity_regret" in events.Tags()["scalars"]


def test_remeasure_opt_in_puts_the_table_in_config_and_card(tmp_path):
    from scripts.remeasure import CARD_SECTION, CARD_SECTION_END

    tiny_worldmodels(tmp_path / "model")
    weights = hashlib.sha256((tmp_path / "model" / "model.safetensors").read_bytes()).hexdigest()
    (tmp_path / "model" / "README.md").write_text(f"# card\n\n{CARD_SECTION}\n\nold\n\n{CARD_SECTION_END} ...\n")
    base = ["remeasure", "--checkpoint", str(tmp_path / "model"), "--heldout-episodes", "1", "--samples", "1"]
    assert main([*base, "--fidelity-episodes", "1"]) == 0
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert "kpi/decision_fidelity_regret" in config["metrics"] and config["decision_fidelity"]["episodes"] == 1
    card = (tmp_path / "model" / "README.md").read_text()
    assert card.index(CARD_SECTION) < card.index("## Decision fidelity") < card.index(CARD_SECTION_END)
    assert main(base) == 0  # off by default: the last measurement stays, in config.json and the card
    assert "## Decision fidelity" in (tmp_path / "model" / "README.md").read_text()
    assert hashlib.sha256((tmp_path / "model" / "model.safetensors").read_bytes()).hexdigest() == weights


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main(["fidelity"]) == 2
    assert "--checkpoint is required" in capsys.readouterr().err
    tiny_worldmodels(tmp_path / "vm", controller=False)
    assert main(["fidelity", "--checkpoint", str(tmp_path / "vm"), "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no trained policy" in err[0]
