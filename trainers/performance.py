"""Speed switches shared by the training entry points and ``wm bench``; each is opt-in or device-gated.

========================  ==========================================================  =====================
switch                    what                                                        default
========================  ==========================================================  =====================
``default_precision``     ``bf16-mixed`` on CUDA (Lightning autocast), ``32-true`` CPU  on with CUDA
``use_channels_last``     conv weights in NHWC so cuDNN picks NHWC kernels; our images  on with CUDA
                          are NHWC in storage already (``to_float_image`` permutes)
``loader_options``        ``pin_memory`` (+ Lightning's ``non_blocking`` copies),     pin with CUDA
                          worker count, ``persistent_workers``, ``prefetch_factor``
``compile_dreamer``       ``torch.compile`` of the RSSM steps, conv stacks and heads   off (``--compile``)
========================  ==========================================================  =====================

Lightning moves batches with ``.to(device, non_blocking=True)`` for CUDA targets, so pinned host memory
is all that is needed for asynchronous copies. Measurements behind the defaults: see ``wm bench``.
"""

from __future__ import annotations

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
    """Compile a ``DreamerModule``'s hot paths in place: RSSM ``obs_step``/``img_step``, encoder, decoder, heads.

    The Python time loops (``observe``, ``imagine``) stay eager: compiling through them would unroll
    ``T`` or ``H`` steps into one graph (long compiles, a recompile per sequence length).
    """
    world_model = module.world_model
    rssm = world_model.rssm
    rssm.img_step = torch.compile(rssm.img_step, **compile_kwargs)
    rssm.obs_step = torch.compile(rssm.obs_step, **compile_kwargs)
    for sub in (world_model.encoder, world_model.decoder, world_model.reward, world_model.cont,
                module.actor, module.critic):
        sub.compile(**compile_kwargs)
    return module
