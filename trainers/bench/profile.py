"""``wm bench --what profile``: where one Dreamer update's time goes, and how close it is to the CPU's limit.

Three figures for the Dreamer preset ``--dreamer-preset`` (default ``S``; the ``cpu`` preset is the one the
Atari runs use), all on one fixed synthetic batch under a real Lightning Trainer, as ``wm bench --what dreamer``:

1. **Shares of the update's wall time** from ``torch.profiler`` over ``--steps`` profiled updates (after
   ``--warmup``; then ``--repeats`` unprofiled ones give the rate), by op kind: convolutions, matmuls, LayerNorm and activations, other tensor ops, the
   optimisers, and what no op accounts for (Python, Lightning, autograd bookkeeping, dispatch between ops).
   The update's phases (world-model loss, its backward and step, imagination, actor-critic) come from the
   ``record_function`` ranges in :class:`~trainers.modules.dreamer.DreamerModule`.
2. **FLOPs of one update** (``torch.utils.flop_counter``: convolutions and matmuls, forward and backward).
3. **The CPU's measured peak**: the best of several large fp32 GEMMs (``--profile-gemm`` square) at the
   same thread count; utilisation = FLOPs x updates/s (unprofiled) / peak.

A profiler adds its own cost to every op, so shares are read off the profiled steps and the rate off
unprofiled ones. On shared cores every figure moves; compare records of one sitting only.
"""

from __future__ import annotations

import collections
import time

import lightning as L
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from trainers.bench.config import BenchConfig, steps_and_warmup
from trainers.bench.fixtures import FixedBatches, synthetic_batch
from trainers.modules.dreamer import OPTIMISERS_PER_STEP, PHASES
from worldmodels import profiling

# Op kinds by the profiler's op name (self time, so a parent op never counts its children twice).
CONV_OPS = {"aten::convolution_backward", "aten::_convolution", "aten::mkldnn_convolution",
            "aten::convolution", "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward",
            "aten::slow_conv_transpose2d", "aten::slow_conv_transpose2d_backward", "aten::mkldnn_convolution_backward"}
MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmv", "aten::mv", "aten::matmul"}
NORM_ACT_OPS = {"aten::native_layer_norm", "aten::native_layer_norm_backward", "aten::silu", "aten::silu_",
                "aten::silu_backward", "aten::sigmoid", "aten::tanh", "aten::sigmoid_backward", "aten::tanh_backward",
                "aten::_softmax", "aten::_log_softmax", "aten::_softmax_backward_data", "aten::_log_softmax_backward_data"}
GEMM_REPEATS = 5


def _kind(name: str) -> str:
    if name in CONV_OPS:
        return "convolution"
    if name in MATMUL_OPS:
        return "matmul"
    if name in NORM_ACT_OPS:
        return "layernorm, activations, softmax"
    if name.startswith("Optimizer."):
        return "optimiser (Adam)"
    if name.startswith("aten::"):
        return "other tensor ops"
    return "autograd nodes, custom functions"


def peak_gemm_flops(side: int, repeats: int = GEMM_REPEATS) -> float:
    """Best fp32 FLOP/s of ``side x side @ side x side`` at the current thread count (2 side^3 FLOPs each)."""
    a, b = torch.randn(side, side), torch.randn(side, side)
    a @ b  # warms the thread pool and the BLAS's buffers
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - began)
    return 2.0 * side**3 / best


def update_flops(module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """FLOPs of one update's forward and backward passes (world model, then imagination + actor-critic)."""
    batch = dict(batch)
    with FlopCounterMode(display=False) as counter:
        parts, post, _ = module.world_model.loss(batch)
        sum(parts.values()).backward()
        model = counter.get_total_flops()
        ac_parts, _ = module.actor_critic_losses(post, batch["terminated"])
        sum(ac_parts.values()).backward()
    module.zero_grad(set_to_none=True)
    by_op = {str(op): float(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return {"total": float(counter.get_total_flops()), "world_model": float(model),
            "actor_critic": float(counter.get_total_flops() - model), "by_op": by_op}


class _Window(L.Callback):
    """Stamps every batch; profiles batches ``[warmup, warmup + profiled)``."""

    def __init__(self, warmup: int, profiled: int) -> None:
        self.warmup, self.profiled = warmup, profiled
        self.seconds: list[float] = []
        self.profiler: profile | None = None
        self._began = 0.0

    def on_train_batch_start(self, *args, **kwargs) -> None:
        if len(self.seconds) == self.warmup:
            self.profiler = profile(activities=[ProfilerActivity.CPU])
            self.profiler.__enter__()
        self._began = time.perf_counter()

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self.seconds.append(time.perf_counter() - self._began)
        if len(self.seconds) == self.warmup + self.profiled and self.profiler is not None:
            self.profiler.__exit__(None, None, None)


def bench_profile(config: BenchConfig) -> dict:
    """Shares of the update by op kind and phase, its FLOPs, and the share of the measured GEMM peak."""
    from trainers.bench.models import _dreamer_module, _record, _setup  # one module builder for every Dreamer bench

    device, precision = _setup(config, dreamer=True)
    if device.type != "cpu":
        raise ValueError("--what profile measures the CPU update; use --device cpu (wm bench --what dreamer times GPUs)")
    steps, warmup = steps_and_warmup(config, "profile")
    module, run_config = _dreamer_module(config)
    B, T = run_config.batch_size, run_config.seq_len
    batch = synthetic_batch(B, T, run_config.image_size, module.action_spec.dim, seed=config.seed)
    flops = update_flops(module, batch)
    timed = config.repeats
    window = _Window(warmup, steps)
    trainer = L.Trainer(max_steps=OPTIMISERS_PER_STEP * (warmup + steps + timed), max_epochs=-1, accelerator="cpu",
                        devices=1, precision=precision, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[window],
                        num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=DataLoader(FixedBatches(batch), batch_size=None))
    profiled = window.seconds[warmup:warmup + steps]
    unprofiled = window.seconds[warmup + steps:]
    wall = sum(profiled) / steps
    events = window.profiler.key_averages()  # type: ignore[union-attr]
    kinds: collections.Counter = collections.Counter()
    phases: dict[str, float] = {}
    for event in events:
        if event.key in PHASES:  # a range, not an op: its total (children included) is the phase's time
            phases[event.key] = event.cpu_time_total / steps / 1e6
            continue
        kinds[_kind(event.key)] += event.self_cpu_time_total / steps / 1e6
    attributed = sum(kinds.values())
    kinds["Python, Lightning, dispatch (no op)"] = max(wall - attributed, 0.0)
    rate = profiling.spread([1.0 / s for s in unprofiled])
    peak = peak_gemm_flops(config.profile_gemm)
    return _record("profile", config, device, steps=steps, warmup=warmup, precision=precision, batch=B, seq_len=T,
                   horizon=run_config.horizon, profiled_seconds_per_update=wall,
                   shares={kind: {"seconds": s, "share": s / wall} for kind, s in kinds.most_common()},
                   phases={name: {"seconds": s, "share": s / wall} for name, s in phases.items()},
                   updates_per_s=rate, flops_per_update=flops, gemm_side=config.profile_gemm, peak_gemm_flops=peak,
                   flop_utilisation=flops["total"] * rate["median"] / peak)
