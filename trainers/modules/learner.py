"""The one learner step of every optimiser in the project: weighted loss parts -> backward -> clip -> finite check
-> step (DreamerV3's ``agent.train``: one optimiser call per module, the loss weighted in one place).

    total = sum_k scale_k * part_k            the parts are unweighted (named, from the loss function)
    zero_grad; backward(total)                ``backward``: Lightning's ``manual_backward`` in a LightningModule
    norm = ||grad||_2 (clipped to ``clip``)   over the optimisers' parameters
    parts and norm finite?                    else NonFiniteError (one line: where, the first bad part, a hint),
                                              raised BEFORE the step, so the bad update is never applied or saved
    step

Plain loops (PETS' ensemble fit, MBPO's SAC, TD-MPC's model and prior) and the Lightning modules' manual steps call
:func:`learner_step`. Cost: one host sync per step (the finite check), which the guard needs anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch.nn.utils import clip_grad_norm_, get_total_norm

from worldmodels.finite import all_finite, check_finite


def weighted_total(parts: Mapping[str, torch.Tensor], scales: Mapping[str, float] | None) -> torch.Tensor:
    """``sum_k scales[k] * parts[k]`` (every scale 1 when ``scales`` is None); the keys must be the same."""
    if scales is not None:
        assert parts.keys() == scales.keys(), f"loss parts {sorted(parts)} vs scales {sorted(scales)}"
        return sum(scales[name] * value for name, value in parts.items())
    return sum(parts.values())


def learner_step(optimizers: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
                 parts: Mapping[str, torch.Tensor], *, where: str, scales: Mapping[str, float] | None = None,
                 clip: float | None = None, hint: str | Callable[[], str] = "",
                 backward: Callable[[torch.Tensor], None] | None = None,
                 clip_with: Callable[[], None] | None = None, check_norm: bool = True,
                 total: torch.Tensor | None = None) -> torch.Tensor:
    """One step of ``optimizers`` on the weighted ``parts`` (module docstring); returns the gradient norm (before
    clipping by ``clip``; after ``clip_with``), a ``()`` tensor.

    Several optimisers step together when their losses share one backward (SAC: disjoint graphs per part).
    ``total`` replaces the weighted sum when the caller built it already (it must be that sum). ``hint`` (or
    ``hint()``, called only on failure) says what to try. A LightningModule passes ``backward=self.manual_backward``
    and ``clip_with`` (its precision-aware ``clip_gradients``, which unscales fp16 gradients first); ``check_norm``
    False leaves an inf gradient to a loss scaler, whose signal to skip a step it is.
    """
    optimizers = list(optimizers) if isinstance(optimizers, (list, tuple)) else [optimizers]  # or a LightningOptimizer
    loss = weighted_total(parts, scales) if total is None else total
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    (backward or torch.Tensor.backward)(loss)
    params = [p for optimizer in optimizers for group in optimizer.param_groups for p in group["params"]]
    if clip_with is not None:
        clip_with()
    if clip is not None and clip_with is None:
        norm = clip_grad_norm_(params, clip)
    else:  # the norm after the caller's clip (or without one)
        grads = [p.grad for p in params if p.grad is not None]
        norm = get_total_norm(grads) if grads else torch.zeros(())
    values = {f"loss part {name!r}": value for name, value in parts.items()}
    if check_norm:
        values["gradient norm"] = norm
    if not all_finite(list(values.values())):
        check_finite(values, where=where, hint=hint() if callable(hint) else hint)
    for optimizer in optimizers:
        optimizer.step()
    return norm
