"""The `wm` command: every subcommand's --help lists every config field with its help line."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from scripts.cli import COMMANDS, main
from worldmodels.config import ConfigError, build_config


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_subcommand_help_lists_every_option(name, capsys):
    with pytest.raises(SystemExit):
        main([name, "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    config = importlib.import_module(COMMANDS[name].module).CONFIG
    for field in dataclasses.fields(config):
        assert "--" + field.name.replace("_", "-") in out, f"wm {name} --help misses --{field.name}"
        help_text = field.metadata.get("help")
        assert help_text, f"{config.__name__}.{field.name} has no help line"
        assert " ".join(help_text.split())[:30] in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_presets_only_name_real_fields(name):
    module = importlib.import_module(COMMANDS[name].module)
    for preset in getattr(module, "PRESETS", {}) or {}:
        build_config(module.CONFIG, {}, presets=module.PRESETS, preset=preset)


def test_unknown_preset_is_a_config_error():
    @dataclasses.dataclass
    class Small:
        width: int = 3

    with pytest.raises(ConfigError, match="unknown preset"):
        build_config(Small, {}, presets={"debug": {"width": 1}}, preset="huge")
    with pytest.raises(ConfigError, match="unknown field"):
        build_config(Small, {}, presets={"bad": {"height": 1}}, preset="bad")
