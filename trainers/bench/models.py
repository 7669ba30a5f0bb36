"""Model benchmarks of ``wm bench``: World Models V/M steps, Dreamer update, imagination, dream, loader, planning."""

from __future__ import annotations

import statistics
import tempfile
import time

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from trainers.bench.config import BenchConfig, machine_info, steps_and_warmup
from trainers.bench.fixtures import FixedBatches, synthetic_batch
from trainers.data.datamodule import ChunkDataModule
from trainers.modules.dreamer import OPTIMISERS_PER_STEP, DreamerAgentConfig, DreamerModule
from trainers.runs.dreamer import PRESETS as DREAMER_PRESETS
from trainers.runs.dreamer import DreamerRunConfig
from trainers.runs.performance import compile_dreamer, default_precision, keep_cpu_heap, loader_options, use_channels_last
from trainers.runs.worldmodels_config import PRESETS as WM_PRESETS
from trainers.runs.worldmodels_config import WorldModelsConfig
from trainers.runs.worldmodels_stages import mdnrnn_module, vae_module
from worldmodels import profiling
from worldmodels.config import build_config, from_dict, to_dict
from worldmodels.core import index_state
from worldmodels.data.store import EpisodeStore
from worldmodels.envs.spaces import ActionSpec
from worldmodels.imagination.cmaes_dream import bench_dream
from worldmodels.models.vm_world_model import VMWorldModel
from worldmodels.planning import CEM
from worldmodels.policies import RandomPolicy


def _setup(config: BenchConfig, *, dreamer: bool = False) -> tuple[torch.device, str]:
    """Device, Lightning precision; applies ``--threads`` and :func:`keep_cpu_heap` (``dreamer``: with ``mmap``
    off, as ``wm dreamer`` runs)."""
    keep_cpu_heap(mmap=not dreamer)
    profiling.set_threads(config.threads)
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
    trainer.fit(module, train_dataloaders=DataLoader(FixedBatches(batch), batch_size=None, pin_memory=pin))
    assert len(stamps) == batches + 1, f"expected {batches + 1} clock stamps, got {len(stamps)}"
    return [(stamps[warmup + (k + 1) * steps] - stamps[warmup + k * steps]) / steps for k in range(repeats)]


def _wm_config(config: BenchConfig):
    return build_config(WorldModelsConfig, {}, presets=WM_PRESETS, preset=config.wm_preset)


def _dreamer_config(config: BenchConfig):
    return build_config(DreamerRunConfig, {}, presets=DREAMER_PRESETS, preset=config.dreamer_preset)


def bench_worldmodels(config: BenchConfig) -> dict:
    """V step (VAEModule on ``vae_batch_size`` frames) and M step (MDNRNNModule on ``B x seq_len`` latents).

    Sizes from the World Models preset (``paper``: z 32, depth 32, batch 100 frames; LSTM 256, 5 mixtures,
    100 sequences of 999 steps). Random uint8 frames / Gaussian latents; 3 continuous actions (CarRacing).
    """


    device, precision = _setup(config)
    steps, warmup = steps_and_warmup(config, "worldmodels")
    wm = _wm_config(config)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)

    B, side = wm.vae_batch_size, wm.image_size
    vae = vae_module(wm)
    if device.type == "cuda":
        use_channels_last(vae)
    frames = {"obs": torch.randint(0, 256, (B, 1, side, side, 3), generator=generator, dtype=torch.uint8)}
    vae_seconds = time_training_steps(vae, frames, device=device, precision=precision, steps=steps, warmup=warmup,
                                      repeats=config.repeats)

    B, T, Z, A = wm.mdnrnn_batch_size, wm.mdnrnn_seq_len, wm.z_dim, 3
    mdn = mdnrnn_module(wm, A)
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
    run_config = _dreamer_config(config)
    torch.manual_seed(config.seed)
    side = run_config.image_size
    module = DreamerModule(obs_shape=(side, side, 3), action_spec=ActionSpec("discrete", action_dim),
                           config=from_dict(DreamerAgentConfig, to_dict(run_config)))
    return module, run_config


def bench_dreamer_step(config: BenchConfig) -> dict:
    """One DreamerV3 training step (world model, imagination from all B*T posteriors, actor, critic)."""
    device, precision = _setup(config, dreamer=True)
    steps, warmup = steps_and_warmup(config, "dreamer")
    module, run_config = _dreamer_module(config)
    if device.type == "cuda":
        use_channels_last(module)
    if config.compile:
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
    """Dreamer imagination alone: ``N = B*T`` start states rolled ``horizon`` prior steps with the actor
    (``world_model.imagine``, including the reward and continue heads the actor-critic reads)."""
    device, precision = _setup(config, dreamer=True)
    steps, warmup = steps_and_warmup(config, "imagine")
    module, run_config = _dreamer_module(config)
    module = module.to(device).eval()
    if config.compile:
        compile_dreamer(module)
    world_model, head = module.world_model, module.actor_head()
    N, H = run_config.batch_size * run_config.seq_len, run_config.horizon
    with torch.no_grad():  # a spread of start states: the initial state after a few random-action prior steps
        warm = world_model.imagine(world_model.initial(N), RandomPolicy(world_model.action_spec, 0, device), 3)
        start = index_state(warm.states, (slice(None), -1))  # (N, ...)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))
    profiling.reset_peak_memory(device)

    @torch.no_grad()
    def rollout() -> None:
        with autocast:
            world_model.imagine(start, head, H)

    seconds = profiling.time_repeats(rollout, steps=steps, repeats=config.repeats, warmup=warmup, device=device)
    return _record("imagine", config, device, steps=steps, warmup=warmup, precision=precision,
                   starts=N, horizon=H, deter=run_config.deter, rollouts_per_s=profiling.rates(seconds),
                   imagined_steps_per_s=profiling.rates(seconds, N * H))


def bench_dream_controller(config: BenchConfig) -> dict:
    """Controller-in-dream rate (population 64 x 16 repeats x T): the family's ``bench_dream``, repeated."""
    device, _ = _setup(config)  # bench_dream runs in fp32
    steps, _ = steps_and_warmup(config, "dream")  # bench_dream warms up itself (a 5-step rollout)
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


    device, _ = _setup(config)
    steps, warmup = steps_and_warmup(config, "loader")
    wm = _wm_config(config)
    side, batch = wm.image_size, wm.vae_batch_size
    rng = np.random.default_rng(config.seed)
    records = {}
    with tempfile.TemporaryDirectory(prefix="wm-bench-store-") as root:
        store = EpisodeStore.create(root, env_id="Bench-v0", obs_shape=(side, side, 3),
                                    action_spec=ActionSpec("discrete", 3))
        length, needed = 100, batch * (warmup + steps * config.repeats)
        # 300 episodes (30k frames): more episodes than a loader keeps open, as in a real store.
        for _ in range(300):
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


def bench_plan(config: BenchConfig) -> dict:
    """Planning rate per family: one CEM call (one iteration) scores ``num_envs x plan_candidates x plan_particles``
    sequences of ``plan_horizon`` steps in ONE ``imagine`` call; imagined steps/s = that product / seconds.

    World Models V + M at the ``wm_preset`` sizes with 3 Box actions (CarRacing), CEM over a truncated normal;
    Dreamer's RSSM at the ``dreamer_preset`` sizes with 6 discrete actions, CEM over categoricals.
    """
    device, precision = _setup(config)
    steps, warmup = steps_and_warmup(config, "plan")
    torch.manual_seed(config.seed)
    wm = _wm_config(config)
    box = ActionSpec("continuous", 3, (-1.0,) * 3, (1.0,) * 3)
    vm = VMWorldModel(vae_module(wm).vae, mdnrnn_module(wm, box.dim).mdnrnn, box).to(device).eval()
    models = {"worldmodels": vm, "dreamer": _dreamer_module(config)[0].world_model.to(device).eval()}
    B, N, H, P = config.num_envs, config.plan_candidates, config.plan_horizon, config.plan_particles
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))
    profiling.reset_peak_memory(device)
    figures = {}
    for family, world_model in models.items():
        with torch.no_grad():  # a spread of start states: a few random-action prior steps from the initial state
            warm = world_model.imagine(world_model.initial(B), RandomPolicy(world_model.action_spec, 0, device), 3)
            start = index_state(warm.states, (slice(None), -1))  # (B, ...)
        planner = CEM(world_model.action_spec, horizon=H, candidates=N, iterations=1, particles=P, seed=config.seed)

        def plan(world_model=world_model, start=start, planner=planner) -> None:
            with autocast:
                planner.plan(world_model, start)

        seconds = profiling.time_repeats(plan, steps=steps, repeats=config.repeats, warmup=warmup, device=device)
        figures[family] = {"action_kind": world_model.action_spec.kind, "plans_per_s": profiling.rates(seconds),
                           "ms_per_action": profiling.spread([1000.0 * s / B for s in seconds]),
                           "imagined_steps_per_s": profiling.rates(seconds, B * N * P * H)}
    return _record("plan", config, device, steps=steps, warmup=warmup, precision=precision, envs=B, candidates=N,
                   horizon=H, particles=P, **figures)
