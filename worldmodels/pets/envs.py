"""The envs PETS acts in: vector envs over the env's own VECTOR observation (the factory's `obs="vector"`).

``wm pets`` and ``wm mbpo`` collect and evaluate in them; ``worldmodels.load`` of a PETS model evaluates in
them too (``Family.make_env`` in :mod:`worldmodels.registry`), which is why this lives in the library.
"""

from __future__ import annotations

import gymnasium as gym

from worldmodels.envs import make_vector
from worldmodels.envs.cartpole_continuous import register_continuous_cartpole


def vector_obs_env(env_id: str, num_envs: int, *, max_episode_steps: int | None = None) -> gym.vector.VectorEnv:
    """The env factory's vector-observation env (``make_vector(obs="vector")``: float32 ``(num_envs, D)``, NEXT_STEP
    autoreset, the driver's contract), with the continuous CartPole registered.

    ``max_episode_steps`` truncates episodes earlier than the env's own limit (``None``: the registered limit).
    Shared by PETS and MBPO (TD-MPC calls make_vector itself).
    """
    register_continuous_cartpole()
    return make_vector(env_id, num_envs, obs="vector", max_episode_steps=max_episode_steps)


def make_state_env(env_id: str, num_envs: int, *, max_episode_steps: int | None = None) -> gym.vector.VectorEnv:
    """:func:`vector_obs_env` for PETS, which also needs Box actions (it plans over them)."""
    env = vector_obs_env(env_id, num_envs, max_episode_steps=max_episode_steps)
    action_space = env.single_action_space
    if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
        env.close()
        raise ValueError(f"PETS plans over Box actions; {env_id} has {action_space}")
    return env
