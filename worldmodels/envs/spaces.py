"""One description of an action space shared by envs, the episode store and the models.

Models always see actions as float vectors of width ``ActionSpec.dim``:
one-hot for discrete spaces, the raw (clipped) vector for continuous (Box) spaces.
The store keeps the env's own encoding: int64 ``(L,)`` for discrete,
float32 ``(L, dim)`` for continuous.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch


@dataclass(frozen=True)
class ActionSpec:
    """``kind`` is ``"discrete"`` or ``"continuous"``; ``dim`` is the model-side width."""

    kind: str
    dim: int
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()

    @property
    def discrete(self) -> bool:
        return self.kind == "discrete"

    @classmethod
    def from_space(cls, space: gym.Space) -> "ActionSpec":
        if isinstance(space, gym.spaces.Discrete):
            return cls("discrete", int(space.n))
        if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            return cls("continuous", int(space.shape[0]), tuple(map(float, space.low)), tuple(map(float, space.high)))
        raise ValueError(f"unsupported action space {space}; worldmodels supports Discrete and 1-D Box actions")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ActionSpec":
        return cls(values["kind"], int(values["dim"]), tuple(values.get("low", ())), tuple(values.get("high", ())))

    def store_dtype(self) -> np.dtype:
        return np.dtype(np.int64) if self.discrete else np.dtype(np.float32)

    def store_shape(self, length: int) -> tuple[int, ...]:
        return (length,) if self.discrete else (length, self.dim)

    def to_model(self, actions: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Stored actions ``(...,)`` int or ``(..., dim)`` float -> model actions ``(..., dim)`` float32."""
        actions = torch.as_tensor(actions)
        if self.discrete:
            return torch.nn.functional.one_hot(actions.long(), self.dim).float()
        return actions.float()

    def to_env(self, model_actions: torch.Tensor) -> np.ndarray:
        """Model actions ``(N, dim)`` -> env actions: argmax index ``(N,)`` or clipped vector ``(N, dim)``."""
        if self.discrete:
            return model_actions.argmax(-1).cpu().numpy().astype(np.int64)
        low = np.asarray(self.low, dtype=np.float32)
        high = np.asarray(self.high, dtype=np.float32)
        return np.clip(model_actions.detach().float().cpu().numpy(), low, high)
