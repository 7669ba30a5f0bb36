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
    all          every kind above, one record per kind

Sizes come from the families' own presets: ``--preset S`` = World Models ``paper`` sizes (z 32, LSTM 256,
5 mixtures, batch 100) and Dreamer ``S`` (batch 16 x 64, 64x64 images, horizon 15). Every training
figure runs the family's real ``training_step`` on a fixed synthetic batch, so the data pipeline is not
in the timing (``collect`` measures the env side). ``--steps`` / ``--warmup`` default per kind
(:data:`DEFAULT_STEPS`), small enough that ``--preset S --device cpu`` finishes in minutes.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import numpy as np

from worldmodels import profiling
from worldmodels.config import arg, save_json_atomic

KINDS = ("collect", "worldmodels", "dreamer", "imagine", "dream", "loader")
# Timed iterations per repeat and untimed warm-up iterations, per kind, when --steps / --warmup are not given.
# collect: vector steps; worldmodels/dreamer: training steps; imagine: rollouts of `horizon`; dream: rollouts of T.
DEFAULT_STEPS = {"collect": 500, "worldmodels": 3, "dreamer": 2, "imagine": 3, "dream": 1, "loader": 20}
DEFAULT_WARMUP = {"collect": 50, "worldmodels": 1, "dreamer": 1, "imagine": 1, "dream": 1, "loader": 2}


@dataclass
class BenchConfig:
    what: str = arg("collect", "which benchmark to run", choices=KINDS + ("all",))
    device: str = arg("auto", "torch device for the model benchmarks", choices=("auto", "cpu", "cuda"))
    precision: Optional[str] = arg(None, "Lightning precision; None = bf16-mixed on CUDA, 32-true on CPU")
    compile: bool = arg(False, "torch.compile Dreamer's hot modules (RSSM steps, conv encoder/decoder, heads, actor, "
                               "critic) before timing the dreamer and imagine kinds")
    threads: int = arg(0, "torch CPU threads (0 = torch's default)")
    wm_preset: str = arg("paper", "World Models size preset (scripts/worldmodels_pipeline.py PRESETS)")
    dreamer_preset: str = arg("S", "Dreamer size preset (scripts/dreamer.py PRESETS)")
    env_id: str = arg("ALE/Pong-v5", "gymnasium env id for the collection benchmark")
    num_envs: int = arg(8, "parallel environments in the vector env")
    steps: Optional[int] = arg(None, "timed iterations per repeat (None = per-kind default, see DEFAULT_STEPS)")
    warmup: Optional[int] = arg(None, "untimed iterations before the first repeat (None = per-kind default)")
    repeats: int = arg(3, "timed repeats; the median and min/max are reported")
    image_size: int = arg(64, "observation side in pixels (collection benchmark)")
    dream_horizon: int = arg(1000, "T of the controller-in-dream benchmark (paper: 1000)")
    loader_workers: str = arg("0,1,2", "comma-separated DataLoader worker counts for the loader benchmark")
    seed: int = arg(0, "seed for env resets, random actions and synthetic batches")
    out: Optional[str] = arg(None, "also write the JSON record to this path (atomically)")


CONFIG = BenchConfig
DEFAULT_PRESET = "S"
# Flat overrides, applied before explicit flags. `S` and `paper` both mean the paper-sized models of both families.
PRESETS: dict[str, dict] = {
    "debug": {"wm_preset": "debug", "dreamer_preset": "debug", "env_id": "worldmodels/Catch-v0", "num_envs": 2,
              "image_size": 16, "dream_horizon": 16, "repeats": 2},
    "tiny": {"wm_preset": "tiny", "dreamer_preset": "tiny", "dream_horizon": 200},
    "S": {"wm_preset": "paper", "dreamer_preset": "S"},
    "paper": {"wm_preset": "paper", "dreamer_preset": "S"},
}


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
    from worldmodels.envs import (  # lazy: importing envs pulls in ALE
        EnvOptions,
        agent_frameskip,
        make_vector,
    )

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


def _steps(config: BenchConfig, kind: str) -> tuple[int, int]:
    """``(steps, warmup)`` of ``kind``: the explicit flags, else the per-kind defaults."""
    steps = DEFAULT_STEPS[kind] if config.steps is None else config.steps
    warmup = DEFAULT_WARMUP[kind] if config.warmup is None else config.warmup
    return steps, warmup


def _run_collect(config: BenchConfig) -> dict:
    steps, warmup = _steps(config, "collect")
    return bench_collection(
        config.env_id, config.num_envs, steps=steps, warmup=warmup,
        repeats=config.repeats, image_size=config.image_size, seed=config.seed,
    )


# ---------------------------------------------------------------------- model benchmarks


def _setup(config: BenchConfig) -> tuple["torch.device", str]:  # noqa: F821 - torch is imported lazily
    """Device, Lightning precision; applies ``--threads``."""
    import torch

    from trainers.performance import default_precision

    if config.threads > 0:
        torch.set_num_threads(config.threads)
    device = profiling.resolve_device(config.device)
    return device, config.precision or default_precision(device)


def _record(kind: str, config: BenchConfig, device, *, steps: int, warmup: int, **figures) -> dict:
    """One JSON record: the figures, the run settings, peak memory and where it ran."""
    return {"benchmark": kind, **figures, "steps_per_repeat": steps, "warmup_steps": warmup,
            "repeats": config.repeats, "compile": config.compile,
            "preset": {"worldmodels": config.wm_preset, "dreamer": config.dreamer_preset},
            **profiling.memory_record(device), **profiling.environment(device), "machine": machine_info()}


def time_training_steps(module, batch: dict, *, device, precision: str, steps: int, warmup: int, repeats: int,
                        optimiser_steps: int = 1) -> list[float]:
    """Seconds per ``training_step`` of ``module`` on a fixed ``batch`` under a real Lightning Trainer.

    ``optimiser_steps``: optimiser steps per batch (``global_step`` counts each). The clock reads after
    every batch (after a CUDA sync), so repeat ``k`` spans batches ``warmup + k*steps .. warmup + (k+1)*steps``::

        stamps[0] = train start, stamps[i + 1] = end of batch i
    """
    import lightning as L
    from torch.utils.data import DataLoader

    from worldmodels.imagination.bench_dreamer import _FixedBatches

    stamps: list[float] = []

    class _Clock(L.Callback):
        def on_train_start(self, *args, **kwargs) -> None:
            profiling.synchronize(device)
            stamps.append(time.perf_counter())

        def on_train_batch_end(self, *args, **kwargs) -> None:
            profiling.synchronize(device)
            stamps.append(time.perf_counter())

    batches = warmup + steps * repeats
    profiling.reset_peak_memory(device)
    trainer = L.Trainer(max_steps=optimiser_steps * batches, max_epochs=-1,
                        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=precision,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[_Clock()], num_sanity_val_steps=0,
                        limit_val_batches=0)
    pin = device.type == "cuda"
    if pin:
        batch = {k: v.pin_memory() for k, v in batch.items()}
    trainer.fit(module, train_dataloaders=DataLoader(_FixedBatches(batch), batch_size=None, pin_memory=pin))
    assert len(stamps) == batches + 1, f"expected {batches + 1} clock stamps, got {len(stamps)}"
    return [(stamps[warmup + (k + 1) * steps] - stamps[warmup + k * steps]) / steps for k in range(repeats)]


def _wm_config(config: BenchConfig):
    from scripts.worldmodels_pipeline import CONFIG as WM_CONFIG
    from scripts.worldmodels_pipeline import PRESETS as WM_PRESETS
    from worldmodels.config import build_config

    return build_config(WM_CONFIG, {}, presets=WM_PRESETS, preset=config.wm_preset)


def _dreamer_config(config: BenchConfig):
    from scripts.dreamer import CONFIG as DREAMER_CONFIG
    from scripts.dreamer import PRESETS as DREAMER_PRESETS
    from worldmodels.config import build_config

    return build_config(DREAMER_CONFIG, {}, presets=DREAMER_PRESETS, preset=config.dreamer_preset)


def bench_worldmodels(config: BenchConfig) -> dict:
    """V step (VAEModule on ``vae_batch_size`` frames) and M step (MDNRNNModule on ``B x seq_len`` latents).

    Sizes from the World Models preset (``paper``: z 32, depth 32, batch 100 frames; LSTM 256, 5 mixtures,
    100 sequences of 999 steps). Random uint8 frames / Gaussian latents; 3 continuous actions (CarRacing).
    """
    import torch

    from trainers.mdnrnn_module import MDNRNNModule
    from trainers.vae_module import VAEModule

    device, precision = _setup(config)
    steps, warmup = _steps(config, "worldmodels")
    wm = _wm_config(config)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)

    B, side = wm.vae_batch_size, wm.image_size
    vae = VAEModule(image_size=side, z_dim=wm.z_dim, depth=wm.vae_depth, stages=wm.vae_stages,
                    kl_tolerance=wm.kl_tolerance, learning_rate=wm.vae_lr)
    if device.type == "cuda":
        from trainers.performance import use_channels_last

        use_channels_last(vae)
    frames = {"obs": torch.randint(0, 256, (B, 1, side, side, 3), generator=generator, dtype=torch.uint8)}
    vae_seconds = time_training_steps(vae, frames, device=device, precision=precision, steps=steps, warmup=warmup,
                                      repeats=config.repeats)

    B, T, Z, A = wm.mdnrnn_batch_size, wm.mdnrnn_seq_len, wm.z_dim, 3
    mdn = MDNRNNModule(z_dim=Z, action_dim=A, hidden_size=wm.hidden_size, num_mixtures=wm.num_mixtures,
                       learning_rate=wm.mdnrnn_lr)
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    latents = {"mu": torch.randn(B, T, Z, generator=generator), "logvar": torch.full((B, T, Z), -2.0),
               "action": torch.rand(B, T, A, generator=generator) * 2 - 1, "reward": torch.randn(B, T, generator=generator),
               "terminated": torch.zeros(B, T, dtype=torch.bool), "is_first": is_first}
    mdn_seconds = time_training_steps(mdn, latents, device=device, precision=precision, steps=steps, warmup=warmup,
                                      repeats=config.repeats)
    return _record(
        "worldmodels", config, device, steps=steps, warmup=warmup, precision=precision,
        vae={"batch_frames": wm.vae_batch_size, "image_size": side, "z_dim": wm.z_dim, "depth": wm.vae_depth,
             "params": sum(p.numel() for p in vae.parameters()),
             "grad_steps_per_s": profiling.rates(vae_seconds), "frames_per_s": profiling.rates(vae_seconds, wm.vae_batch_size)},
        mdnrnn={"batch": B, "seq_len": T, "hidden_size": wm.hidden_size, "num_mixtures": wm.num_mixtures,
                "params": sum(p.numel() for p in mdn.parameters()),
                "grad_steps_per_s": profiling.rates(mdn_seconds), "frames_per_s": profiling.rates(mdn_seconds, B * T)},
    )


def _dreamer_module(config: BenchConfig, action_dim: int = 6):
    """A DreamerModule at the Dreamer preset's sizes (discrete actions, like ALE's minimal sets)."""
    import torch

    from trainers.dreamer_module import DreamerAgentConfig, DreamerModule
    from worldmodels.config import from_dict, to_dict
    from worldmodels.envs.spaces import ActionSpec

    run_config = _dreamer_config(config)
    torch.manual_seed(config.seed)
    side = run_config.image_size
    module = DreamerModule(obs_shape=(side, side, 3), action_spec=ActionSpec("discrete", action_dim),
                           config=from_dict(DreamerAgentConfig, to_dict(run_config)))
    return module, run_config


def bench_dreamer_step(config: BenchConfig) -> dict:
    """One DreamerV3 training step (world model, imagination from all B*T posteriors, actor, critic)."""
    from trainers.dreamer_module import OPTIMISERS_PER_STEP
    from worldmodels.imagination.bench_dreamer import synthetic_batch

    device, precision = _setup(config)
    steps, warmup = _steps(config, "dreamer")
    module, run_config = _dreamer_module(config)
    if device.type == "cuda":
        from trainers.performance import use_channels_last

        use_channels_last(module)
    if config.compile:
        from trainers.performance import compile_dreamer

        compile_dreamer(module)
    B, T, H = run_config.batch_size, run_config.seq_len, run_config.horizon
    batch = synthetic_batch(B, T, run_config.image_size, module.action_spec.dim, seed=config.seed)
    seconds = time_training_steps(module, batch, device=device, precision=precision, steps=steps, warmup=warmup,
                                  repeats=config.repeats, optimiser_steps=OPTIMISERS_PER_STEP)
    params = sum(p.numel() for n, p in module.named_parameters() if not n.startswith("slow_critic"))
    return _record("dreamer", config, device, steps=steps, warmup=warmup, precision=precision,
                   batch=B, seq_len=T, horizon=H, image_size=run_config.image_size, params=params,
                   grad_steps_per_s=profiling.rates(seconds), replayed_frames_per_s=profiling.rates(seconds, B * T),
                   imagined_steps_per_s=profiling.rates(seconds, B * T * H))


def bench_imagine(config: BenchConfig) -> dict:
    """Dreamer imagination alone: ``N = B*T`` start states rolled ``horizon`` prior steps with the actor."""
    import torch

    from worldmodels.imagination.dreamer import imagine

    device, precision = _setup(config)
    steps, warmup = _steps(config, "imagine")
    module, run_config = _dreamer_module(config)
    module = module.to(device).eval()
    if config.compile:
        from trainers.performance import compile_dreamer

        compile_dreamer(module)
    rssm, actor = module.world_model.rssm, module.actor
    N, H = run_config.batch_size * run_config.seq_len, run_config.horizon
    with torch.no_grad():  # a spread of start states: the initial state after a few random-action prior steps
        start = rssm.initial(N)
        for _ in range(3):
            action = torch.nn.functional.one_hot(torch.randint(0, rssm.action_dim, (N,), device=device),
                                                 rssm.action_dim).float()
            start = rssm.img_step(start, action)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))
    profiling.reset_peak_memory(device)

    def rollout() -> None:
        with autocast:
            imagine(rssm, actor, start, H)

    seconds = profiling.time_repeats(rollout, steps=steps, repeats=config.repeats, warmup=warmup, device=device)
    return _record("imagine", config, device, steps=steps, warmup=warmup, precision=precision,
                   starts=N, horizon=H, deter=run_config.deter, rollouts_per_s=profiling.rates(seconds),
                   imagined_steps_per_s=profiling.rates(seconds, N * H))


def bench_dream_controller(config: BenchConfig) -> dict:
    """Controller-in-dream rate (population 64 x 16 repeats x T): the family's ``bench_dream``, repeated."""
    from worldmodels.imagination.dream import bench_dream

    device, _ = _setup(config)  # bench_dream runs in fp32
    steps, _ = _steps(config, "dream")  # bench_dream warms up itself (a 5-step rollout)
    wm = _wm_config(config)
    profiling.reset_peak_memory(device)
    rates = []
    for _ in range(config.repeats):
        for _ in range(steps):
            last = bench_dream(wm.population, wm.repeats, config.dream_horizon, device=str(device), z_dim=wm.z_dim,
                               hidden_size=wm.hidden_size, num_mixtures=wm.num_mixtures)
            rates.append(last["dream_steps_per_second"])
    per_repeat = [statistics.mean(rates[k * steps:(k + 1) * steps]) for k in range(config.repeats)]
    return _record("dream", config, device, steps=steps, warmup=0, population=wm.population,
                   dream_repeats=wm.repeats, horizon=config.dream_horizon, hidden_size=wm.hidden_size,
                   z_dim=wm.z_dim, num_mixtures=wm.num_mixtures, dream_steps_per_s=profiling.spread(per_repeat),
                   batch_steps_per_s=profiling.scale_spread(profiling.spread(per_repeat),
                                                            1.0 / (wm.population * wm.repeats)))


def bench_loader(config: BenchConfig) -> dict:
    """Frames/s that ``ChunkDataModule`` delivers for V (seq_len 1, ``vae_batch_size`` frames) per worker count.

    The store is synthetic (random uint8 frames, written to a temporary directory, read back through
    ``np.load(mmap_mode="r")`` like a real one). Compare ``frames_per_s`` with the ``worldmodels`` record's
    ``vae.frames_per_s``: the loader keeps the step fed when it delivers more.
    """
    import tempfile

    from trainers.datamodule import ChunkDataModule
    from trainers.performance import loader_options
    from worldmodels.data.store import EpisodeStore
    from worldmodels.envs.spaces import ActionSpec

    device, _ = _setup(config)
    steps, warmup = _steps(config, "loader")
    wm = _wm_config(config)
    side, batch = wm.image_size, wm.vae_batch_size
    rng = np.random.default_rng(config.seed)
    records = {}
    with tempfile.TemporaryDirectory(prefix="wm-bench-store-") as root:
        store = EpisodeStore.create(root, env_id="Bench-v0", obs_shape=(side, side, 3),
                                    action_spec=ActionSpec("discrete", 3))
        length, needed = 200, batch * (warmup + steps * config.repeats)
        for _ in range(max(4, min(needed, 20_000) // length + 1)):  # up to 20k frames on disk; windows repeat beyond
            store.add_episode(rng.integers(0, 256, (length, side, side, 3), dtype=np.uint8), rng.integers(0, 3, length),
                              np.zeros(length, np.float32), np.zeros(length, bool), np.zeros(length, bool))
        for workers in (int(w) for w in config.loader_workers.split(",")):
            options = loader_options(on_cuda=device.type == "cuda", num_workers=workers)
            datamodule = ChunkDataModule(root, seq_len=1, batch_size=batch, val_fraction=0.0, seed=config.seed,
                                         num_workers=workers, pin_memory=options["pin_memory"],
                                         samples_per_epoch=needed)
            datamodule.setup("fit")
            iterator = iter(datamodule.train_dataloader())
            seconds = profiling.time_repeats(lambda batches=iterator: next(batches), steps=steps, repeats=config.repeats,
                                             warmup=warmup)
            records[str(workers)] = {"batches_per_s": profiling.rates(seconds),
                                     "frames_per_s": profiling.rates(seconds, batch)}
            del iterator
    return _record("loader", config, device, steps=steps, warmup=warmup, batch_frames=batch, image_size=side,
                   workers=records)


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
