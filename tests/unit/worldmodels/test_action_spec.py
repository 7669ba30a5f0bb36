"""ActionSpec.from_dict accepts exactly what to_dict writes; anything else is a one-line ValueError, never a
spec that trains on 10**7 one-hot actions or an int("3")."""

from __future__ import annotations

import math

import pytest

from worldmodels.envs.spaces import ActionSpec

GOOD = [ActionSpec("discrete", 3), ActionSpec("discrete", 4096), ActionSpec("continuous", 2, (-1.0, 0.0), (1.0, 2.0)),
        ActionSpec("continuous", 1, (-math.inf,), (math.inf,))]  # an env's unbounded Box: policies treat it as [-1, 1]


@pytest.mark.parametrize("spec", GOOD, ids=str)
def test_round_trip(spec):
    assert ActionSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("values, words", [
    ({"kind": "discrete", "dim": 10**30}, "dim must be an integer in [1, 4096]"),
    ({"kind": "discrete", "dim": 10**7}, "dim must be an integer in [1, 4096]"),
    ({"kind": "continuous", "dim": 1025, "low": [0.0] * 1025, "high": [1.0] * 1025}, "[1, 1024]"),
    ({"kind": "discrete", "dim": True}, "(bool)"),
    ({"kind": "discrete", "dim": "3"}, "(str)"),
    ({"kind": "discrete", "dim": 3.0}, "(float)"),
    ({"kind": "discrete", "dim": 0}, "dim must be"),
    ({"kind": "discrete", "dim": -2}, "dim must be"),
    ({"kind": "discrete"}, "dim must be"),
    ({"kind": "box", "dim": 3}, "kind must be"),
    ({"kind": 1, "dim": 3}, "kind must be"),
    ({"dim": 3}, "kind must be"),
    ([3], "kind must be"),
    ({"kind": "continuous", "dim": 2, "low": [math.nan, 0.0], "high": [1.0, 1.0]}, "not NaN"),
    ({"kind": "continuous", "dim": 2, "low": [0.0, 0.0], "high": [1.0, "1"]}, "not NaN"),
    ({"kind": "continuous", "dim": 2, "low": [0.0, True], "high": [1.0, 1.0]}, "not NaN"),
    ({"kind": "continuous", "dim": 1, "low": [10**400], "high": [10**401]}, "not NaN"),
    ({"kind": "continuous", "dim": 2, "low": [0.0, 2.0], "high": [1.0, 1.0]}, "low <= high"),
    ({"kind": "continuous", "dim": 2, "low": [0.0, 0.0], "high": []}, "both be given"),
    ({"kind": "continuous", "dim": 2, "low": [0.0], "high": [1.0]}, "one bound per dimension"),
    ({"kind": "continuous", "dim": 2, "low": "ab", "high": "cd"}, "list of numbers"),
    ({"kind": "discrete", "dim": 3, "low": [0.0, 0.0, 0.0], "high": [1.0, 1.0, 1.0]}, "empty for discrete"),
])
def test_anything_to_dict_could_not_write_is_one_line(values, words):
    with pytest.raises(ValueError) as raised:
        ActionSpec.from_dict(values)
    message = str(raised.value)
    assert words in message and "\n" not in message, message
