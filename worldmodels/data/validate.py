"""Checks on recorded episodes before they enter an episode store; every problem names episode, field and fix.

Recorded episodes arrive in the TRANSITION layout of gymnasium and Minari (``T`` steps, ``T + 1``
observations)::

    obs[0] --action[0]--> obs[1] --action[1]--> ... --action[T-1]--> obs[T]
              reward[0]              reward[1]                 reward[T-1]
              terminated[0]/truncated[0]   ...    terminated[T-1]/truncated[T-1]  (describe obs[t+1])

    obs (T+1, H, W, 3) uint8   action (T,) int | (T, A) float   reward (T,)   terminated (T,)   truncated (T,)

``reward[t]`` is the reward of taking ``action[t]`` at ``obs[t]``, received on arriving at ``obs[t+1]``.
:func:`to_rows` turns this into the store's row convention (DESIGN.md): ``L = T + 1`` rows, row ``t + 1``
holds ``reward[t]`` and the flags, row 0 holds reward 0, the last row action zeros. The alignment is
checked through the lengths: an episode with as many observations as rewards lost its final
observation (or is already in row layout), and would shift every reward by one step.

:func:`check_episode` returns every :class:`Problem` of one episode; an importer refuses the
whole import when any episode has one, before it writes anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from worldmodels.envs.spaces import ActionSpec

FIELDS = ("obs", "action", "reward", "terminated", "truncated")
MISSING_FLAGS = "terminated/truncated"  # the field named when neither flag ends the episode
# The store keeps rewards and continuous actions as float32: a float64 1e300 would be stored as inf and the
# episode then skipped on every read, so values past float32's range are refused here.
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one field of one episode, and how to fix it."""

    episode: str
    field: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"episode {self.episode}: {self.field}: {self.message}; fix: {self.fix}"


class ImportRefused(ValueError):
    """Some episodes failed validation; nothing was written. ``problems`` holds every one."""

    def __init__(self, problems: list[Problem], episodes: int) -> None:
        self.problems = problems
        bad = len({p.episode for p in problems})
        self.summary = f"refused: {len(problems)} problem(s) in {bad} of {episodes} episode(s), nothing imported"
        super().__init__(f"{self.summary}; first: {problems[0]}")


def _first_row(mask: np.ndarray) -> int:
    return int(np.argwhere(mask)[0][0])


def _check_obs(name: str, obs: np.ndarray, steps: int | None) -> list[Problem]:
    if obs.ndim != 4 or obs.shape[-1] != 3:
        return [Problem(name, "obs", f"shape {obs.shape} is not (T+1, H, W, 3)",
                        "store RGB images, one per step plus the final one (grayscale: np.repeat(obs[..., None], 3, -1))")]
    if obs.shape[1] < 1 or obs.shape[2] < 1:
        return [Problem(name, "obs", f"frames of {obs.shape[1]}x{obs.shape[2]} pixels, shape {obs.shape}",
                        "store frames of at least 1x1 pixels, shape (T+1, H, W, 3)")]
    if obs.dtype != np.uint8:
        hint = "(obs * 255).round().astype(np.uint8) for floats in [0, 1]" if obs.dtype.kind == "f" else "obs.astype(np.uint8)"
        return [Problem(name, "obs", f"dtype {obs.dtype}, expected uint8 pixels in [0, 255]", hint)]
    if steps is not None and obs.shape[0] != steps + 1:
        if obs.shape[0] == steps:
            message = (f"{steps} observations for {steps} rewards; reward[t] is the reward for action[t] at obs[t], "
                       "received at obs[t+1], so an episode of T steps has T+1 observations")
            fix = ("include the final observation (the one returned with the last reward); if these are store rows "
                   "(reward[0] = 0, last action zeros), drop reward[0], terminated[0], truncated[0] and the last action")
        else:
            message, fix = f"{obs.shape[0]} observations for {steps} steps", "save T+1 observations for T steps"
        return [Problem(name, "obs", message, fix)]
    return []


def _check_action(name: str, action: np.ndarray, steps: int, spec: ActionSpec) -> list[Problem]:
    if spec.discrete:
        if action.shape != (steps,) or action.dtype.kind not in "iu":
            return [Problem(name, "action", f"{action.dtype} {action.shape}, expected integer ({steps},) for "
                            f"{spec.dim} discrete actions", "save action indices as np.int64, one per step")]
        outside = (action < 0) | (action >= spec.dim)
        if outside.any():
            row = _first_row(outside)
            return [Problem(name, "action", f"action[{row}] = {int(action[row])} is outside [0, {spec.dim})",
                            "check the action space in dataset.json (kind, dim) or the recorded indices")]
        return []
    if action.shape != (steps, spec.dim) or action.dtype.kind != "f":
        return [Problem(name, "action", f"{action.dtype} {action.shape}, expected float ({steps}, {spec.dim})",
                        "save continuous actions as np.float32 of shape (T, A)")]
    if not np.isfinite(action).all():
        row = _first_row(~np.isfinite(action).all(axis=1))
        return [Problem(name, "action", f"action[{row}] holds {action[row].tolist()} (NaN or inf)",
                        "drop or repair this episode; actions must be finite")]
    if (np.abs(action) > FLOAT32_MAX).any():
        row = _first_row((np.abs(action) > FLOAT32_MAX).any(axis=1))
        return [Problem(name, "action", f"action[{row}] holds {action[row].tolist()}, past float32's range",
                        "actions are stored as float32: scale or clip them into the action space")]
    if spec.low and spec.high:
        outside = ((action < np.asarray(spec.low)) | (action > np.asarray(spec.high))).any(axis=1)
        if outside.any():
            row = _first_row(outside)
            return [Problem(name, "action", f"action[{row}] = {action[row].tolist()} is outside [{list(spec.low)}, "
                            f"{list(spec.high)}]", "clip to the action space (the env executes clipped actions)")]
    return []


def _check_flags(name: str, arrays: Mapping[str, np.ndarray], steps: int) -> list[Problem]:
    problems = []
    for field in ("terminated", "truncated"):
        flags = arrays[field]
        if flags.shape != (steps,) or not (flags.dtype == bool or (flags.dtype.kind in "iu" and np.isin(flags, (0, 1)).all())):
            problems.append(Problem(name, field, f"{flags.dtype} {flags.shape}, expected bool ({steps},)",
                                    f"save {field} as np.bool_, one flag per step"))
        elif steps > 1 and flags[:-1].any():
            row = _first_row(flags[:-1])
            problems.append(Problem(name, field, f"{field}[{row}] is set before the last step ({steps - 1})",
                                    f"one file per episode: split this one after step {row}"))
    if not problems and not (arrays["terminated"][-1] or arrays["truncated"][-1]):
        problems.append(Problem(name, MISSING_FLAGS, "neither flag is set on the last step",
                                "set terminated[-1] = True if the env ended the episode, truncated[-1] = True if the "
                                "recording stopped (time limit, end of logging); or import with --mark-truncated"))
    return problems


def check_episode(name: str, arrays: Mapping[str, np.ndarray], spec: ActionSpec) -> list[Problem]:
    """Every problem of one episode in the transition layout (module docstring); empty when it can be imported."""
    missing = [field for field in FIELDS if field not in arrays]
    if missing:
        return [Problem(name, field, "missing", f"save it: np.savez(path, {', '.join(f'{f}=...' for f in FIELDS)})")
                for field in missing]
    arrays = {field: np.asarray(arrays[field]) for field in FIELDS}
    reward = arrays["reward"]
    if reward.ndim != 1 or reward.dtype.kind not in "fiu" or len(reward) < 1:
        problems = [Problem(name, "reward", f"{reward.dtype} {reward.shape}, expected float (T,) with T >= 1",
                            "save one float reward per step, np.float32")]
        return problems + _check_obs(name, arrays["obs"], None)
    steps = len(reward)
    problems = _check_obs(name, arrays["obs"], steps)
    too_big = np.abs(reward.astype(np.float64)) > FLOAT32_MAX  # also true for inf; NaN is not finite below
    if not np.isfinite(reward).all() or too_big.any():
        row = _first_row(~np.isfinite(reward) | too_big)
        problems.append(Problem(name, "reward", f"reward[{row}] = {float(reward[row])} (NaN, inf or past float32's "
                                f"range, |r| <= {FLOAT32_MAX:.3g})", "drop or repair this episode, or rescale "
                                "the rewards; they are stored as float32 and must be finite"))
    problems += _check_action(name, arrays["action"], steps, spec)
    problems += _check_flags(name, arrays, steps)
    return problems


def check_import_spec(spec: ActionSpec, where: str) -> None:
    """A dataset's continuous action space needs finite float32 bounds: every action is checked against them.

    (An env's Box may be unbounded, which :meth:`ActionSpec.from_dict` allows; recorded data is not imported
    without the bounds its actions must lie in, and infinite ones check nothing.)
    """
    bounds = (*spec.low, *spec.high)
    if not spec.discrete and not (bounds and all(math.isfinite(b) and abs(b) <= FLOAT32_MAX for b in bounds)):
        raise ValueError(f"{where}: continuous action_spec needs finite low and high, one per dimension and within "
                         f"float32 (|bound| <= {FLOAT32_MAX:.3g}), got low {list(spec.low)} high {list(spec.high)}")


def check_frame_shape(name: str, obs: np.ndarray, expected: tuple[int, ...]) -> list[Problem]:
    """Frames of every episode share the store's ``(H, W, 3)``."""
    if tuple(obs.shape[1:]) != tuple(expected):
        return [Problem(name, "obs", f"frames are {tuple(obs.shape[1:])}, earlier episodes {tuple(expected)}",
                        "import with --image-size N to resize every frame to N x N")]
    return []


def to_rows(arrays: Mapping[str, np.ndarray], spec: ActionSpec) -> dict[str, np.ndarray]:
    """Transition layout (``T`` steps) -> the store's ``L = T + 1`` rows (DESIGN.md row convention)::

        transition  t:   obs[t]  action[t]  reward[t]  terminated[t]      (reward/flags describe obs[t+1])
        row         t:   obs[t]  action[t]  reward[t-1] terminated[t-1]   (row 0: reward 0, flags False;
                                                                            last row: action zeros)
    """
    obs = np.asarray(arrays["obs"])
    action = np.asarray(arrays["action"]).astype(spec.store_dtype())
    return {
        "obs": obs,  # (L, H, W, 3) uint8
        "action": np.concatenate([action, np.zeros_like(action[:1])]),  # (L,) or (L, A)
        "reward": np.concatenate([[0.0], np.asarray(arrays["reward"], dtype=np.float64)]).astype(np.float32),  # (L,)
        "terminated": np.concatenate([[False], np.asarray(arrays["terminated"], dtype=bool)]),  # (L,)
        "truncated": np.concatenate([[False], np.asarray(arrays["truncated"], dtype=bool)]),  # (L,)
    }
