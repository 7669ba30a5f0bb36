"""Issue 14 item 6: ``--device``, ``--env`` and ``--threads`` are spelled the same on every command (the old spellings
``--accelerator`` and ``--env-id`` stay as aliases), and ``--help`` shows the defaults after the preset."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from scripts.cli import COMMANDS, main

# Commands without one of the shared flags, and why; every other command must have all three.
NO_DEVICE = {"collect": "random policy, no model", "checkpoints": "lists files", "serve-load": "an HTTP client",
             "import": "validates and copies arrays", "doctor": "checks an env, no model",
             "atari-table": "reads finished runs' JSON files"}
NO_ENV = {"checkpoints": "lists files", "serve-load": "an HTTP client", "atari-table": "one row per run's own env",
          "export": "measures on the model's own env", "remeasure": "measures on the model's own env"}
NO_THREADS = NO_DEVICE


def _fields(command: str) -> set[str]:
    return {f.name for f in dataclasses.fields(importlib.import_module(COMMANDS[command].module).CONFIG)}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_shared_flags_are_spelled_the_same(command):
    fields = _fields(command)
    for name, exempt in (("device", NO_DEVICE), ("env", NO_ENV), ("threads", NO_THREADS)):
        assert (name in fields) == (command not in exempt), f"wm {command}: --{name} {'unexpected' if name in fields else 'missing'}"
    assert not fields & {"accelerator", "env_id"}, f"wm {command}: an old spelling is a field again"


def test_old_spellings_are_aliases(capsys):
    assert main(["dreamer", "--accelerator", "cpu", "--print-config"]) == 0
    assert '"device": "cpu"' in capsys.readouterr().out
    assert main(["bench", "--env-id", "CartPole-v1", "--print-config"]) == 0
    assert '"env": "CartPole-v1"' in capsys.readouterr().out


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_help_shows_the_defaults_after_the_preset(capsys):
    # worldmodels presets: cpu has vae_steps 4000 and z_dim 32; tiny (the default preset) 1200 and 16.
    cpu = _help(["worldmodels", "--preset", "cpu"], capsys)
    assert "(defaults with --preset cpu)" in cpu and "V optimiser steps (default: 4000" in cpu
    assert "V optimiser steps (default: 1200" in _help(["worldmodels", "--preset=tiny"], capsys)
    assert "V optimiser steps (default: 1200" in _help(["worldmodels"], capsys)  # DEFAULT_PRESET = tiny
    assert "chunk length (T) (default: 8" in _help(["dreamer", "--preset", "debug"], capsys)  # debug: seq_len 8
    assert "(defaults with" not in _help(["evaluate"], capsys)  # no presets: the field defaults


def test_the_debug_preset_of_dreamer_has_a_debug_budget(capsys):
    """Issue 25 item 5: `wm dreamer --preset debug` trained for the field default, 100,000 agent steps (hours on 2
    cores; e99b721). Its own budget now: 400 agent steps, about half a minute of a quiet 2-core machine."""
    import json

    assert main(["dreamer", "--preset", "debug", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 400


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - set(NO_THREADS)))
def test_threads_has_one_type_and_one_check_everywhere(command, capsys):
    """Issue 25 item 5: `--threads` was an int on one command (`wm worldmodels --threads auto` was refused as
    'invalid int value') and unchecked text elsewhere. Now every command takes 'auto' and refuses garbage in one line."""
    field = next(f for f in dataclasses.fields(importlib.import_module(COMMANDS[command].module).CONFIG)
                 if f.name == "threads")
    assert field.type in (str, "str"), f"wm {command}: --threads is {field.type}"
    assert main([command, "--threads", "auto", "--print-config"]) == 0
    capsys.readouterr()
    assert main([command, "--threads", "two", "--print-config"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert errors == [f"wm {command}: error: --threads 'two' must be 'auto' or an integer from 0 to 4096"
                      + (" (or empty: the preset's)" if command in ("finetune", "bench-finetune") else "")], errors
