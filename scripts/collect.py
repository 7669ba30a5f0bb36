"""Collect episodes with a random policy into an on-disk episode store.

``--episodes`` is the TARGET TOTAL: rerunning into the same ``--out`` after a kill
collects only the missing episodes. Every user error (bad counts, an unwritable or
incompatible ``--out``, a ``--collect-mode`` other than the store's) is reported in one line before any env is made.
``--collect-mode fast`` trades exact resume for the raw env's speed (docs/collect-speed.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from worldmodels import envs
from worldmodels.config import arg
from worldmodels.data.collect import collect_episodes, store_spec_for
from worldmodels.data.collect_mode import COLLECT_MODES, check_mode
from worldmodels.data.store import EpisodeStore, ensure_writable_dir, read_spec
from worldmodels.locking import exclusive_lock

POLICIES = ("random", "sticky", "hold")  # the names of worldmodels.policies.RANDOM_POLICIES


@dataclass
class CollectConfig:
    env: str = arg("ALE/Pong-v5", "gymnasium env id to collect from")
    episodes: int = arg(10, "target total number of episodes in the store (a rerun only adds the missing ones)", minimum=1,
                        maximum=10**6)
    policy: str = arg("random", "behaviour policy: uniform random, sticky random (repeats its last action with prob 0.9), "
                      "or hold (the paper's: each random action held for 1-10 steps)",
                      choices=POLICIES)
    out: str = arg("data/episodes", "episode store directory (created if missing)")
    num_envs: int = arg(8, "parallel environments stepped as one vector env", minimum=1, maximum=1024)
    seed: int = arg(0, "seed for env resets and the random policy; same seed, same store", minimum=0, maximum=2**32 - 1)
    image_size: int = arg(64, "observations are resized to image_size x image_size RGB", minimum=16, maximum=1024)
    collect_mode: str = arg("exact", "exact: episode j is a function of (seed, j), so a killed run reruns to the same "
                            "store; fast: seeded once, then the env's own autoresets, episodes written as they finish "
                            "(the raw env's speed; a rerun adds different episodes). One mode per store",
                            choices=COLLECT_MODES)


CONFIG = CollectConfig


def validate(config: CollectConfig) -> None:
    """One-line ``ValueError``/``PermissionError`` for anything wrong, before an env is made."""
    for name in ("episodes", "num_envs", "image_size"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if config.policy not in POLICIES:
        raise ValueError(f"--policy must be one of {POLICIES}, got {config.policy!r}")
    if not config.out:  # Path("") is ".": the episodes would land in the working directory
        raise ValueError("--out is empty; give the store's directory, e.g. --out data/episodes")
    ensure_writable_dir(config.out)
    existing = read_spec(config.out)
    if existing is not None and existing.env_id != config.env:
        raise ValueError(f"store {config.out!r} holds episodes of {existing.env_id!r}, not {config.env!r}; "
                         "use another --out directory")
    if existing is not None and existing.obs_shape[:2] != (config.image_size, config.image_size):
        raise ValueError(f"store {config.out!r} holds {existing.obs_shape[0]}x{existing.obs_shape[1]} frames, "
                         f"not --image-size {config.image_size}; use another --out directory")
    check_mode(config.out, config.collect_mode)


def run(config: CollectConfig) -> dict:
    """Validate, lock the store, make the vector env, collect up to the target total; returns the collection stats."""
    validate(config)
    with exclusive_lock(config.out, what="episode store"):  # a second writer would overshoot with duplicates
        vec_env = envs.make_vector(  # looked up on the module at call time (tests stub it)
            config.env, config.num_envs, image_size=config.image_size, seed=config.seed)
        try:
            spec = store_spec_for(vec_env, config.env)
            store = EpisodeStore.create(config.out, env_id=spec.env_id, obs_shape=spec.obs_shape,
                                        action_spec=spec.action_spec)
            stats = collect_episodes(vec_env, store, episodes=config.episodes, policy=config.policy, seed=config.seed,
                                     mode=config.collect_mode)
        finally:
            vec_env.close()
        readable = len(EpisodeStore.open(config.out))  # what is reported below must be what a later command reads
        if readable != stats.total_episodes:
            raise ValueError(f"the store at {config.out!r} should hold {stats.total_episodes} episode(s) after writing "
                             f"{stats.episodes}, but {readable} read back (the warnings above name the skipped ones)")
    if stats.episodes == 0:
        print(f"store {config.out} already holds {stats.total_episodes} episodes (target {config.episodes}); nothing to do")
    else:
        print(f"collected {stats.episodes} episodes ({stats.frames} frames) in {stats.seconds:.1f}s at "
              f"{stats.steps_per_second:.0f} steps/s, mean return {stats.mean_return:.2f}; "
              f"{config.out} now holds {stats.total_episodes} episodes")
    return stats.to_dict()
