"""The pretrained models shipped in checkpoints/: listed, under 25 MB, carded, digested, and loadable without pickle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.checkpoints import CONFIG, run
from worldmodels.registry import SHIPPED
from worldmodels.shipped import list_checkpoints
from worldmodels.checkpoint import SHA256_KEY, WEIGHTS_NAME, file_sha256
from worldmodels.pretrained import from_pretrained

ROWS = list_checkpoints(SHIPPED)


def test_three_shipped_models_cover_both_families():
    assert {(r["family"], r["env_id"]) for r in ROWS} >= {
        ("worldmodels", "ALE/Pong-v5"), ("worldmodels", "CarRacing-v3"), ("dreamer", "ALE/Pong-v5")}


@pytest.mark.parametrize("row", ROWS, ids=[r["name"] for r in ROWS])
def test_each_loads_and_has_a_card_with_metrics(row):
    assert "error" not in row and row["size_mb"] <= 25
    card = open(row["card"]).read()
    assert "command" in card and "hardware" in card and "kpi/open_loop_psnr_h1" in card
    assert {"kpi/open_loop_mse_h1", "kpi/open_loop_psnr_h15"} <= set(row["metrics"])
    bundle = from_pretrained(row["path"])
    assert bundle.env_id == row["env_id"]


def test_wm_checkpoints_prints_a_header_and_one_row_per_model(capsys):
    run(CONFIG(root=str(SHIPPED)))
    header, rule, *lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert header.startswith("name") and header.endswith("card") and set(rule) <= {"-", " "}
    assert len(lines) == len(ROWS) and all(line.rstrip().endswith("README.md") for line in lines)


@pytest.mark.parametrize("row", ROWS, ids=[r["name"] for r in ROWS])
def test_each_records_the_digest_of_its_weights(row):
    """Without one it would load only with --allow-unverified: every shipped model carries its own."""
    config = json.loads((Path(row["path"]) / "config.json").read_text())
    assert config.get(SHA256_KEY) == {WEIGHTS_NAME: file_sha256(Path(row["path"]) / WEIGHTS_NAME)}


@pytest.mark.parametrize("root", ["/nonexistent", "afile"])
def test_wm_checkpoints_of_a_root_that_is_no_directory_is_one_line(tmp_path, capsys, monkeypatch, root):
    from scripts.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a directory")
    assert main(["checkpoints", "--root", root]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.splitlines() == [f"wm checkpoints: error: --root {root!r} is not a directory; give one whose "
                                         "sub-directories are pretrained models, or leave --root empty for every "
                                         "shipped NAME"]
