"""Speed switches shared by the training entry points and ``wm bench``; each is opt-in or device-gated.

========================  ==========================================================  =====================
switch                    what                                                        default
========================  ==========================================================  =====================
``default_precision``     ``bf16-mixed`` on CUDA (Lightning autocast), ``32-true`` CPU  on with CUDA
``use_channels_last``     conv weights in NHWC so cuDNN picks NHWC kernels; our images  on with CUDA
                          are NHWC in storage already (``to_float_image`` permutes).
                          On CPU the conv stacks keep NHWC activations themselves
                          (``worldmodels/models/conv.py``: oneDNN NHWC ~1.7x NCHW)
``loader_options``        ``pin_memory`` (+ Lightning's ``non_blocking`` copies),     pin with CUDA
                          worker count, ``persistent_workers``, ``prefetch_factor``
``compile_dreamer``       ``torch.compile`` of the RSSM steps, conv stacks and heads   off (``--compile``)
``keep_cpu_heap``         glibc malloc keeps freed blocks (no ``mmap`` blocks, 1 GB    on (``wm dreamer``,
                          trim threshold) instead of returning them to the OS, so a    ``wm bench``), Linux
                          training step does not page-fault its activations afresh
========================  ==========================================================  =====================

Lightning moves batches with ``.to(device, non_blocking=True)`` for CUDA targets, so pinned host memory
is all that is needed for asynchronous copies. Measurements behind the defaults: see ``wm bench``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch
from torch import nn


def default_precision(accelerator_or_device: str | torch.device) -> str:
    """Lightning precision: bf16 autocast on CUDA (``bf16-mixed``), full fp32 elsewhere."""
    kind = torch.device(accelerator_or_device).type if not isinstance(accelerator_or_device, str) else accelerator_or_device
    if kind in ("cuda", "gpu") or (kind == "auto" and torch.cuda.is_available()):
        return "bf16-mixed"
    return "32-true"


def use_channels_last(module: nn.Module) -> nn.Module:
    """Convert every 4-d conv weight of ``module`` to ``torch.channels_last`` (in place); returns ``module``."""
    for sub in module.modules():
        if isinstance(sub, (nn.Conv2d, nn.ConvTranspose2d)):
            sub.to(memory_format=torch.channels_last)
    return module


def loader_options(*, on_cuda: bool, num_workers: int, prefetch_factor: int = 4) -> dict:
    """``DataLoader`` keyword arguments that keep the accelerator fed.

    Workers persist across epochs (no re-fork per epoch) and each keeps ``prefetch_factor`` batches ready;
    pinned memory only pays off when the batch is then copied to a CUDA device.
    """
    options = {"num_workers": num_workers, "pin_memory": on_cuda, "persistent_workers": num_workers > 0}
    if num_workers > 0:
        options["prefetch_factor"] = prefetch_factor
    return options


def compile_dreamer(module: nn.Module, **compile_kwargs) -> nn.Module:
    """Compile a ``DreamerModule``'s hot paths in place: the RSSM steps, encoder, decoder, heads.

    RSSM: ``img_step`` (imagination, acting) and the two per-step functions of ``observe``'s loop
    (``_recurrent``, ``_posterior_logits``). The Python time loops (``observe``, ``imagine``) stay eager:
    compiling through them would unroll ``T`` or ``H`` steps into one graph (long compiles, a recompile
    per sequence length).
    """
    world_model = module.world_model
    rssm = world_model.rssm
    for name in ("img_step", "_recurrent", "_posterior_logits"):
        setattr(rssm, name, torch.compile(getattr(rssm, name), **compile_kwargs))
    # The actor's MLP, not the actor: imagination calls ``actor.mlp`` directly (ActorRecorder keeps its output).
    for sub in (world_model.encoder, world_model.decoder, world_model.reward, world_model.cont,
                module.actor.mlp, module.critic):
        sub.compile(**compile_kwargs)
    return module


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_GLIBC_MMAP_MAX = 65536  # glibc's default M_MMAP_MAX


def keep_cpu_heap(*, mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30, mmap: bool = True) -> bool:
    """Tune glibc malloc for training loops; returns whether it applied (Linux/glibc only).

    By default glibc serves large blocks with fresh ``mmap`` pages and unmaps them on free, so every
    activation of every step is page-faulted in again (~0.9M faults and ~1.3 s of kernel time per
    DreamerV3 S-v1 step). Three settings keep freed blocks in the heap for reuse:

    - a 1 GB trim threshold: the heap's free top is not handed back after every step;
    - ``mmap=True`` (the default): blocks up to ``mmap_threshold`` (32 MB, glibc's maximum) come from the heap,
      larger ones from ``mmap`` as usual;
    - ``mmap=False`` (``wm dreamer``, and ``wm bench`` for the Dreamer kinds): no block is served by ``mmap``
      (``M_MMAP_MAX = 0``), so the 134 MB activations of the first conv stages are reused too. At S-v1 and one
      thread that is 7.6-8.4 against 9.9-10.4 process-CPU-seconds per step (shared cores). It raised peak RSS by
      ~0.75 GB (heap fragmentation) until the conv stacks stopped keeping each conv's input
      (``_LayerNormSiLUConv``, about 470 MB less); now the S-v1 peak is 2.6-2.75 GB, below sheeprl's at the same
      widths. Workloads that allocate blocks of many sizes once (the World Models stages, the CMA-ES dream)
      keep ``mmap``: without it their freed blocks stay resident (``wm bench --what all`` peaked at 4.6 GB).

    The setting is process-wide and each call sets it anew, so one process may switch between workloads.
    Transparent huge pages for large blocks (PyTorch's ``THP_MEM_ALLOC_ENABLE=1``) cut the faults 15x but
    quadrupled kernel time.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs without mallopt
        return False
    applied = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
    return applied and bool(mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX if mmap else 0))
