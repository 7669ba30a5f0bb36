"""One description of an action space shared by envs, the episode store and the models.

Models always see actions as float vectors of width ``ActionSpec.dim``:
one-hot for discrete spaces, the raw (clipped) vector for continuous (Box) spaces.
The store keeps the env's own encoding: int64 ``(L,)`` for discrete,
float32 ``(L, dim)`` for continuous. :func:`check_fits` is the one check that an env's spaces are a model's.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch


# The widest action spaces a spec may declare. ``dim`` is the width of every model's action input (one-hot for
# discrete) and of the actor's output, so layers are sized by it: real spaces are far below (Atari 18 actions,
# MuJoCo humanoid 17 dims), and a dataset.json of dim 10**7 made training allocate 6.6 GB before it failed.
MAX_DIM = {"discrete": 4096, "continuous": 1024}


def _bounds(values: Any, name: str, dim: int, kind: str) -> tuple[float, ...]:
    """``low`` or ``high`` of a spec dict: empty, or ``dim`` real numbers (continuous only), none NaN.

    Infinite bounds stay allowed here: an env's Box may be unbounded (:func:`worldmodels.policies.box_bounds`
    treats such dimensions as [-1, 1]), and its checkpoints record them.
    """
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"action_spec {name} must be a list of numbers, got {values!r}")
    if values and (kind == "discrete" or len(values) != dim):
        raise ValueError(f"action_spec {name} must be empty for discrete actions and list one bound per "
                         f"dimension ({dim}) for continuous ones, got {len(values)} for {kind}")
    bounds = []
    for value in values:
        try:
            bound = math.nan if isinstance(value, bool) or not isinstance(value, numbers.Real) else float(value)
        except OverflowError:  # an int past float range, e.g. 10**400
            bound = math.nan
        if math.isnan(bound):
            raise ValueError(f"action_spec {name} must hold numbers (not NaN), got {value!r}")
        bounds.append(bound)
    return tuple(bounds)


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
        """The spec a ``to_dict`` wrote (store.json, dataset.json, a checkpoint's config); a one-line ``ValueError``
        for anything ``to_dict`` could not have written: ``int("3")``, ``int(True)`` and ``int(1e30)`` all "worked"."""
        if not isinstance(values, dict) or values.get("kind") not in MAX_DIM:
            kind = values.get("kind") if isinstance(values, dict) else values
            raise ValueError(f"action_spec kind must be 'discrete' or 'continuous', got {kind!r}")
        kind, dim = values["kind"], values.get("dim")
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or not 1 <= dim <= MAX_DIM[kind]:
            raise ValueError(f"action_spec dim must be an integer in [1, {MAX_DIM[kind]}] for {kind} actions, "
                             f"got {dim!r} ({type(dim).__name__})")
        low, high = (_bounds(values.get(name, ()), name, int(dim), kind) for name in ("low", "high"))
        if bool(low) != bool(high) or any(lo > hi for lo, hi in zip(low, high)):
            raise ValueError(f"action_spec low {list(low)} and high {list(high)} must both be given, "
                             "with low <= high in every dimension")
        return cls(kind, int(dim), low, high)

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


def check_fits(env: Any, env_id: str, *, obs_shape: Sequence[int], action_spec: ActionSpec, model: str,
               adapt_actions: bool = False) -> ActionSpec:
    """The action spec of ``env`` (a gymnasium Env or VectorEnv) when its spaces are the model's, else a one-line
    ``ValueError`` naming both: THE check of every command that runs a saved model in an env.

    A 3-action controller in a 6-action env used to report returns (it never chose actions 3-5), and a discrete
    model in a Box env died in an IndexError. ``adapt_actions`` (``wm finetune``, which re-initialises the
    action-dependent layers): any supported action space fits, only the observations must match.
    """
    vector = hasattr(env, "single_observation_space")  # a VectorEnv: the spaces of one sub-env
    observation_space = env.single_observation_space if vector else env.observation_space
    action_space = env.single_action_space if vector else env.action_space
    env_obs = tuple(observation_space.shape or ())
    try:
        spec: ActionSpec | None = ActionSpec.from_space(action_space)
        env_actions = f"{spec.kind}({spec.dim})"
    except ValueError:  # e.g. MultiDiscrete or a 2-D Box: no model of this library acts in it
        spec, env_actions = None, f"unsupported {action_space}"
    same_actions = spec is not None and (spec.kind, spec.dim) == (action_spec.kind, action_spec.dim)
    if env_obs == tuple(obs_shape) and spec is not None and (same_actions or adapt_actions):
        return spec
    fix = (f"fine-tuning adapts the action layers, not the observations: use an env with observations "
           f"{tuple(obs_shape)} and Discrete or 1-D Box actions" if adapt_actions else
           f"use an env with the same spaces, or adapt the model first with `wm finetune --env {env_id}`")
    raise ValueError(f"{env_id} has observations {env_obs} and {env_actions} actions, but {model} was trained on "
                     f"{tuple(obs_shape)} and {action_spec.kind}({action_spec.dim}); {fix}")
