"""``wm bench`` records: every kind runs at the debug preset with tiny step counts and reports positive rates."""

from __future__ import annotations

import json

import pytest

from scripts import cli
from scripts.bench import BENCHMARKS, CONFIG, KINDS, PRESETS, run
from worldmodels.config import build_config

COMMON = ("benchmark", "steps_per_repeat", "warmup_steps", "repeats", "compile", "preset", "peak_rss_mb",
          "peak_gpu_mb", "torch", "device", "torch_threads", "machine")
# Rate fields each kind must report as {median, min, max, runs}; "a.b" is a nested record.
RATES = {
    "worldmodels": ("vae.grad_steps_per_s", "vae.frames_per_s", "mdnrnn.grad_steps_per_s", "mdnrnn.frames_per_s"),
    "dreamer": ("grad_steps_per_s", "replayed_frames_per_s", "imagined_steps_per_s"),
    "imagine": ("rollouts_per_s", "imagined_steps_per_s"),
    "dream": ("dream_steps_per_s", "batch_steps_per_s"),
}


def _debug_config(what: str, **overrides):
    return build_config(CONFIG, {"what": what, "device": "cpu", "steps": 1, "warmup": 1, "repeats": 2, **overrides},
                        presets=PRESETS, preset="debug")


def _get(record: dict, dotted: str) -> dict:
    for key in dotted.split("."):
        record = record[key]
    return record


def _check_spread(stats: dict, repeats: int) -> None:
    assert set(stats) == {"median", "min", "max", "runs"}
    assert len(stats["runs"]) == repeats and all(v > 0 for v in stats["runs"])
    assert 0 < stats["min"] <= stats["median"] <= stats["max"]


def test_registry_covers_every_kind():
    assert set(KINDS) | {"all"} == set(BENCHMARKS)
    assert set(RATES) | {"collect", "loader"} == set(KINDS)


@pytest.mark.parametrize("what", sorted(RATES))
def test_model_benchmark_record(what):
    record = run(_debug_config(what))
    assert record["benchmark"] == what
    assert all(key in record for key in COMMON), sorted(set(COMMON) - set(record))
    assert record["device"] == "cpu" and record["peak_gpu_mb"] is None
    assert record["peak_rss_mb"] > 0 and record["torch_threads"] >= 1
    assert record["preset"] == {"worldmodels": "debug", "dreamer": "debug"}
    for field in RATES[what]:
        _check_spread(_get(record, field), repeats=2)
    json.dumps(record)  # JSON-ready


def test_cli_prints_json(capsys, tmp_path):
    out = tmp_path / "bench.json"
    code = cli.main(["bench", "--what", "imagine", "--preset", "debug", "--device", "cpu", "--steps", "1",
                     "--warmup", "0", "--repeats", "1", "--out", str(out)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["imagined_steps_per_s"]["median"] > 0 and printed["starts"] == 4 * 8  # debug: B 4 x T 8


def test_cuda_without_gpu_is_a_user_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert cli.main(["bench", "--what", "imagine", "--preset", "debug", "--device", "cuda"]) == 2
    assert "cuda" in capsys.readouterr().err


def test_loader_benchmark_record():
    record = run(_debug_config("loader", loader_workers="0,1"))
    assert set(record["workers"]) == {"0", "1"}
    for stats in record["workers"].values():
        _check_spread(stats["frames_per_s"], repeats=2)
