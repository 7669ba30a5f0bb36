"""The one finiteness check of training: a NaN or inf loss, gradient, fitness or weight stops the run.

A diverged run used to finish "successfully": every tensor NaN, the NaN model checkpointed, exported and
marked DONE, and a "return 0.000 vs random 0.000" line printed. :func:`check_finite` costs one host sync
for all the values of a step and raises a one-line :class:`NonFiniteError` naming where (stage, step) and
which value (a loss part, the gradient norm, a fitness) went bad. Raised before the optimiser step (or
the checkpoint, export or DONE marker), so nothing of the bad step is ever saved.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch


class NonFiniteError(ValueError):
    """A non-finite loss, gradient norm, fitness or weight; the message names the stage, step and value."""


def all_finite(values: Sequence[torch.Tensor | float]) -> bool:
    """Whether every element of every value is finite: one host sync for all of them."""
    tensors = [torch.as_tensor(v).detach().reshape(-1).float() for v in values]
    return not tensors or bool(torch.isfinite(torch.cat([t.to(tensors[0].device) for t in tensors])).all())


def check_finite(values: Mapping[str, torch.Tensor | float], *, where: str, hint: str = "") -> None:
    """Raise :class:`NonFiniteError` naming the first non-finite entry of ``values`` (``name -> scalar or tensor``).

    ``where`` says what was running (``"vae step 3"``); ``hint`` what to try (``"lower --vae-lr"``).
    """
    if all_finite(list(values.values())):
        return
    tensors = [torch.as_tensor(v).detach().reshape(-1).float() for v in values.values()]
    for name, tensor in zip(values, tensors):
        bad = tensor[~torch.isfinite(tensor)]
        if bad.numel():
            raise NonFiniteError(f"{where}: {name} is {float(bad[0])}; training stopped before this step was applied "
                                 f"or saved (the last good checkpoint is kept){'; ' + hint if hint else ''}")


def batch_problem(batch: Mapping[str, torch.Tensor]) -> str | None:
    """What of a training batch is not finite (its rewards or float observations), else ``None``: a loss that goes
    NaN on NaN data is the env's or the store's fault, and a lower learning rate would not help."""
    for key in ("reward", "obs"):
        value = batch.get(key)
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return (f"the batch's {key} is not finite: the env's (or --store's) data went bad, not the learning "
                    "rate; `wm doctor --env ID` checks an env")
    return None
