"""Issue 15 item 7: a one-bit flip in model.safetensors and NaN weights are refused; older checkpoints
without a digest still load, and a NaN model is never written."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from worldmodels.checkpoint import SHA256_KEY, WEIGHTS_NAME, CheckpointError, file_sha256, read_tensors, save_pretrained
from worldmodels.finite import NonFiniteError


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def test_digest_is_recorded_and_a_flipped_bit_is_refused(tmp_path):
    save_pretrained(tmp_path, {"net": _model()}, {"family": "test"})
    config = json.loads((tmp_path / "config.json").read_text())
    assert config[SHA256_KEY] == {WEIGHTS_NAME: file_sha256(tmp_path / WEIGHTS_NAME)}
    weights = bytearray((tmp_path / WEIGHTS_NAME).read_bytes())
    weights[-3] ^= 0x01  # inside the last tensor's data: safetensors itself cannot notice
    (tmp_path / WEIGHTS_NAME).write_bytes(bytes(weights))
    with pytest.raises(CheckpointError, match="SHA-256 differs") as info:
        read_tensors(tmp_path)
    assert "\n" not in str(info.value) and WEIGHTS_NAME in str(info.value)


def test_a_checkpoint_without_digest_still_loads(tmp_path):
    save_pretrained(tmp_path, {"net": _model()}, {"family": "test"})
    config = json.loads((tmp_path / "config.json").read_text())
    del config[SHA256_KEY]  # as written before digests existed (the shipped checkpoints/)
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert set(read_tensors(tmp_path)["net"]) == {"weight", "bias"}


def test_nan_weights_are_neither_written_nor_loaded(tmp_path):
    model = _model()
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="net.weight"):
        save_pretrained(tmp_path / "refused", {"net": model}, {"family": "test"})
    assert not (tmp_path / "refused" / WEIGHTS_NAME).exists()
    # A NaN file written by something else (no digest) is refused on load.
    save_pretrained(tmp_path / "ok", {"net": _model()}, {"family": "test"})
    save_file({"net.weight": model.weight.detach().clone(), "net.bias": model.bias.detach().clone()},
              str(tmp_path / "ok" / WEIGHTS_NAME))
    config = json.loads((tmp_path / "ok" / "config.json").read_text())
    del config[SHA256_KEY]
    (tmp_path / "ok" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="net.weight holds NaN or inf"):
        read_tensors(tmp_path / "ok")
