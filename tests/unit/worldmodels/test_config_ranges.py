"""Issue 15 item 9: every config field's range is declared once (``arg(minimum=, maximum=, above=, check=)``)
and :func:`build_config` refuses a value outside it in one line, before anything runs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from worldmodels.config import ConfigError, arg, build_config, check_config


@dataclass
class Toy:
    steps: int = arg(10, "steps", minimum=1)
    rate: float = arg(0.5, "rate", above=0, maximum=1)
    warmup: int = arg(2, "warmup", minimum=0, check=lambda c: None if c.warmup < c.steps else "must be below --steps")
    limit: int | None = arg(None, "optional cap", minimum=1)


@pytest.mark.parametrize("flags, message", [
    ({"steps": 0}, "--steps must be a positive integer, got 0"),
    ({"rate": 0.0}, "--rate must be a number > 0, got 0.0"),
    ({"rate": 1.5}, "--rate must be a number <= 1, got 1.5"),
    ({"rate": float("nan")}, "--rate must be a finite number, got nan"),
    ({"rate": float("-inf")}, "--rate must be a finite number, got -inf"),
    ({"warmup": 10}, "--warmup 10 must be below --steps"),
    ({"limit": 0}, "--limit must be a positive integer, got 0"),
])
def test_out_of_range_is_one_line(flags, message):
    with pytest.raises(ConfigError) as error:
        build_config(Toy, flags)
    assert str(error.value) == message


def test_in_range_and_unset_optional_pass():
    assert build_config(Toy, {"steps": 3, "limit": None}).steps == 3
    check_config(Toy())  # the defaults are valid


def test_a_preset_outside_the_range_is_refused_too():
    with pytest.raises(ConfigError, match="--steps"):
        build_config(Toy, presets={"bad": {"steps": -1}}, preset="bad")
