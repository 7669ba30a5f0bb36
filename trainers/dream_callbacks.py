"""The standard set of dream callbacks for each training stage, so every run logs its dreams and KPIs.

    V stage (World Models)      reconstructions, latent traversals
    M stage (World Models)      open-loop predictions, full dreams, KPI scalars (needs real frames: ``batch``,
                                and V to decode M's latents: ``vae``)
    Dreamer (online)            reconstructions, open-loop predictions, full dreams, KPI scalars
    every stage                 an end-of-stage KPI table + the ``tensorboard --logdir`` line

All are optional behaviour (``every_n_steps=0`` turns them off) and write on rank zero only.
"""

from __future__ import annotations

from typing import Any, Mapping

from lightning.pytorch import Callback

from trainers.callbacks import (DreamCallback, KPISummary, LatentTraversalCallback, ModelsFn, OpenLoopCallback,
                                ReconstructionCallback, WorldModelKPICallback)
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.vae import ConvVAE
from worldmodels.models.vm_world_model import VMWorldModel


def with_vae(vae: ConvVAE, action_spec: ActionSpec) -> ModelsFn:
    """``models_fn`` of the M stage (``MDNRNNModule`` trains on latents, without V): V + its M, random actions."""
    return lambda module: (VMWorldModel(vae, module.mdnrnn, action_spec), None)


def dream_interval(every_n_steps: int, total_steps: int | None) -> int:
    """Steps between dream summaries: ``every_n_steps``, but at most a quarter of a run of ``total_steps``.

    ``min(every_n_steps, max(1, total_steps // 4))``, so every run, however short, logs its dreams at least a
    few (about 4) times; 0 (off) stays off, and ``total_steps`` ``None`` keeps ``every_n_steps``.
    """
    if every_n_steps <= 0 or not total_steps:
        return every_n_steps
    return min(every_n_steps, max(1, total_steps // 4))


def dream_callbacks(stage: str, *, every_n_steps: int, total_steps: int | None = None,
                    batch: Mapping[str, Any] | None = None, models_fn: ModelsFn | None = None, context: int = 5,
                    horizon: int = 15) -> list[Callback]:
    """Callbacks for ``stage`` in ``{"vae", "mdnrnn", "dreamer"}``; only the KPI table when ``every_n_steps`` is 0.

    They run every :func:`dream_interval` (``every_n_steps``, shortened for a run of ``total_steps``) steps.
    ``models_fn`` (default: the module's ``dream_models()``) gives what the callbacks render; the M stage
    needs :func:`with_vae`.
    """
    every_n_steps = dream_interval(every_n_steps, total_steps)
    if every_n_steps <= 0:
        return [KPISummary()]
    common = dict(every_n_steps=every_n_steps, batch=batch, models_fn=models_fn)
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
