"""The envs PETS acts in: gymnasium vector envs over the env's own VECTOR observation (not the pixel factory).

``wm pets`` and ``wm mbpo`` collect and evaluate in them; ``worldmodels.load`` of a PETS model evaluates in
them too (``Family.make_env`` in :mod:`worldmodels.registry`), which is why this lives in the library.
"""

from __future__ import annotations

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from worldmodels.envs.cartpole_continuous import CONTINUOUS_CARTPOLE_ID, register_continuous_cartpole


def vector_obs_env(env_id: str, num_envs: int, *, max_episode_steps: int | None = None) -> gym.vector.VectorEnv:
    """A gymnasium vector env over the env's own vector observations, NEXT_STEP autoreset (the driver's contract).

    ``max_episode_steps`` truncates episodes earlier than the env's own limit (``None``: the registered limit).
    Shared by PETS, MBPO and TD-MPC's vector mode.
    """
    register_continuous_cartpole()
    if env_id not in gym.registry:
        raise ValueError(f"unknown env id {env_id!r}; pass a registered gymnasium id such as "
                         f"{CONTINUOUS_CARTPOLE_ID!r} or 'InvertedPendulum-v5'")
    probe = gym.make(env_id)
    obs_space = probe.observation_space
    probe.close()
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(f"{env_id} observes {obs_space}, not vectors (use an encoder or --obs pixels for frames)")
    limit = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    return gym.vector.SyncVectorEnv([lambda: gym.make(env_id, **limit) for _ in range(num_envs)],
                                    autoreset_mode=AutoresetMode.NEXT_STEP)


def make_state_env(env_id: str, num_envs: int, *, max_episode_steps: int | None = None) -> gym.vector.VectorEnv:
    """:func:`vector_obs_env` for PETS, which also needs Box actions (it plans over them)."""
    env = vector_obs_env(env_id, num_envs, max_episode_steps=max_episode_steps)
    action_space = env.single_action_space
    if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
        env.close()
        raise ValueError(f"PETS plans over Box actions; {env_id} has {action_space}")
    return env
