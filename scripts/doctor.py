"""Check an env before training on it: gymnasium 1.x API, spaces, rgb_array rendering, seeding, step speed.

``wm doctor --env ID`` (``ID`` may be ``package.module:EnvId``) prints one OK / FAIL line per check
(:mod:`worldmodels.envs.doctor`) and ends with the exact commands that train on the env; it exits 1
when any check fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from worldmodels.config import arg
from worldmodels.envs.doctor import diagnose, train_commands
from worldmodels.envs.toy import register_toy_envs


@dataclass
class DoctorConfig:
    env: str = arg("worldmodels/Catch-v0", "gymnasium env id to check, or package.module:EnvId (imports the module first)")


CONFIG = DoctorConfig


def run(config: DoctorConfig) -> dict:
    """Print the checks; returns them with ``exit_code`` 1 when any failed (``wm`` exits with it)."""
    register_toy_envs()
    checks = diagnose(config.env)
    for check in checks:
        print(check)
    healthy = all(check.ok for check in checks)
    if healthy:
        commands = train_commands(config.env)
        print(f"{config.env} is ready to train on. World Models, then Dreamer:")
        for command in commands:
            print(f"  {command}")
    else:
        print(f"{config.env} is not ready: fix the FAIL line(s) above, then rerun: wm doctor --env {config.env}")
    return {"env": config.env, "ok": healthy, "exit_code": 0 if healthy else 1,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]}
