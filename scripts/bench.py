"""Benchmarks that print (and optionally save) one JSON record per run.

Each benchmark kind is a function ``bench_<kind>(config) -> dict`` listed in
:data:`BENCHMARKS` (an explicit registry); ``run`` picks one by ``config.what``.
Timings report the median over ``repeats`` timed runs and their spread (min/max),
with warm-up steps excluded, plus the machine and library versions they came from.

Kinds (``--what``)::

    collect      random-action vector env stepping: agent steps/s, emulator frames/s
    worldmodels  World Models V step (frames/s) and M step (sequence frames/s) under a Lightning Trainer
    dreamer      one DreamerV3 training step (world model + imagination + actor + critic): grad steps/s
    imagine      Dreamer imagination alone: B*T starts x horizon prior steps per second
    dream        World Models controller-in-dream: population x repeats x T dream steps per second
    loader       ChunkDataModule delivery rate (V's batches from an on-disk store) per --num-workers value
    plan         one CEM planning call per family: envs x candidates x particles x horizon imagined steps per second
    replay       the online replay at --capacity rows, frames on disk vs in RAM: batches/s, peak RSS
    profile      one Dreamer update profiled: shares by op kind and phase, FLOPs, share of the measured GEMM peak
    all          every kind above, one record per kind

Sizes come from the families' own presets: ``--preset S`` = World Models ``paper`` sizes (z 32, LSTM 256,
5 mixtures, batch 100) and Dreamer ``S`` (batch 16 x 64, 64x64 images, horizon 15). Every training
figure runs the family's real ``training_step`` on a fixed synthetic batch, so the data pipeline is not
in the timing (``collect`` measures the env side). ``--steps`` / ``--warmup`` default per kind
(:data:`DEFAULT_STEPS`), small enough that ``--preset S --device cpu`` finishes in minutes.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from trainers.bench.collect import collection_vs_raw
from trainers.bench.config import DEFAULT_PRESET, KINDS, PRESETS, BenchConfig, bench_collection, steps_and_warmup  # noqa: F401 - PRESETS re-exported for the CLI
from trainers.bench.models import (bench_dream_controller, bench_dreamer_step, bench_imagine, bench_loader,
                                   bench_plan, bench_worldmodels)
from trainers.bench.profile import bench_profile
from trainers.bench.replay import bench_replay
from worldmodels.config import save_json_atomic

CONFIG = BenchConfig
CLI_ALIASES = {"--env-id": "env"}  # the flag's old spelling; --env as on every other command


def _run_collect(config: BenchConfig) -> dict:
    steps, warmup = steps_and_warmup(config, "collect")
    record = bench_collection(
        config.env, config.num_envs, steps=steps, warmup=warmup,
        repeats=config.repeats, image_size=config.image_size, seed=config.seed,
    )
    # The whole `wm collect` loop against the env's raw ceiling (trainers/bench/collect.py), alternating pairs.
    modes = ("exact", "fast") if config.collect_mode == "both" else (config.collect_mode,)
    record["collection_vs_raw"] = collection_vs_raw(config.env, config.num_envs, steps=steps, episodes_per_env=2,
                                                    repeats=config.repeats, seed=config.seed,
                                                    image_size=config.image_size, collect_modes=modes)
    return record


def bench_all(config: BenchConfig) -> dict:
    """Every kind in :data:`KINDS`, in order; one record per kind under ``results``."""
    return {"benchmark": "all", "results": {kind: BENCHMARKS[kind](config) for kind in KINDS}}


# Benchmark kinds: name -> function(config) -> JSON-ready dict. Add new kinds here (and to KINDS).
BENCHMARKS: dict[str, Callable[[BenchConfig], dict]] = {
    "collect": _run_collect,
    "worldmodels": bench_worldmodels,
    "dreamer": bench_dreamer_step,
    "imagine": bench_imagine,
    "dream": bench_dream_controller,
    "loader": bench_loader,
    "plan": bench_plan,
    "profile": bench_profile,
    "replay": bench_replay,
    "all": bench_all,
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
