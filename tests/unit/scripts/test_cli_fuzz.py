"""Issue 15: every bounded flag of every command, fed a value just outside its declared range, is refused in
one line with exit code 2 before the command runs; and every numeric field of the training, collection,
evaluation and export commands declares a range (so a new flag cannot silently skip the check)."""

from __future__ import annotations

import dataclasses
import importlib
import typing

import pytest

from scripts.cli import COMMANDS, main

# Numeric fields without a range, and why (everything else numeric must declare one).
UNBOUNDED = {
    "bench": "benchmark knobs (trainers/bench_config.py) are checked by the benchmarks themselves",
    "bench-finetune": "benchmark knobs are checked by the benchmark itself",
    "checkpoints": "lists the shipped models; no numeric options",
}


def _numeric(tp) -> bool:
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    return args[0] in (int, float) and args[0] is not bool


def _out_of_range() -> list[tuple[str, str, str]]:
    cases = []
    for name, command in COMMANDS.items():
        config = importlib.import_module(command.module).CONFIG
        hints = typing.get_type_hints(config)
        for field in dataclasses.fields(config):
            meta, integer = field.metadata, int in typing.get_args(hints[field.name]) or hints[field.name] is int
            if meta.get("minimum") is not None:
                cases.append((name, field.name, str(int(meta["minimum"]) - 1 if integer else meta["minimum"] - 0.5)))
            if meta.get("above") is not None:
                cases.append((name, field.name, str(meta["above"])))
            if meta.get("maximum") is not None:
                cases.append((name, field.name, str(int(meta["maximum"]) + 1 if integer else meta["maximum"] + 0.5)))
    return cases


CASES = _out_of_range()


def test_the_fuzz_covers_every_command_with_bounded_flags():
    print(f"\n{len(CASES)} out-of-range flag values over {len({c[0] for c in CASES})} commands")
    assert len(CASES) > 100


@pytest.mark.parametrize("command, field, value", CASES, ids=[f"{c}--{f}={v}" for c, f, v in CASES])
def test_out_of_range_flag_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, command, field, value):
    monkeypatch.chdir(tmp_path)  # nothing may be written, and nowhere near the repo
    assert main([command, "--" + field.replace("_", "-"), value]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and f"--{field.replace('_', '-')}" in err[0] and "Traceback" not in captured.err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - set(UNBOUNDED)))
def test_every_numeric_field_declares_a_range(command):
    config = importlib.import_module(COMMANDS[command].module).CONFIG
    hints = typing.get_type_hints(config)
    missing = [f.name for f in dataclasses.fields(config) if _numeric(hints[f.name])
               and all(f.metadata.get(k) is None for k in ("minimum", "maximum", "above", "check"))]
    assert not missing, f"{command}: give these fields a range in arg(...): {missing}"
