"""Typed options for :func:`worldmodels.envs.make` and the one error type its users see.

Atari defaults follow the evaluation protocol of Machado et al. 2018 ("Revisiting the
Arcade Learning Environment", Sec. 5): frameskip 4, sticky actions with probability
0.25, the minimal action set, no life-loss signal, and episodes capped at 108,000
emulator frames (27,000 agent steps at frameskip 4). Sticky actions already make the
start state stochastic, so ``noop_max`` defaults to 0 (no random no-op starts).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from worldmodels.config import arg

ATARI_MAX_EPISODE_FRAMES = 108_000  # Machado et al. 2018: 30 minutes of play at 60 Hz

# Named ALE protocols as EnvOptions overrides. "machado" is the default above (Machado et al. 2018, Sec. 5);
# "atari100k" is DreamerV3's Atari-100k env (its configs.yaml env.atari100k: sticky False, noops 30, max-pooling
# of the last two frames; the minimal action set and no life signal, as by default).
ATARI_PROTOCOLS: dict[str, dict[str, Any]] = {
    "machado": {},
    "atari100k": {"sticky_action_prob": 0.0, "noop_max": 30, "maxpool": True},
}


def protocol_of(options: dict[str, Any]) -> str:
    """The :data:`ATARI_PROTOCOLS` name whose settings a model's saved ``env_options`` hold (``machado`` if none)."""
    for name, settings in ATARI_PROTOCOLS.items():
        if settings and all(options.get(key) == value for key, value in settings.items()):
            return name
    return "machado"


class EnvError(ValueError):
    """An env request that cannot be served; the message is one line and says what would work."""


@dataclass(frozen=True)
class EnvOptions:
    """Options shared by single and vector envs; ``make(env_id, **asdict(options))`` round-trips."""

    image_size: int = arg(64, "side of the square uint8 RGB observation (pixels, >= 8)")
    frameskip: Optional[int] = arg(None, "agent step = this many env steps, rewards summed; None = 4 for ALE (Machado et al. 2018), 1 otherwise")
    sticky_action_prob: float = arg(0.25, "ALE only: probability the emulator repeats the previous action each frame (Machado et al. 2018)")
    noop_max: int = arg(0, "ALE only: reset with up to this many no-op steps; 0 because sticky actions already randomise starts")
    episodic_life: bool = arg(False, "ALE only: signal terminated on every life loss (training trick; off for evaluation)")
    full_action_space: bool = arg(False, "ALE only: use all 18 actions instead of the game's minimal action set")
    maxpool: bool = arg(False, "ALE only: max-pool the last two frames of each frameskip (DQN flicker fix); off = last frame (Machado)")
    max_episode_steps: Optional[int] = arg(None, "truncate after this many agent steps; None = 27000 for ALE (108000 frames), the registered limit otherwise")
    carracing_discrete: bool = arg(False, "CarRacing only: gymnasium's 5 discrete actions (noop, left, right, gas, brake) instead of Box(3)")
    vector_backend: str = arg("sync", "non-ALE vector envs: 'sync' (one process) or 'async' (one process per env)", choices=("sync", "async"))

    def validate(self) -> "EnvOptions":
        """Raise a one-line :class:`EnvError` for a value that cannot be right; return ``self``."""
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 8:
            raise EnvError(f"image_size must be an int >= 8 (e.g. 64), got {size!r}")
        if self.frameskip is not None and (isinstance(self.frameskip, bool) or not isinstance(self.frameskip, int) or self.frameskip < 1):
            raise EnvError(f"frameskip must be a positive int or None, got {self.frameskip!r}")
        if not 0.0 <= float(self.sticky_action_prob) <= 1.0:
            raise EnvError(f"sticky_action_prob must lie in [0, 1], got {self.sticky_action_prob!r}")
        if not isinstance(self.noop_max, int) or self.noop_max < 0:
            raise EnvError(f"noop_max must be an int >= 0, got {self.noop_max!r}")
        if self.max_episode_steps is not None and (not isinstance(self.max_episode_steps, int) or self.max_episode_steps < 1):
            raise EnvError(f"max_episode_steps must be a positive int or None, got {self.max_episode_steps!r}")
        if self.vector_backend not in ("sync", "async"):
            raise EnvError(f"vector_backend must be 'sync' or 'async', got {self.vector_backend!r}")
        return self


def resolve_options(image_size: Any, options: dict[str, Any]) -> EnvOptions:
    """Build validated :class:`EnvOptions`; unknown option names are a one-line error."""
    names = {f.name for f in dataclasses.fields(EnvOptions)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise EnvError(f"unknown env option(s) {unknown}; known: {sorted(names - {'image_size'})}")
    return EnvOptions(image_size=image_size, **options).validate()
