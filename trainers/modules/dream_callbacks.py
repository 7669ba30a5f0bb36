"""The standard set of dream callbacks for each training stage, so every run logs its dreams and KPIs.

    V stage (World Models)      reconstructions, latent traversals
    M stage (World Models)      open-loop predictions, full dreams, KPI scalars (needs real frames: ``batch``,
                                and V to decode M's latents: ``vae``)
    Dreamer (online)            reconstructions, open-loop predictions, full dreams, KPI scalars
    every stage                 an end-of-stage KPI table + the ``tensorboard --logdir`` line

The KPI scalars follow the fair open-loop protocol by default (:class:`FairKPICallback`,
:mod:`worldmodels.open_loop`: windows anywhere in the episodes, K samples, moving pixels, reward events, termination),
keyed ``kpi/<name>_h<k>_val`` on the store's held-out episodes (M stage; ``episodes``) and ``kpi/<name>_h<k>_replay``
on the Dreamer's replay batch (a run has no second policy to play here; ``wm dream`` scores random and agent
episodes). ``protocol="first-rows"`` logs the old :class:`~trainers.modules.callbacks.WorldModelKPICallback` instead.

All are optional behaviour (``every_n_steps=0`` turns them off) and write on rank zero only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from lightning.pytorch import Callback

from trainers.modules.callbacks import (DreamCallback, KPISummary, LatentTraversalCallback, ModelsFn, OpenLoopCallback,
                                ReconstructionCallback, WorldModelKPICallback)
from trainers.data.datamodule import ChunkDataModule
from worldmodels import open_loop
from worldmodels.data.store import EpisodeStore
from worldmodels.envs.spaces import ActionSpec
from worldmodels.kpis import kpi_horizons
from worldmodels.models.vae import ConvVAE
from worldmodels.models.vm_world_model import VMWorldModel


def with_vae(vae: ConvVAE, action_spec: ActionSpec) -> ModelsFn:
    """``models_fn`` of the M stage (``MDNRNNModule`` trains on latents, without V): V + its M, random actions."""
    return lambda module: (VMWorldModel(vae, module.mdnrnn, action_spec), None)


class FairKPICallback(WorldModelKPICallback):
    """The fair open-loop KPIs (:func:`worldmodels.open_loop.fair_kpis`) of the run's own data, as scalars.

    Scores ``episodes`` (whole store-encoded episodes, e.g. :func:`heldout_episodes`) when given, else the held-out
    batch cut at its episode starts (:func:`~worldmodels.open_loop.batch_fragments`). The windows and samples are
    seeded by ``seed`` at every call, so the figures of successive steps score the same windows. Keys
    ``kpi/<name>_h<k>_<source>``; ``last_metrics`` as :class:`~trainers.modules.callbacks.WorldModelKPICallback`.
    """

    def __init__(self, *, context: int = 5, horizon: int = 15, source: str = "val",
                 episodes: Sequence[Mapping[str, Any]] | None = None, windows: int = 32,
                 samples: int = open_loop.SAMPLES, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(context=context, horizons=tuple(kpi_horizons(horizon)), **kwargs)
        self.horizon, self.source, self.episodes = horizon, source, episodes
        self.windows, self.samples, self.seed = windows, samples, seed

    def render(self, trainer, pl_module, batch, step):
        model = self.models(pl_module)[0]
        given = self.episodes is not None  # store-encoded actions; the batch's are in model encoding already
        episodes = self.episodes if given else open_loop.batch_fragments(batch)
        metrics = open_loop.fair_kpis(model, {self.source: episodes}, context=self.context, horizon=self.horizon,
                                      windows=self.windows, samples=self.samples, seed=self.seed,
                                      encode=model.action_spec.to_model if given else None)
        self.last_metrics.update(metrics)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)


def heldout_episodes(store_dir: str | Path, *, val_fraction: float, seed: int, seq_len: int = 20,
                     limit: int = 8) -> list[dict[str, Any]]:
    """The first ``limit`` validation episodes of the store (the split :class:`ChunkDataModule` makes with these
    settings), whole and memory-mapped, for :class:`FairKPICallback`; empty without a val split."""
    store = EpisodeStore.open(store_dir)
    try:
        _, names = ChunkDataModule(str(store_dir), seq_len=seq_len, val_fraction=val_fraction, seed=seed).split(store)
    except ValueError:  # episodes shorter than a window: no held-out episodes, training goes on
        return []
    episodes = [store.load(name) for name in names[:limit]]
    return [{"obs": e.obs, "action": e.action, "reward": e.reward, "terminated": e.terminated} for e in episodes]


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
                    horizon: int = 15, episodes: Sequence[Mapping[str, Any]] | None = None,
                    protocol: str = "fair") -> list[Callback]:
    """Callbacks for ``stage`` in ``{"vae", "mdnrnn", "dreamer"}``; only the KPI table when ``every_n_steps`` is 0.

    They run every :func:`dream_interval` (``every_n_steps``, shortened for a run of ``total_steps``) steps.
    ``models_fn`` (default: the module's ``dream_models()``) gives what the callbacks render; the M stage
    needs :func:`with_vae`. ``protocol`` ``"fair"`` (default) scores :class:`FairKPICallback` on ``episodes``
    (else the held-out batch), ``"first-rows"`` the old :class:`~trainers.modules.callbacks.WorldModelKPICallback`.
    """
    if protocol not in ("fair", "first-rows"):
        raise ValueError(f"unknown protocol {protocol!r}; choose fair or first-rows")
    every_n_steps = dream_interval(every_n_steps, total_steps)
    if every_n_steps <= 0:
        return [KPISummary()]
    common = dict(every_n_steps=every_n_steps, batch=batch, models_fn=models_fn)
    sequence = dict(context=context, horizon=horizon)
    source = "replay" if stage == "dreamer" else "val"
    kpi = (FairKPICallback(**common, **sequence, source=source, episodes=episodes) if protocol == "fair"
           else WorldModelKPICallback(**common, context=context))
    if stage == "vae":
        chosen: list[Callback] = [ReconstructionCallback(**common), LatentTraversalCallback(**common)]
    elif stage == "mdnrnn":
        chosen = [OpenLoopCallback(**common, **sequence), DreamCallback(**common, **sequence), kpi]
    elif stage == "dreamer":
        chosen = [ReconstructionCallback(**common), OpenLoopCallback(**common, **sequence),
                  DreamCallback(**common, **sequence), kpi]
    else:
        raise ValueError(f"unknown stage {stage!r}; choose vae, mdnrnn or dreamer")
    return [*chosen, KPISummary()]
