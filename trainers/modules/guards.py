"""Training guards: a non-finite loss or gradient norm stops a stage before its optimiser step.

:class:`FiniteGuard` is the Lightning callback of the automatically optimised stages (V, M); Dreamer's
manual loop calls :func:`check_update` in its ``_update``. Both raise :class:`~worldmodels.finite.NonFiniteError`
(one line: stage, step, the loss part or the gradient norm) before ``optimizer.step``, so the weights of the
bad step are never applied; the exception ends ``trainer.fit`` before any later checkpoint, export or DONE.
Cost: one host sync per optimiser step (Lightning's ``detect_anomaly`` is far slower).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
from torch.nn.utils import get_total_norm

from worldmodels.finite import all_finite, check_finite


def gradient_norm(optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """Total 2-norm of the gradients of ``optimizer``'s parameters (0 when none has a gradient)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return get_total_norm(grads) if grads else torch.zeros(())


def scales_loss(trainer: L.Trainer) -> bool:
    """fp16 training scales the loss: an inf gradient there is the scaler's signal to skip a step, not a divergence."""
    return getattr(trainer.precision_plugin, "scaler", None) is not None


def check_update(trainer: L.Trainer, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                 parts: Callable[[], Mapping[str, Any]], *, where: str, hint: str | Callable[[], str] = "") -> None:
    """Raise, naming the first bad loss part, when ``loss`` or the gradient norm of ``optimizer`` is not finite.

    ``parts()`` gives the named loss parts and ``hint()`` (or ``hint``) what to try; both are called only after a
    failure, to name the part that went bad and its likely cause.
    """
    values = [loss] if scales_loss(trainer) else [loss, gradient_norm(optimizer)]
    if all_finite(values):
        return
    named = {f"loss part {key!r}": value for key, value in parts().items()}
    check_finite({**named, "loss": loss, **({"gradient norm": values[1]} if len(values) > 1 else {})},
                 where=where, hint=hint() if callable(hint) else hint)


class FiniteGuard(L.Callback):
    """Stops stage ``stage`` when its training loss or gradient norm is not finite (automatic optimisation).

    The loss parts are the ones the module logs as ``train/loss/<part>``; they are read only after a
    failure, to name the part that went bad.
    """

    def __init__(self, stage: str, *, hint: str = "") -> None:
        self.stage, self.hint = stage, hint
        self._loss: torch.Tensor | None = None

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        self._loss = loss.detach()

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if self._loss is not None:
            check_update(trainer, optimizer, self._loss, lambda: logged_parts(trainer),
                         where=f"{self.stage} step {trainer.global_step}", hint=self.hint)


def logged_parts(trainer: L.Trainer) -> dict[str, Any]:
    """The step's ``train/loss/<part>`` values as the module logged them (``on_epoch`` adds a ``_step`` twin)."""
    prefix = "train/loss/"
    return {key[len(prefix):].removesuffix("_step"): value for key, value in trainer.callback_metrics.items()
            if key.startswith(prefix) and not key.endswith("_epoch")}
