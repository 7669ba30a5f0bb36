"""``wm bench --what collect``'s second half: the whole collection pipeline against the env's raw ceiling.

Rates on one env id, same number of envs, random actions, one sitting:

- ``raw``: the env with none of this project's code on top. For ALE that is ale-py's ``AtariVectorEnv``
  (``make_vector`` returns it unwrapped); for any other id, ``gymnasium.make(env_id)`` as its package registers
  it (for VizDoom: the full 640x480 screen dict, no crop or resize), stepped ``num_envs`` at a time in one process.
- ``raw_async`` (non-ALE ids only): the same raw envs in gymnasium's ``AsyncVectorEnv``, one worker process per
  env, the honest ceiling for a pipeline that uses worker processes too (``make_vector(..., vector_backend=
  "async")``).
- ``pipeline``: what ``wm collect`` runs, the :class:`~worldmodels.driver.Driver` with the paper's hold-random
  policy, row recording and atomic episode writes (on a background thread) into a throw-away
  :class:`EpisodeStore`, ``episodes_per_env * num_envs`` episodes. ``env_steps_per_s`` counts every sub-env step;
  ``stored_frames_per_s`` only the frames that reached the store (at the end, envs with no episode left to start
  play on into episodes that are discarded while the last ones finish, see :mod:`worldmodels.data.collect`), and
  a stored episode's first frame comes from a reset, which is no step. Both are timed after the first reset of every
  env, as raw is (``env_steps_per_s_with_reset`` includes it). ``collect_mode``: ``wm collect --collect-mode``
  (``exact``, or ``fast``: seeded once, autoresets, episodes written as they finish).
- the ratios ``pipeline / raw``: the goal is >= 0.9 in fast mode (docs/collect-speed.md).
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


def raw_steps_per_second(env_id: str, num_envs: int, *, steps: int, seed: int, image_size: int,
                         processes: bool = False) -> float:
    """Agent steps/s (summed over envs) of the env without any wrapper of this project.

    ``processes``: non-ALE envs in gymnasium's ``AsyncVectorEnv`` (one process each) instead of one process.
    """
    spec = registry_spec(env_id)  # also registers the vizdoom / toy ids
    if spec.entry_point == ATARI_ENTRY_POINT:
        vector = make_vector(env_id, num_envs, image_size=image_size, seed=seed)  # AtariVectorEnv, unwrapped
    elif processes:
        vector = gymnasium.vector.AsyncVectorEnv([lambda: gymnasium.make(spec.id)] * num_envs)
    else:
        return _raw_in_process(spec.id, num_envs, steps=steps, seed=seed)
    try:
        vector.action_space.seed(seed)
        vector.reset(seed=seed)
        start = time.perf_counter()
        for _ in range(steps):
            vector.step(vector.action_space.sample())
        return steps * num_envs / (time.perf_counter() - start)
    finally:
        vector.close()


def _raw_in_process(env_id: str, num_envs: int, *, steps: int, seed: int) -> float:
    envs = [gymnasium.make(env_id) for _ in range(num_envs)]
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


def pipeline_rates(env_id: str, num_envs: int, *, episodes_per_env: int, seed: int, image_size: int,
                   seed_every: int | None = None, collect_mode: str = "exact", **env_options) -> dict[str, float]:
    """``wm collect``'s loop for ``episodes_per_env * num_envs`` episodes into a temporary store.

    ``seed_every``: episodes per seeded reset (None: collection's default for that target,
    :func:`~worldmodels.data.collect.episodes_per_seed`). ``env_options`` go to :func:`make_vector`
    (e.g. ``vector_backend="async"``). ``collect_mode``: ``wm collect --collect-mode``.
    """
    vector = make_vector(env_id, num_envs, image_size=image_size, seed=seed, **env_options)
    try:
        with tempfile.TemporaryDirectory(prefix="wm-bench-collect-") as root:
            spec = store_spec_for(vector, env_id)
            store = EpisodeStore.create(root, env_id=env_id, obs_shape=spec.obs_shape, action_spec=spec.action_spec)
            stats = collect_episodes(vector, store, episodes=episodes_per_env * num_envs, policy="hold", seed=seed,
                                     progress=False, seed_every=seed_every, mode=collect_mode)
    finally:
        vector.close()
    stepping = max(stats.seconds - stats.reset_seconds, 1e-9)  # timed as raw is: after the first reset of every env
    return {"env_steps_per_s": stats.env_steps / stepping, "stored_frames_per_s": stats.frames / stepping,
            "env_steps_per_s_with_reset": stats.steps_per_second, "episodes": stats.episodes, "frames": stats.frames,
            "env_steps": stats.env_steps, "seconds": stats.seconds, "reset_seconds": stats.reset_seconds}


def collection_vs_raw(env_id: str, num_envs: int, *, steps: int, episodes_per_env: int, repeats: int, seed: int,
                      image_size: int, collect_modes: tuple[str, ...] = ("exact",)) -> dict:
    """Medians over ``repeats`` of alternating pairs, (raw, [raw_async,] pipeline) for each mode, and their ratios.

    Each mode has its own raw runs, each taken just before its pipeline run (the modes in reverse order every other
    repeat): on shared cores the load drifts over a sitting, and a pair sees about the same load. ``by_mode[m]``
    holds mode ``m``'s figures, ratios of medians and the ratio of each pair; the top-level ``pipeline_*`` ones are
    those of ``collect_modes[0]``, ``raw_steps_per_s`` every raw run.
    """
    processes = registry_spec(env_id).entry_point != ATARI_ENTRY_POINT
    runs: dict[str, list[float]] = {}
    for r in range(repeats):
        for mode in collect_modes if r % 2 == 0 else collect_modes[::-1]:
            runs.setdefault(f"{mode}/raw", []).append(
                raw_steps_per_second(env_id, num_envs, steps=steps, seed=seed + r, image_size=image_size))
            if processes:
                runs.setdefault(f"{mode}/raw_async", []).append(raw_steps_per_second(
                    env_id, num_envs, steps=steps, seed=seed + r, image_size=image_size, processes=True))
            rates = pipeline_rates(env_id, num_envs, episodes_per_env=episodes_per_env, seed=seed + r,
                                   image_size=image_size, collect_mode=mode)
            runs.setdefault(f"{mode}/pipeline", []).append(rates["env_steps_per_s"])
            runs.setdefault(f"{mode}/stored", []).append(rates["stored_frames_per_s"])
    median = {name: float(np.median(values)) for name, values in runs.items()}
    by_mode = {}
    for mode in collect_modes:
        raw, piped, stored = median[f"{mode}/raw"], median[f"{mode}/pipeline"], median[f"{mode}/stored"]
        by_mode[mode] = {
            "raw_steps_per_s": {"median": raw, "runs": runs[f"{mode}/raw"]},
            "pipeline_env_steps_per_s": {"median": piped, "runs": runs[f"{mode}/pipeline"]},
            "pipeline_stored_frames_per_s": {"median": stored, "runs": runs[f"{mode}/stored"]},
            "pipeline_vs_raw": piped / raw,
            "stored_vs_raw": stored / raw,
            "pipeline_vs_raw_by_pair": [p / q for p, q in zip(runs[f"{mode}/pipeline"], runs[f"{mode}/raw"])],
        }
        if processes:
            by_mode[mode]["raw_async_steps_per_s"] = {"median": median[f"{mode}/raw_async"],
                                                      "runs": runs[f"{mode}/raw_async"]}
            by_mode[mode]["pipeline_vs_raw_async"] = piped / median[f"{mode}/raw_async"]
    every_raw = [v for mode in collect_modes for v in runs[f"{mode}/raw"]]
    first = {k: v for k, v in by_mode[collect_modes[0]].items() if k != "raw_steps_per_s"}
    record = {"raw_steps_per_s": {"median": float(np.median(every_raw)), "runs": every_raw}, **first,
              "collect_mode": collect_modes[0], "by_mode": by_mode, "episodes_per_env": episodes_per_env,
              "policy": "hold"}
    if processes:
        every_async = [v for mode in collect_modes for v in runs[f"{mode}/raw_async"]]
        record["raw_async_steps_per_s"] = {"median": float(np.median(every_async)), "runs": every_async}
    return record
