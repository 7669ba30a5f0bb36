"""Benchmarks that print (and optionally save) one JSON record per run.

Each benchmark kind is a function ``bench_<kind>(config) -> dict`` listed in
:data:`BENCHMARKS` (an explicit registry); ``run`` picks one by ``config.what``.
Timings report the median over ``repeats`` timed runs and their spread (min/max),
with warm-up steps excluded, plus the machine and library versions they came from.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from worldmodels.config import arg, save_json_atomic


@dataclass
class BenchConfig:
    what: str = arg("collect", "which benchmark to run", choices=("collect",))
    env_id: str = arg("ALE/Pong-v5", "gymnasium env id for the collection benchmark")
    num_envs: int = arg(8, "parallel environments in the vector env")
    steps: int = arg(500, "timed vector steps per repeat (agent steps = steps * num_envs)")
    warmup: int = arg(50, "untimed vector steps before the first repeat")
    repeats: int = arg(3, "timed repeats; the median and min/max are reported")
    image_size: int = arg(64, "observation side in pixels")
    seed: int = arg(0, "seed for env resets and random actions")
    out: Optional[str] = arg(None, "also write the JSON record to this path (atomically)")


CONFIG = BenchConfig


def machine_info() -> dict:
    """Where a figure came from: CPU count, Python and library versions."""
    import ale_py
    import gymnasium
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "ale_py": ale_py.__version__,
        "numpy": np.__version__,
    }


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def bench_collection(
    env_id: str = "ALE/Pong-v5",
    num_envs: int = 8,
    *,
    steps: int = 500,
    warmup: int = 50,
    repeats: int = 3,
    image_size: int = 64,
    seed: int = 0,
) -> dict:
    """Random-action vector stepping rate: agent steps/s (all sub-envs) and emulator frames/s.

    frames/s = agent steps/s x frameskip (4 for ALE under Machado et al. 2018 settings).
    Action sampling is inside the timed loop, as it is during collection.
    """
    if min(num_envs, steps, repeats) < 1 or warmup < 0:
        raise ValueError(f"num_envs, steps and repeats must be >= 1 and warmup >= 0, got {num_envs}, {steps}, {repeats}, {warmup}")
    from worldmodels.envs import EnvOptions, agent_frameskip, make_vector  # lazy: importing envs pulls in ALE

    vector = make_vector(env_id, num_envs, image_size=image_size, seed=seed)
    frameskip = agent_frameskip(env_id, EnvOptions(image_size=image_size))
    try:
        vector.action_space.seed(seed)
        vector.reset(seed=seed)
        for _ in range(warmup):
            vector.step(vector.action_space.sample())
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(steps):
                vector.step(vector.action_space.sample())
            rates.append(steps * num_envs / (time.perf_counter() - start))
    finally:
        vector.close()
    step_rate = _spread(rates)
    return {
        "benchmark": "collect",
        "env_id": env_id,
        "num_envs": num_envs,
        "image_size": image_size,
        "frameskip": frameskip,
        "steps_per_repeat": steps,
        "warmup_steps": warmup,
        "repeats": repeats,
        "agent_steps_per_s": step_rate,
        "frames_per_s": {key: ([v * frameskip for v in value] if key == "runs" else value * frameskip) for key, value in step_rate.items()},
        "machine": machine_info(),
    }


def _run_collect(config: BenchConfig) -> dict:
    return bench_collection(
        config.env_id, config.num_envs, steps=config.steps, warmup=config.warmup,
        repeats=config.repeats, image_size=config.image_size, seed=config.seed,
    )


# Benchmark kinds: name -> function(config) -> JSON-ready dict. Add new kinds here (and to `what`'s choices).
BENCHMARKS: dict[str, Callable[[BenchConfig], dict]] = {
    "collect": _run_collect,
}


def run(config: BenchConfig) -> dict:
    """Run the benchmark ``config.what``, print its JSON record, save it to ``config.out`` if set, return it."""
    if config.what not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {config.what!r}; choose one of {sorted(BENCHMARKS)}")
    result = BENCHMARKS[config.what](config)
    print(json.dumps(result, indent=2))
    if config.out:
        save_json_atomic(config.out, result)
    return result
