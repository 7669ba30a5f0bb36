"""Issue 15: every bounded flag of every command, fed a value just outside its declared range, is refused in
one line with exit code 2 before the command runs; and every numeric field of the training, collection,
evaluation and export commands declares a range (so a new flag cannot silently skip the check).

Hardening: every float flag refuses ``inf``, ``nan``, ``-inf`` and ``1e12``, every int flag ``10**12``, and every
numeric field declares a finite ``maximum`` (``--lr inf`` used to train a NaN model to the end)."""

from __future__ import annotations

import dataclasses
import importlib
import typing

import pytest

from scripts.cli import COMMANDS, main

# Numeric fields without a range, and why (everything else numeric must declare one).
UNBOUNDED = {
    "bench": "benchmark knobs (trainers/bench/config.py) are checked by the benchmarks themselves",
    "bench-finetune": "benchmark knobs are checked by the benchmark itself",
    "checkpoints": "lists the shipped models; no numeric options",
}


def _numeric(tp) -> bool:
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    return args[0] in (int, float) and args[0] is not bool


def _scalar(tp) -> type | None:
    """``int`` / ``float`` for a (possibly optional) numeric field, ``None`` for anything else (lists included)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) is not list else [list]
    base = (args or [tp])[0]
    return base if base in (int, float) else None


def _numeric_fields(kind: type, *, bounded_only: bool) -> list[tuple[str, str]]:
    """(command, field) for every field of type ``kind``; ``bounded_only`` leaves out the exempt commands."""
    out = []
    for name, command in COMMANDS.items():
        if bounded_only and name in UNBOUNDED:
            continue
        config = importlib.import_module(command.module).CONFIG
        hints = typing.get_type_hints(config)
        out += [(name, f.name) for f in dataclasses.fields(config) if _scalar(hints[f.name]) is kind]
    return out


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
# Non-finite floats are refused for every command; the huge values where each field declares its maximum.
HUGE = ([(c, f, v) for c, f in _numeric_fields(float, bounded_only=False) for v in ("inf", "nan", "-inf")]
        + [(c, f, "1e12") for c, f in _numeric_fields(float, bounded_only=True)]
        + [(c, f, str(10**12)) for c, f in _numeric_fields(int, bounded_only=True)])


def test_the_fuzz_covers_every_command_with_bounded_flags():
    print(f"\n{len(CASES)} out-of-range flag values over {len({c[0] for c in CASES})} commands")
    assert len(CASES) > 100


@pytest.mark.parametrize("command, field, value", CASES + HUGE, ids=[f"{c}--{f}={v}" for c, f, v in CASES + HUGE])
def test_out_of_range_flag_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, command, field, value):
    monkeypatch.chdir(tmp_path)  # nothing may be written, and nowhere near the repo
    # `--flag=-inf`: argparse reads a separate "-inf" as an option name, a usage error before any check
    assert main([command, f"--{field.replace('_', '-')}={value}"]) == 2
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


def test_the_fuzz_tries_huge_and_non_finite_values_of_every_numeric_flag():
    floats, ints = _numeric_fields(float, bounded_only=True), _numeric_fields(int, bounded_only=True)
    print(f"\n{len(HUGE)} huge / non-finite values: {len(floats)} float and {len(ints)} int flags")
    assert len(floats) > 40 and len(ints) > 130


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - set(UNBOUNDED)))
def test_every_numeric_field_declares_a_maximum(command):
    """A finite ceiling on every count, width, rate and scale: ``--steps 10**12`` is a typo, not a plan. A list of
    numbers (``--k-schedule``) is checked by its ``check``, which must bound it as well."""
    config = importlib.import_module(COMMANDS[command].module).CONFIG
    hints = typing.get_type_hints(config)
    missing = [f.name for f in dataclasses.fields(config) if _scalar(hints[f.name]) and f.metadata.get("maximum") is None]
    lists = [f.name for f in dataclasses.fields(config) if _numeric(hints[f.name]) and not _scalar(hints[f.name])
             and f.metadata.get("check") is None]
    assert not missing and not lists, f"{command}: give these fields a maximum in arg(...): {missing + lists}"


@pytest.mark.parametrize("argv, message", [
    (["mbpo", "--lr=inf"], "wm mbpo: error: --lr must be a finite number, got inf"),
    (["pets", "--lr=nan"], "wm pets: error: --lr must be a finite number, got nan"),
    (["mbpo", "--k-schedule=0,10000000000000,1,1"], "wm mbpo: error: --k-schedule [0, 10000000000000, 1, 1] wants b <= "),
    (["mbpo", "--k-schedule=0,5000,1,100000"], "wm mbpo: error: --k-schedule [0, 5000, 1, 100000] wants b <= "),
])
def test_the_refusal_says_what_would_be_right(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().startswith(message)
