"""``wm bench`` records: every kind runs at the debug preset with tiny step counts and reports positive rates."""

from __future__ import annotations

import json

import pytest

from scripts import cli
from scripts.bench import BENCHMARKS, CONFIG, KINDS, PRESETS, run
from trainers.modules.dreamer import PHASES
from worldmodels.config import build_config

COMMON = ("benchmark", "steps_per_repeat", "warmup_steps", "repeats", "compile", "preset", "peak_rss_mb",
          "peak_gpu_mb", "torch", "device", "torch_threads", "machine")
# Rate fields each kind must report as {median, min, max, runs}; "a.b" is a nested record.
RATES = {
    "worldmodels": ("vae.grad_steps_per_s", "vae.frames_per_s", "mdnrnn.grad_steps_per_s", "mdnrnn.frames_per_s"),
    "dreamer": ("grad_steps_per_s", "replayed_frames_per_s", "imagined_steps_per_s"),
    "imagine": ("rollouts_per_s", "imagined_steps_per_s"),
    "dream": ("dream_steps_per_s", "batch_steps_per_s"),
    "profile": ("updates_per_s",),
    "replay": ("disk.batches_per_s", "ram.batches_per_s"),
    "plan": ("worldmodels.plans_per_s", "worldmodels.ms_per_action", "worldmodels.imagined_steps_per_s",
             "dreamer.plans_per_s", "dreamer.ms_per_action", "dreamer.imagined_steps_per_s"),
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


# sheeprl 0.8.4's configs/algo/dreamer_v3_{S,XS}.yaml: dense_units, cnn_channels_multiplier (encoder and decoder),
# recurrent_state_size, 32 x 32 stochastic, mlp_layers.
SHEEPRL_WIDTHS = {"S-v1": (512, 512, 32, 32, 32, 2), "XS-v1": (256, 256, 24, 32, 32, 1)}


@pytest.mark.parametrize("preset", sorted(SHEEPRL_WIDTHS))
def test_sheeprl_sized_presets_parse_for_bench_and_dreamer(preset, capsys):
    """sheeprl's dreamer_v3_S / _XS widths: `wm bench --dreamer-preset P` and `wm dreamer --preset P` accept them."""
    from trainers.bench.models import _dreamer_config

    bench = build_config(CONFIG, {"what": "dreamer", "dreamer_preset": preset})
    sizes = _dreamer_config(bench)
    widths = (sizes.deter, sizes.hidden, sizes.depth, sizes.stoch, sizes.classes, sizes.layers)
    assert widths == SHEEPRL_WIDTHS[preset]
    assert (sizes.batch_size, sizes.seq_len, sizes.image_size) == (16, 64, 64)
    assert cli.main(["bench", "--what", "dreamer", "--dreamer-preset", preset, "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["dreamer_preset"] == preset
    assert cli.main(["dreamer", "--preset", preset, "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    deter, hidden, depth, _, _, layers = SHEEPRL_WIDTHS[preset]
    assert (printed["deter"], printed["hidden"], printed["depth"], printed["layers"]) == (deter, hidden, depth, layers)
    assert cli.main(["bench", "--preset", preset, "--print-config"]) == 0  # the bench's own preset of that name
    assert json.loads(capsys.readouterr().out)["dreamer_preset"] == preset


def test_threads_auto_picks_a_usable_count():
    import os

    import torch

    from worldmodels import profiling

    before = torch.get_num_threads()
    try:
        chosen = profiling.set_threads("auto", rows=64, width=32)
        assert 1 <= chosen <= len(os.sched_getaffinity(0)) and torch.get_num_threads() == chosen
        assert profiling.set_threads("1") == 1 and profiling.set_threads(0) == 1  # 0 keeps the current count
        with pytest.raises(ValueError, match="'auto' or an integer"):
            profiling.set_threads("two")
    finally:
        torch.set_num_threads(before)


def test_profile_record_shares_and_flop_utilisation():
    """The profile's op-kind shares cover the update (they sum to 1 with the unattributed rest), every phase of
    the update is found, and the FLOP count and the GEMM peak give a utilisation in (0, 1]."""
    record = run(_debug_config("profile", profile_gemm=256))
    shares = record["shares"]
    assert {"convolution", "matmul", "Python, Lightning, dispatch (no op)"} <= set(shares)
    assert sum(part["share"] for part in shares.values()) == pytest.approx(1.0, abs=0.02)  # the rest is clamped >= 0
    assert set(record["phases"]) == set(PHASES)
    flops = record["flops_per_update"]
    assert flops["total"] == pytest.approx(flops["world_model"] + flops["actor_critic"]) and flops["actor_critic"] > 0
    assert 0 < record["flop_utilisation"] <= 1  # a debug model is far from the peak, but never above it


def test_replay_record_compares_disk_with_ram():
    record = run(_debug_config("replay", capacity=300, replay_ram_capacity=200, replay_batch=2, replay_seq=8))
    assert record["disk"]["capacity"] == 300 and record["ram"]["capacity"] == 200
    assert record["disk"]["peak_rss_mb"] > 0 and record["disk_vs_ram"] > 0
