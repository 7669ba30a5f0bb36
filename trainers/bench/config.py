"""Settings shared by the benchmark kinds of ``wm bench``: the config, per-kind step counts, machine info."""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Optional

import ale_py
import gymnasium
import numpy as np
import torch

from worldmodels.config import arg, file_problem, threads_arg
from worldmodels.envs import EnvOptions, agent_frameskip, make_vector

KINDS = ("collect", "worldmodels", "dreamer", "imagine", "dream", "loader", "plan", "profile", "replay")
# Timed iterations per repeat and untimed warm-up iterations, per kind, when --steps / --warmup are not given.
# collect: vector steps; worldmodels/dreamer: training steps; imagine: rollouts of `horizon`; dream: rollouts of T;
# plan: planner calls (one scoring iteration each); profile: profiled Dreamer updates (as many again are timed unprofiled).
DEFAULT_STEPS = {"collect": 500, "worldmodels": 3, "dreamer": 2, "imagine": 3, "dream": 1, "loader": 20, "plan": 3,
                 "profile": 5, "replay": 200}
DEFAULT_WARMUP = {"collect": 50, "worldmodels": 1, "dreamer": 1, "imagine": 1, "dream": 1, "loader": 2, "plan": 1,
                  "profile": 3, "replay": 20}


@dataclass
class BenchConfig:
    what: str = arg("collect", "which benchmark to run", choices=KINDS + ("all",))
    device: str = arg("auto", "torch device for the model benchmarks", choices=("auto", "cpu", "cuda"))
    precision: Optional[str] = arg(None, "Lightning precision; None = bf16-mixed on CUDA, 32-true on CPU")
    compile: bool = arg(False, "torch.compile Dreamer's hot modules (RSSM steps, conv encoder/decoder, heads, actor, "
                               "critic) before timing the dreamer and imagine kinds")
    threads: str = threads_arg("0")
    wm_preset: str = arg("paper", "World Models size preset (trainers/runs/worldmodels_config.py PRESETS)")
    dreamer_preset: str = arg("S", "Dreamer size preset (trainers/runs/dreamer.py PRESETS)")
    env: str = arg("ALE/Pong-v5", "gymnasium env id for the collection benchmark (--env-id: the old spelling)")
    collect_mode: str = arg("exact", "collection benchmark: the wm collect --collect-mode timed against the raw env; "
                                     "both = exact and fast alternating with raw in every repeat",
                            choices=("exact", "fast", "both"))
    num_envs: int = arg(8, "parallel environments in the vector env")
    steps: Optional[int] = arg(None, "timed iterations per repeat (None = per-kind default, see DEFAULT_STEPS)")
    warmup: Optional[int] = arg(None, "untimed iterations before the first repeat (None = per-kind default)")
    repeats: int = arg(3, "timed repeats; the median and min/max are reported")
    image_size: int = arg(64, "observation side in pixels (collection benchmark)")
    dream_horizon: int = arg(1000, "T of the controller-in-dream benchmark (paper: 1000)")
    plan_candidates: int = arg(256, "plan benchmark: candidate action sequences per env (x num_envs envs)")
    plan_horizon: int = arg(12, "plan benchmark: planning horizon in model steps")
    plan_particles: int = arg(1, "plan benchmark: model samples per candidate")
    loader_workers: str = arg("0,1,2", "comma-separated DataLoader worker counts for the loader benchmark")
    profile_gemm: int = arg(2048, "profile benchmark: side of the square fp32 GEMM timed for the CPU's peak FLOP/s",
                            minimum=256, maximum=8192)
    capacity: int = arg(1_000_000, "replay benchmark: rows of the replay with its frames on disk", minimum=64,
                        maximum=10**8)
    replay_ram_capacity: int = arg(100_000, "replay benchmark: rows of the in-RAM replay it is compared with (at most "
                                            "--capacity; a million RAM rows would take 12.3 GB)", minimum=64, maximum=10**8)
    replay_batch: int = arg(16, "replay benchmark: chunks per batch (B)", minimum=1, maximum=4096)
    replay_seq: int = arg(64, "replay benchmark: chunk length (T)", minimum=1, maximum=4096)
    seed: int = arg(0, "seed for env resets, random actions and synthetic batches")
    out: Optional[str] = arg(None, "also write the JSON record to this path (atomically)",
                             check=lambda c: file_problem(c.out))


DEFAULT_PRESET = "S"
# Flat overrides, applied before explicit flags. `S` and `paper` both mean the paper-sized models of both families.
PRESETS: dict[str, dict] = {
    "debug": {"wm_preset": "debug", "dreamer_preset": "debug", "env": "worldmodels/Catch-v0", "num_envs": 2,
              "image_size": 16, "dream_horizon": 16, "repeats": 2, "plan_candidates": 16, "plan_horizon": 4},
    "tiny": {"wm_preset": "tiny", "dreamer_preset": "tiny", "dream_horizon": 200},
    "S": {"wm_preset": "paper", "dreamer_preset": "S"},
    "S-v1": {"wm_preset": "paper", "dreamer_preset": "S-v1"},
    "XS-v1": {"wm_preset": "paper", "dreamer_preset": "XS-v1"},
    "paper": {"wm_preset": "paper", "dreamer_preset": "S"},
}


def machine_info() -> dict:
    """Where a figure came from: CPU count, Python and library versions."""
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "ale_py": ale_py.__version__,
        "numpy": np.__version__,
    }


def _cpu_model() -> str | None:
    """The CPU's model name and the flags that change which kernels run (bf16, AMX), from /proc/cpuinfo."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return platform.processor() or None
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), None)
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    extras = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name} ({', '.join(extras) or 'no avx512'})" if name else None


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


def steps_and_warmup(config: BenchConfig, kind: str) -> tuple[int, int]:
    """``(steps, warmup)`` of ``kind``: the explicit flags, else the per-kind defaults."""
    steps = DEFAULT_STEPS[kind] if config.steps is None else config.steps
    warmup = DEFAULT_WARMUP[kind] if config.warmup is None else config.warmup
    return steps, warmup
