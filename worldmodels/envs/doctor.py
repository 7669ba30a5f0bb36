"""``wm doctor``: check that an env can be trained on, one OK / FAIL line per property.

The checks, in order (each later one needs the earlier ones): the id resolves (``package.module:EnvId``
imports the module), the env constructs, its spaces are supported (Discrete or 1-D Box actions;
``(H, W, 3)`` uint8 image observations, or ``render_mode="rgb_array"`` frames), ``reset`` and ``step``
follow the gymnasium 1.x API (``(obs, info)`` and ``(obs, reward, terminated, truncated, info)``),
observations match the declared space, the same seed and actions give the same observations, and
:func:`worldmodels.envs.make` serves it as ``(64, 64, 3)`` frames at a measured step speed. A check
that raises is a FAIL naming the exception, never a traceback.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from worldmodels.envs.factory import creator_metadata, make, registered_id, registry_spec
from worldmodels.envs.spaces import ActionSpec
from worldmodels.envs.wrappers import is_image_space

DETERMINISM_STEPS = 20
SPEED_SECONDS = 1.0  # step the env for about this long (or SPEED_STEPS steps) to measure its speed
SPEED_STEPS = 500


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


class _Failed(Exception):
    """A check's own verdict (as opposed to an exception the env raised)."""


def _first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array {value.dtype} {value.shape}"
    return type(value).__name__


def _rollout(env: gym.Env, seed: int, steps: int) -> list[np.ndarray]:
    """Observations of ``steps`` steps from ``reset(seed=seed)``, actions drawn from an action space seeded the same."""
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    frames = [np.asarray(obs).copy()]
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        frames.append(np.asarray(obs).copy())
        if terminated or truncated:
            break
    return frames


class _Doctor:
    """Runs the checks on one env id; ``checks`` collects their lines."""

    def __init__(self, env_id: str) -> None:
        self.env_id, self.checks = env_id, []
        self.env: gym.Env | None = None
        self.image_obs = False

    def check(self, name: str, fn: Callable[[], str]) -> bool:
        try:
            self.checks.append(Check(name, True, fn()))
        except _Failed as failed:
            self.checks.append(Check(name, False, str(failed)))
        except Exception as error:  # noqa: BLE001 - a user's env may fail in any way: one line, keep going
            self.checks.append(Check(name, False, f"raised {_first_line(error)}"))
        return self.checks[-1].ok

    def registry(self) -> str:
        spec = registry_spec(self.env_id)
        return f"{registered_id(self.env_id)!r} registered, entry point {spec.entry_point}"

    def construct(self) -> str:
        modes = creator_metadata(self.env_id).get("render_modes")
        # The env checker's warnings would repeat what the checks below report, as noise.
        if modes is None or "rgb_array" in modes:
            self.env = gym.make(self.env_id, render_mode="rgb_array", disable_env_checker=True)
            return "gymnasium.make(..., render_mode='rgb_array') works"
        self.env = gym.make(self.env_id, disable_env_checker=True)
        return f"gymnasium.make works (metadata render_modes {modes}: no 'rgb_array')"

    def spaces(self) -> str:
        observation, action = self.env.observation_space, self.env.action_space
        try:
            spec = ActionSpec.from_space(action)
        except ValueError:
            raise _Failed(f"action space {action} is not supported; use Discrete(n) or a 1-D Box") from None
        self.image_obs = is_image_space(observation)
        kind = "image observations, used as they are" if self.image_obs else "not images: frames come from render()"
        return f"observation {observation} ({kind}); action {action} ({spec.kind}, {spec.dim} model dims)"

    def reset_api(self) -> str:
        out = self.env.unwrapped.reset(seed=0)  # the env's own return value, before gymnasium's wrappers unpack it
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
            raise _Failed(f"reset() returned {_describe(out)}; gymnasium 1.x reset(seed=...) returns (obs, info: dict)")
        return self._obs_matches(out[0], "reset")

    def step_api(self) -> str:
        out = self.env.unwrapped.step(self.env.action_space.sample())
        if not (isinstance(out, tuple) and len(out) == 5):
            size = len(out) if isinstance(out, tuple) else _describe(out)
            raise _Failed(f"step() returned a {size}-tuple; gymnasium 1.x step returns "
                          "(obs, reward, terminated, truncated, info) with separate terminated/truncated bools")
        _, reward, terminated, truncated, info = out
        if not isinstance(reward, (int, float, np.number)) or not isinstance(terminated, (bool, np.bool_)) \
                or not isinstance(truncated, (bool, np.bool_)) or not isinstance(info, dict):
            raise _Failed(f"step() types are reward {type(reward).__name__}, terminated {type(terminated).__name__}, "
                          f"truncated {type(truncated).__name__}, info {type(info).__name__}; expected float, bool, bool, dict")
        return self._obs_matches(out[0], "step")

    def _obs_matches(self, obs: Any, where: str) -> str:
        space = self.env.observation_space
        if isinstance(space, gym.spaces.Box):
            obs = np.asarray(obs)
            if obs.shape != space.shape or obs.dtype != space.dtype:
                raise _Failed(f"{where}() observation is {obs.dtype} {obs.shape} but the space declares "
                              f"{space.dtype} {space.shape}")
        return f"{where}() follows the gymnasium 1.x API, observation matches its space"

    def render(self) -> str:
        if self.image_obs:
            return "not needed: the observation already is an (H, W, 3) uint8 image"
        if self.env.render_mode != "rgb_array":
            raise _Failed("the env does not accept render_mode='rgb_array' and its observation is not an image; "
                          "add 'rgb_array' to metadata['render_modes'] and return (H, W, 3) uint8 from render()")
        frame = self.env.render()
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] not in (3, 4):
            raise _Failed(f"render() returned {_describe(frame)}; expected an (H, W, 3) uint8 array")
        return f"render() gives {frame.dtype} {frame.shape} frames"

    def determinism(self) -> str:
        first = _rollout(self.env, 123, DETERMINISM_STEPS)
        second = _rollout(self.env, 123, DETERMINISM_STEPS)
        for index, (a, b) in enumerate(zip(first, second)):
            if a.shape != b.shape or not np.array_equal(a, b):
                raise _Failed(f"two reset(seed=123) runs with the same actions differ at step {index}; draw all "
                              "randomness from self.np_random (seeded by super().reset(seed=seed))")
        if len(first) != len(second):
            raise _Failed(f"two reset(seed=123) runs with the same actions lasted {len(first)} and {len(second)} steps")
        return f"same seed + same actions -> same observations ({len(first) - 1} steps)"

    def speed(self) -> str:
        env = make(self.env_id, image_size=64, seed=0)
        try:
            obs, _ = env.reset()
            if obs.shape != (64, 64, 3) or obs.dtype != np.uint8:
                raise _Failed(f"worldmodels.envs.make gave {obs.dtype} {obs.shape}, expected uint8 (64, 64, 3)")
            steps, start = 0, time.perf_counter()
            while steps < SPEED_STEPS and time.perf_counter() - start < SPEED_SECONDS:
                _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                steps += 1
                if terminated or truncated:
                    env.reset()
            rate = steps / (time.perf_counter() - start)
        finally:
            env.close()
        return f"{rate:,.0f} agent steps/s as 64x64 frames through worldmodels.envs.make (resets included)"


def diagnose(env_id: str) -> list[Check]:
    """Every check's line for ``env_id``; checks after a failed prerequisite are not run."""
    doctor = _Doctor(env_id)
    try:
        if doctor.check("env id", doctor.registry) and doctor.check("construct", doctor.construct):
            if doctor.check("spaces", doctor.spaces):
                api = all([doctor.check("reset", doctor.reset_api), doctor.check("step", doctor.step_api)])
                rendered = doctor.check("render_mode='rgb_array'", doctor.render)
                if api and rendered and doctor.check("seeding", doctor.determinism):
                    doctor.check("step speed", doctor.speed)
    finally:
        if doctor.env is not None:
            doctor.env.close()
    return doctor.checks


def train_commands(env_id: str) -> list[str]:
    """The commands that train on ``env_id`` (World Models, then Dreamer)."""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", env_id.split(":")[-1]).strip("-").lower()
    env = shlex.quote(env_id)
    return [f"wm worldmodels --env {env} --preset tiny --run-dir runs/{slug}-worldmodels",
            f"wm dreamer --env {env} --preset tiny --run-dir runs/{slug}-dreamer"]
