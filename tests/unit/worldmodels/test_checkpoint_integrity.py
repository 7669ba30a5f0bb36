"""Issue 15 item 7: a one-bit flip in model.safetensors and NaN weights are refused, and a NaN model is never
written. A checkpoint whose digest is missing, null, renamed or malformed loads only with ``allow_unverified=True``
(one warning line); a wrong digest is always refused."""

from __future__ import annotations

import json
import struct

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


def _flip_a_data_byte(directory) -> None:
    """One bit of the first tensor's data (its lowest mantissa byte: still finite), which safetensors cannot notice."""
    weights = bytearray((directory / WEIGHTS_NAME).read_bytes())
    header = struct.unpack("<Q", weights[:8])[0]
    weights[8 + header] ^= 0x01
    (directory / WEIGHTS_NAME).write_bytes(bytes(weights))


def _strip_digest(directory, edit) -> None:
    config = json.loads((directory / "config.json").read_text())
    edit(config)
    (directory / "config.json").write_text(json.dumps(config))


NO_DIGEST = {  # ways to switch the check off by editing config.json
    "deleted": lambda c: c.pop(SHA256_KEY),
    "null": lambda c: c.update({SHA256_KEY: None}),
    "renamed": lambda c: c.update({"sha-256": c.pop(SHA256_KEY)}),
    "a string": lambda c: c.update({SHA256_KEY: c[SHA256_KEY][WEIGHTS_NAME]}),
    "a number": lambda c: c.update({SHA256_KEY: 5}),
    "no entry": lambda c: c.update({SHA256_KEY: {}}),
    "null entry": lambda c: c.update({SHA256_KEY: {WEIGHTS_NAME: None}}),
    "short entry": lambda c: c.update({SHA256_KEY: {WEIGHTS_NAME: "abc"}}),
    "not hex": lambda c: c.update({SHA256_KEY: {WEIGHTS_NAME: "z" * 64}}),
}


@pytest.mark.parametrize("edit", NO_DIGEST.values(), ids=NO_DIGEST)
def test_a_switched_off_digest_is_refused_in_one_line(tmp_path, edit):
    save_pretrained(tmp_path, {"net": _model()}, {"family": "test"})
    _strip_digest(tmp_path, edit)
    _flip_a_data_byte(tmp_path)
    with pytest.raises(CheckpointError) as info:
        read_tensors(tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "config.json") in message and "--allow-unverified" in message


@pytest.mark.parametrize("edit", NO_DIGEST.values(), ids=NO_DIGEST)
def test_allow_unverified_loads_it_and_says_so_once(tmp_path, capsys, edit):
    save_pretrained(tmp_path, {"net": _model()}, {"family": "test"})
    _strip_digest(tmp_path, edit)
    _flip_a_data_byte(tmp_path)
    assert set(read_tensors(tmp_path, allow_unverified=True)["net"]) == {"weight", "bias"}
    assert set(read_tensors(tmp_path, allow_unverified=True)["net"]) == {"weight", "bias"}
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"warning: loading {tmp_path} without a digest (--allow-unverified)"]


def test_a_wrong_digest_is_refused_even_when_unverified_loads_are_allowed(tmp_path):
    save_pretrained(tmp_path, {"net": _model()}, {"family": "test"})
    _flip_a_data_byte(tmp_path)
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        read_tensors(tmp_path, allow_unverified=True)


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
    _strip_digest(tmp_path / "ok", lambda c: c.pop(SHA256_KEY))
    with pytest.raises(CheckpointError, match="net.weight holds NaN or inf"):
        read_tensors(tmp_path / "ok", allow_unverified=True)
