"""Comparing run records (eval.json, results.json) of a killed and an uninterrupted run."""

from __future__ import annotations

from typing import Any

# Wall-clock fields of the plain-loop runs' records (wm pets / mbpo / tdmpc): the only ones allowed to differ.
LOOP_TIMING = frozenset({"wall_s", "train_s", "train_seconds", "plan_ms_per_action", "train_plan_ms_per_action",
                         "seconds"})


def without_keys(value: Any, keys: frozenset[str] = LOOP_TIMING) -> Any:
    """``value`` (JSON: dicts, lists, scalars) with every dict entry named in ``keys`` dropped, at any depth."""
    if isinstance(value, dict):
        return {k: without_keys(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [without_keys(v, keys) for v in value]
    return value
