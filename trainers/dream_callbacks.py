"""The standard set of dream callbacks for each training stage, so every run logs its dreams and KPIs.

    V stage (World Models)      reconstructions, latent traversals
    M stage (World Models)      open-loop predictions, full dreams, KPI scalars (needs real frames: ``batch``)
    Dreamer (online)            reconstructions, open-loop predictions, full dreams, KPI scalars
    every stage                 an end-of-stage KPI table + the ``tensorboard --logdir`` line

All are optional behaviour (``every_n_steps=0`` turns them off) and write on rank zero only.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from lightning.pytorch import Callback

from trainers.callbacks import (DreamCallback, KPISummary, LatentTraversalCallback, OpenLoopCallback,
                                ReconstructionCallback, WorldModelKPICallback)


def dream_callbacks(stage: str, *, every_n_steps: int, batch: Mapping[str, Any] | None = None,
                    view_fn: Callable[[Any], Any] | None = None, context: int = 5, horizon: int = 15) -> list[Callback]:
    """Callbacks for ``stage`` in ``{"vae", "mdnrnn", "dreamer"}``; only the KPI table when ``every_n_steps`` is 0."""
    if every_n_steps <= 0:
        return [KPISummary()]
    common = dict(every_n_steps=every_n_steps, batch=batch, view_fn=view_fn)
    sequence = dict(context=context, horizon=horizon)
    if stage == "vae":
        chosen: list[Callback] = [ReconstructionCallback(**common), LatentTraversalCallback(**common)]
    elif stage == "mdnrnn":
        chosen = [OpenLoopCallback(**common, **sequence), DreamCallback(**common, **sequence),
                  WorldModelKPICallback(**common, context=context)]
    elif stage == "dreamer":
        chosen = [ReconstructionCallback(**common), OpenLoopCallback(**common, **sequence),
                  DreamCallback(**common, **sequence), WorldModelKPICallback(**common, context=context)]
    else:
        raise ValueError(f"unknown stage {stage!r}; choose vae, mdnrnn or dreamer")
    return [*chosen, KPISummary()]
