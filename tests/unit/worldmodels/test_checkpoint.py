"""Safe exchange format: round-trip, refusal of bad files, pickle payloads never run."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from torch import nn

from worldmodels.checkpoint import (
    CheckpointError,
    load_into,
    load_lightning_checkpoint,
    read_config,
    read_tensors,
    save_pretrained,
)


def _model(width: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 2))


def test_round_trip_gives_identical_outputs(tmp_path):
    model = _model()
    save_pretrained(tmp_path, {"net": model}, {"family": "test", "sizes": {"width": 4}})
    fresh = _model()
    for p in fresh.parameters():
        nn.init.zeros_(p)
    report = load_into(fresh, read_tensors(tmp_path)["net"], component="net")
    x = torch.randn(5, 3)
    assert torch.equal(fresh(x), model(x))
    assert not report.reinitialised
    assert read_config(tmp_path)["sizes"] == {"width": 4}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_shape_mismatch_is_a_one_line_error(tmp_path):
    save_pretrained(tmp_path, {"net": _model(4)}, {"family": "test"})
    with pytest.raises(CheckpointError) as info:
        load_into(_model(8), read_tensors(tmp_path)["net"], component="net")
    message = str(info.value)
    assert "\n" not in message and "shape" in message and "net.0.weight" in message


def test_reinit_prefix_keeps_fresh_layer(tmp_path):
    save_pretrained(tmp_path, {"net": _model(4)}, {"family": "test"})
    target = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 7))  # new "action-dependent" output layer
    report = load_into(target, read_tensors(tmp_path)["net"], component="net", reinit_prefixes=("2.",))
    assert sorted(report.reinitialised) == ["2.bias", "2.weight"]
    assert torch.equal(target[0].weight, _model(4)[0].weight)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_tampered_or_truncated_weights_refused(tmp_path, damage):
    save_pretrained(tmp_path, {"net": _model()}, {"family": "test"})
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\xff" * 16 + data[16:])
    else:
        path.write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        read_tensors(tmp_path)
    assert "\n" not in str(info.value) and "model.safetensors" in str(info.value)


class _Payload:
    """Unpickling this object creates a file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    payload = pickle.dumps({"state_dict": _Payload(str(marker))})
    (tmp_path / "model.safetensors").write_bytes(payload)
    (tmp_path / "config.json").write_text('{"format": "worldmodels-pretrained/1"}')
    with pytest.raises(CheckpointError):
        read_tensors(tmp_path)
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": _Payload(str(marker))}, ckpt)
    with pytest.raises(CheckpointError) as info:
        load_lightning_checkpoint(ckpt)
    assert "\n" not in str(info.value)
    assert not marker.exists(), "the pickle payload executed"


def test_bad_config_refused(tmp_path):
    save_pretrained(tmp_path, {"net": _model()}, {"family": "test"})
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_config(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        read_config(tmp_path)


def test_lightning_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    from trainers.runs.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = tmp_path / "ckpt" / "last.ckpt"
    io.save_checkpoint({"global_step": 3, "state_dict": {"w": torch.ones(2)}}, target)
    assert load_lightning_checkpoint(target)["global_step"] == 3

    def killed(*args, **kwargs):  # a kill between the temp write and the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 4, "state_dict": {"w": torch.zeros(2)}}, target)
    assert load_lightning_checkpoint(target)["global_step"] == 3  # the previous checkpoint is intact
