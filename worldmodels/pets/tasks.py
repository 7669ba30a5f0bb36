"""Known reward and termination functions, for envs whose reward PETS need not learn (Chua et al. 2018 give
the planner the task's cost function).

Each takes ``(obs (B, D), action (B, A), next_obs (B, D))`` torch tensors and returns ``(B,)``: the reward of
the step, or whether ``next_obs`` is terminal. :data:`KNOWN_TASKS` is the registry the loop reads; an env
without an entry gets a learned reward head and no termination.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worldmodels.envs.cartpole_continuous import CONTINUOUS_CARTPOLE_ID, THETA_LIMIT, X_LIMIT
from worldmodels.pets.world_model import RewardFn

INVERTED_PENDULUM_ANGLE_LIMIT = 0.2  # gymnasium InvertedPendulum-v5: terminated when |angle| > 0.2 rad


@dataclass(frozen=True)
class Task:
    reward_fn: RewardFn
    termination_fn: RewardFn


def alive_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """1 for every step, the terminating one included (CartPole)."""
    return torch.ones(obs.shape[0], device=obs.device)


def cartpole_terminated(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """``[x, x_dot, theta, theta_dot]``: the cart left the track or the pole tipped past 12 degrees."""
    return (next_obs[:, 0].abs() > X_LIMIT) | (next_obs[:, 2].abs() > THETA_LIMIT)


def pendulum_terminated(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """InvertedPendulum ``[x, angle, x_dot, angle_dot]``: the pole tipped past 0.2 rad (or the state blew up)."""
    return (next_obs[:, 1].abs() > INVERTED_PENDULUM_ANGLE_LIMIT) | ~torch.isfinite(next_obs).all(-1)


def pendulum_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """InvertedPendulum-v5: ``int(not terminated)``, so the terminating step earns 0."""
    return (~pendulum_terminated(obs, action, next_obs)).float()


KNOWN_TASKS: dict[str, Task] = {
    CONTINUOUS_CARTPOLE_ID: Task(alive_reward, cartpole_terminated),
    "InvertedPendulum-v5": Task(pendulum_reward, pendulum_terminated),
}
