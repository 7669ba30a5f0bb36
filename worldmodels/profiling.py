"""Timing and memory helpers for benchmarks: warm-up, repeated timed runs, median + spread, peak memory.

A measurement is ``warmup`` untimed calls, then ``repeats`` timed runs of ``steps`` calls each::

    |-- warmup --|-- repeat 1: steps --|-- repeat 2: steps --| ...
                  t0                 t1                     t2          rate_k = units * steps / (t_k - t_{k-1})

Each timed run ends with a device synchronisation (CUDA kernels are asynchronous: without it the clock
stops while work is still queued). Nothing here syncs *inside* a run, so the loop under test keeps
whatever host/device overlap it has.

Peak memory: ``ru_maxrss`` (kilobytes on Linux) is the process's resident-set high-water mark since it
started, so it can only grow across benchmarks run in one process; ``torch.cuda.max_memory_allocated``
is reset by :func:`reset_peak_memory` before each benchmark.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable

import torch


DEVICES = ("auto", "cpu", "cuda")  # what a --device flag of a command that loads a model accepts


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r} is not supported; use auto, cpu or cuda (e.g. cuda:1)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False; use --device cpu or auto")
    return device


def synchronize(device: torch.device | str) -> None:
    """Wait for queued kernels on ``device`` (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def spread(values: list[float]) -> dict:
    """``{"median", "min", "max", "runs"}`` of a list of per-repeat figures."""
    if not values:
        raise ValueError("spread() of no values")
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": list(values)}


def scale_spread(stats: dict, factor: float) -> dict:
    """The same spread with every figure multiplied by ``factor`` (e.g. steps/s -> frames/s)."""
    return {"median": stats["median"] * factor, "min": stats["min"] * factor, "max": stats["max"] * factor,
            "runs": [v * factor for v in stats["runs"]]}


def time_repeats(fn: Callable[[], object], *, steps: int, repeats: int, warmup: int,
                 device: torch.device | str = "cpu") -> list[float]:
    """Seconds per call of ``fn`` for each of ``repeats`` runs of ``steps`` calls, after ``warmup`` calls."""
    if min(steps, repeats) < 1 or warmup < 0:
        raise ValueError(f"steps and repeats must be >= 1 and warmup >= 0, got {steps}, {repeats}, {warmup}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(steps):
            fn()
        synchronize(device)
        seconds.append((time.perf_counter() - began) / steps)
    return seconds


def rates(seconds_per_step: list[float], units_per_step: float = 1.0) -> dict:
    """Per-repeat seconds per step -> spread of ``units_per_step / seconds`` (units/s)."""
    return spread([units_per_step / s for s in seconds_per_step])


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def reset_peak_memory(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gpu_mb(device: torch.device | str) -> float | None:
    """``torch.cuda.max_memory_allocated`` in MiB since the last reset; ``None`` off CUDA."""
    if torch.device(device).type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / (1024.0 * 1024.0)


def memory_record(device: torch.device | str) -> dict:
    return {"peak_rss_mb": peak_rss_mb(), "peak_gpu_mb": peak_gpu_mb(device)}


def environment(device: torch.device | str) -> dict:
    """Where a figure came from: torch version, device (GPU name), thread count, Python."""
    device = torch.device(device)
    return {
        "torch": torch.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------------------- CPU threads

def _probe_seconds(threads: int, rows: int, width: int, repeats: int) -> float:
    """Best-of-``repeats`` seconds of one dense layer (``Linear -> LayerNorm -> SiLU``) and its backward."""
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 3 * width, generator=generator)
    weight = torch.randn(width, 3 * width, generator=generator, requires_grad=True)
    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms the thread pool up
        began = time.perf_counter()
        out = torch.nn.functional.silu(torch.nn.functional.layer_norm(x @ weight.t(), (width,)))
        out.sum().backward()
        best = min(best, time.perf_counter() - began)
    return best


def auto_threads(*, rows: int = 1024, width: int = 512, repeats: int = 3) -> int:
    """The CPU thread count (1 .. usable cores) that runs a Dreamer-sized dense layer fastest, measured now.

    Why measure: on an idle 2-core machine two threads ran the Dreamer S update 1.6x faster than one;
    on a busy one (other processes on the cores) one thread was up to 2.8x faster (tiny update), because
    torch's threads wait for each other at every op. ``rows x width`` should be the model's
    ``batch * seq_len x hidden``; the probe takes about ``0.1 s`` per candidate at the default size.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    timings = {n: _probe_seconds(n, rows, width, repeats) for n in range(1, cores + 1)}
    return min(timings, key=timings.get)


def set_threads(threads: int | str, *, rows: int = 1024, width: int = 512) -> int:
    """Apply a ``--threads`` value and return the thread count in use.

    ``"auto"``: measured by :func:`auto_threads` (``rows``, ``width``: the model's work per layer);
    ``0``: torch's default (one per physical core); ``n > 0``: exactly ``n``.
    """
    if str(threads) == "auto":
        torch.set_num_threads(auto_threads(rows=rows, width=width))
    else:
        try:
            count = int(threads)
        except ValueError:
            raise ValueError(f"--threads must be 'auto' or an integer >= 0, got {threads!r}") from None
        if count < 0:
            raise ValueError(f"--threads must be 'auto' or an integer >= 0, got {threads!r}")
        if count > 0:
            torch.set_num_threads(count)
    return torch.get_num_threads()
