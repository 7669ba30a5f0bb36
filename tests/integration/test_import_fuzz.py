"""The import fuzz: every field `wm import` reads (obs, action, reward, terminated, truncated; dataset.json's
action_spec kind/dim/low/high and env_id) given bad values (wrong dtype, NaN, inf, 1e300, huge, wrong shape,
bool or str for ints) is one line `wm import: error: ...` naming the field, exit 2, nothing written.

Before these checks a float64 reward of 1e300 was imported as float32 inf ("1 episode imported", 0 readable),
0x0 frames were accepted, and a dataset.json dim of 10**7, true or "3" was taken as an int."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import scripts.cli
from worldmodels.data.store import EpisodeStore

T = 4
BOUNDS = {"low": [-1.0, -1.0], "high": [1.0, 1.0]}
DISCRETE = {"kind": "discrete", "dim": 3}
CONTINUOUS = {"kind": "continuous", "dim": 2, **BOUNDS}


def episode(continuous: bool = False) -> dict[str, np.ndarray]:
    """A valid transition-layout episode: obs (T+1, 4, 4, 3) uint8, action (T,) int64 or (T, 2) float32."""
    rng = np.random.default_rng(0)
    action = rng.uniform(-1, 1, (T, 2)).astype(np.float32) if continuous else rng.integers(0, 3, T)
    return {"obs": rng.integers(0, 256, (T + 1, 4, 4, 3), dtype=np.uint8), "action": action,
            "reward": np.ones(T, np.float32), "terminated": np.eye(T, dtype=bool)[-1], "truncated": np.zeros(T, bool)}


def with_row(array: np.ndarray, row: int, value) -> np.ndarray:
    array = array.copy()
    array[row] = value
    return array


def f64(array: np.ndarray, row: int, value: float) -> np.ndarray:
    return with_row(array.astype(np.float64), row, value)


# (field, continuous?, new array from the valid one); each breaks exactly that field.
ARRAYS = {
    "obs-float64": ("obs", False, lambda a: a / 255.0),
    "obs-nan": ("obs", False, lambda a: with_row(a / 255.0, 1, np.nan)),
    "obs-bool": ("obs", False, lambda a: a > 127),
    "obs-int64-300": ("obs", False, lambda a: with_row(a.astype(np.int64), 0, 300)),
    "obs-huge-values": ("obs", False, lambda a: with_row(a.astype(np.int64), 0, 2**62)),
    "obs-no-channels": ("obs", False, lambda a: a[..., 0]),
    "obs-0x0-frames": ("obs", False, lambda a: np.zeros((T + 1, 0, 0, 3), np.uint8)),
    "obs-one-short": ("obs", False, lambda a: a[:-1]),
    "obs-str": ("obs", False, lambda a: np.array(["frame"] * (T + 1))),
    "action-float": ("action", False, lambda a: a.astype(np.float32)),
    "action-nan": ("action", False, lambda a: f64(a, 0, np.nan)),
    "action-1e300": ("action", False, lambda a: f64(a, 0, 1e300)),
    "action-huge-int": ("action", False, lambda a: with_row(a, 0, 2**62)),
    "action-negative": ("action", False, lambda a: with_row(a, 2, -1)),
    "action-bool": ("action", False, lambda a: a > 0),
    "action-str": ("action", False, lambda a: a.astype(str)),
    "action-2d": ("action", False, lambda a: a[:, None]),
    "caction-nan": ("action", True, lambda a: with_row(a, 1, np.nan)),
    "caction-inf": ("action", True, lambda a: with_row(a, 1, np.inf)),
    "caction-1e300": ("action", True, lambda a: f64(a, 1, 1e300)),
    "caction-outside": ("action", True, lambda a: with_row(a, 1, 1.5)),
    "caction-int": ("action", True, lambda a: a.astype(np.int64)),
    "caction-1d": ("action", True, lambda a: a[:, 0]),
    "caction-bool": ("action", True, lambda a: a > 0),
    "reward-nan": ("reward", False, lambda a: with_row(a, 1, np.nan)),
    "reward-inf": ("reward", False, lambda a: with_row(a, 1, np.inf)),
    "reward--inf": ("reward", False, lambda a: with_row(a, 1, -np.inf)),
    "reward-1e300": ("reward", False, lambda a: f64(a, 1, 1e300)),
    "reward--1e300": ("reward", False, lambda a: f64(a, 1, -1e300)),
    "reward-str": ("reward", False, lambda a: a.astype(str)),
    "reward-bool": ("reward", False, lambda a: a > 0),
    "reward-complex": ("reward", False, lambda a: a.astype(np.complex64)),
    "reward-2d": ("reward", False, lambda a: a[:, None]),
    "reward-empty": ("reward", False, lambda a: a[:0]),
    **{f"{flag}-{name}": (flag, False, change) for flag in ("terminated", "truncated") for name, change in {
        "float": lambda a: a.astype(np.float32), "nan": lambda a: f64(a, 0, np.nan), "two": lambda a: with_row(a.astype(np.int64), -1, 2),
        "str": lambda a: a.astype(str), "2d": lambda a: a[:, None], "long": lambda a: np.r_[a, False]}.items()},
    "terminated-early": ("terminated", False, lambda a: with_row(a, 0, True)),
}


def write_source(path, arrays: dict[str, np.ndarray], meta, *, continuous: bool = False) -> None:
    """A source whose ep-0.npz is valid and whose ep-1.npz holds ``arrays``; ``meta`` (str: written as is)."""
    path.mkdir()
    (path / "dataset.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    np.savez(path / "ep-0.npz", **episode(continuous))
    np.savez(path / "ep-1.npz", **arrays)


def assert_refused(tmp_path, capsys, *words: str) -> None:
    out = tmp_path / "store"
    capsys.readouterr()
    code = scripts.cli.main(["import", "--source", str(tmp_path / "src"), "--out", str(out)])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("wm import: error: "), err
    assert all(word in err[0] for word in words), err
    assert not out.exists()  # nothing written, not even the directory


@pytest.mark.parametrize("case", sorted(ARRAYS))
def test_the_import_fuzz_episode_fields(tmp_path, capsys, case):
    field, continuous, change = ARRAYS[case]
    arrays = episode(continuous)
    arrays[field] = change(arrays[field])
    write_source(tmp_path / "src", arrays, {"action_spec": CONTINUOUS if continuous else DISCRETE}, continuous=continuous)
    assert_refused(tmp_path, capsys, "ep-1.npz", f": {field}: ")


SPECS = {
    **{f"kind={value!r}": {"kind": value, "dim": 3} for value in ("box", 3, None, True, "")},
    **{f"dim={value!r}": {"kind": "discrete", "dim": value}
       for value in (10**30, 10**7, True, "3", 0, -1, 3.5, None, math.nan, [3])},
    "continuous-dim=1e30": {"kind": "continuous", "dim": 10**30, **BOUNDS},
    **{f"{side}={value!r}": {**CONTINUOUS, side: [0.0 if side == "low" else 1.0, value]}
       for side in ("low", "high") for value in (math.nan, math.inf, -math.inf, 1e300, "1", True, None)},
    "low>high": {**CONTINUOUS, "low": [-1.0, 2.0]},
    "low-short": {**CONTINUOUS, "low": [-1.0]},
    "high-missing": {"kind": "continuous", "dim": 2, "low": [-1.0, -1.0]},
    "bounds-missing": {"kind": "continuous", "dim": 2},
    "bounds-not-lists": {**CONTINUOUS, "low": -1.0, "high": 1.0},
    "spec-not-object": 3,
}


@pytest.mark.parametrize("case", sorted(SPECS))
def test_the_import_fuzz_action_spec(tmp_path, capsys, case):
    spec = SPECS[case]
    continuous = isinstance(spec, dict) and spec.get("kind") == "continuous"
    write_source(tmp_path / "src", episode(continuous), {"action_spec": spec}, continuous=continuous)  # NaN: json's
    assert_refused(tmp_path, capsys, "dataset.json", "action_spec")


@pytest.mark.parametrize("meta, words", [
    ({"action_spec": DISCRETE, "env_id": 123}, "env_id"),
    ({"action_spec": DISCRETE, "env_id": ["Catch-v0"]}, "env_id"),
    ({"action_spec": DISCRETE, "env_id": True}, "env_id"),
    ({"action_spec": DISCRETE, "env_id": "Catch-v0\nrm -rf"}, "env id"),
    ({"action_spec": DISCRETE, "env_id": "x" * 1000}, "env id"),
    ({}, "action_spec"),
    ([DISCRETE], "action_spec"),
    ("not json {", "action_spec"),
    ('"a string"', "action_spec"),
])
def test_the_import_fuzz_dataset_json(tmp_path, capsys, meta, words):
    write_source(tmp_path / "src", episode(), meta)
    assert_refused(tmp_path, capsys, "dataset.json" if words == "action_spec" else "", words)


def test_the_fuzz_base_case_imports(tmp_path, capsys):
    """The unbroken sources import (so each case above fails for its one bad value)."""
    for continuous in (False, True):
        source, out = tmp_path / f"src-{continuous}", tmp_path / f"store-{continuous}"
        source.mkdir()
        (source / "dataset.json").write_text(json.dumps({"action_spec": CONTINUOUS if continuous else DISCRETE,
                                                         "env_id": "worldmodels/Catch-v0"}))
        np.savez(source / "ep-0.npz", **episode(continuous))
        assert scripts.cli.main(["import", "--source", str(source), "--out", str(out)]) == 0
        assert len(EpisodeStore.open(out)) == 1
