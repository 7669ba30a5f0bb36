"""``wm bench --what collect``'s second half: the whole collection pipeline against the env's raw ceiling.

Three rates on one env id, same number of envs, random actions, one sitting:

- ``raw``: the env with none of this project's code on top. For ALE that is ale-py's ``AtariVectorEnv``
  (``make_vector`` returns it unwrapped); for any other id, ``gymnasium.make(env_id)`` as its package registers
  it (for VizDoom: the full 640x480 screen dict, no crop or resize), stepped ``num_envs`` at a time.
- ``pipeline``: what ``wm collect`` runs, the :class:`~worldmodels.driver.Driver` with the paper's hold-random
  policy, row recording and atomic episode writes into a throw-away :class:`EpisodeStore`.
  ``env_steps_per_s`` counts every sub-env step; ``stored_frames_per_s`` only the frames that reached the
  store (a wave's envs that finish early play on into an episode that is discarded, see
  :mod:`worldmodels.data.collect`).
- the two ratios ``pipeline / raw``: the issue's goal is >= 0.9.
"""

from __future__ import annotations

import tempfile
import time

import gymnasium
import numpy as np

from worldmodels.data.collect import collect_episodes, store_spec_for
from worldmodels.data.store import EpisodeStore
from worldmodels.envs import make_vector
from worldmodels.envs.factory import ATARI_ENTRY_POINT, registry_spec


def raw_steps_per_second(env_id: str, num_envs: int, *, steps: int, seed: int, image_size: int) -> float:
    """Agent steps/s (summed over envs) of the env without any wrapper of this project."""
    spec = registry_spec(env_id)  # also registers the vizdoom / toy ids
    if spec.entry_point == ATARI_ENTRY_POINT:
        vector = make_vector(env_id, num_envs, image_size=image_size, seed=seed)  # AtariVectorEnv, unwrapped
        try:
            vector.action_space.seed(seed)
            vector.reset(seed=seed)
            start = time.perf_counter()
            for _ in range(steps):
                vector.step(vector.action_space.sample())
            return steps * num_envs / (time.perf_counter() - start)
        finally:
            vector.close()
    envs = [gymnasium.make(spec.id) for _ in range(num_envs)]
    try:
        for i, env in enumerate(envs):
            env.reset(seed=seed + i)
            env.action_space.seed(seed + i)
        start = time.perf_counter()
        for _ in range(steps):
            for env in envs:
                _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                if terminated or truncated:
                    env.reset()
        return steps * num_envs / (time.perf_counter() - start)
    finally:
        for env in envs:
            env.close()


def pipeline_rates(env_id: str, num_envs: int, *, waves: int, seed: int, image_size: int) -> dict[str, float]:
    """``wm collect``'s loop for ``waves`` waves of ``num_envs`` episodes into a temporary store."""
    vector = make_vector(env_id, num_envs, image_size=image_size, seed=seed)
    try:
        with tempfile.TemporaryDirectory(prefix="wm-bench-collect-") as root:
            spec = store_spec_for(vector, env_id)
            store = EpisodeStore.create(root, env_id=env_id, obs_shape=spec.obs_shape, action_spec=spec.action_spec)
            stats = collect_episodes(vector, store, episodes=waves * num_envs, policy="hold", seed=seed,
                                     progress=False)
    finally:
        vector.close()
    return {"env_steps_per_s": stats.steps_per_second, "stored_frames_per_s": stats.frames / max(stats.seconds, 1e-9),
            "episodes": stats.episodes, "env_steps": stats.env_steps, "seconds": stats.seconds}


def collection_vs_raw(env_id: str, num_envs: int, *, steps: int, waves: int, repeats: int, seed: int,
                      image_size: int) -> dict:
    """Median over ``repeats`` alternating (raw, pipeline) pairs, and the ratios of the medians."""
    raw, piped, stored = [], [], []
    for r in range(repeats):
        raw.append(raw_steps_per_second(env_id, num_envs, steps=steps, seed=seed + r, image_size=image_size))
        rates = pipeline_rates(env_id, num_envs, waves=waves, seed=seed + r, image_size=image_size)
        piped.append(rates["env_steps_per_s"])
        stored.append(rates["stored_frames_per_s"])
    median = {name: float(np.median(values)) for name, values in
              (("raw", raw), ("pipeline", piped), ("stored", stored))}
    return {
        "raw_steps_per_s": {"median": median["raw"], "runs": raw},
        "pipeline_env_steps_per_s": {"median": median["pipeline"], "runs": piped},
        "pipeline_stored_frames_per_s": {"median": median["stored"], "runs": stored},
        "pipeline_vs_raw": median["pipeline"] / median["raw"],
        "stored_vs_raw": median["stored"] / median["raw"],
        "waves_per_repeat": waves,
        "policy": "hold",
    }
