"""Offline Dreamer: pretrain the agent on a finished episode store (``wm dreamer --store DIR``), with no env.

:class:`StoreReplay` is the offline counterpart of :class:`~trainers.data.online.OnlineReplay`: the store's most
recent ``--capacity`` rows laid end to end in one stream (chunks may cross episode boundaries; ``is_first``
marks them), sampled uniformly as ``(B, T)`` chunks, forever. It offers the replay interface the module uses
(``metrics``, ``state_dict``, ``load_state_dict``), so the same :class:`DreamerModule` step trains the
world model and the actor-critic in imagination from recorded data.

:func:`pretrain` fits ``--pretrain-steps`` gradient steps into ``RUN_DIR/offline/`` (its own checkpoints and
TensorBoard logs, resumed when killed, ``DONE`` when finished) and returns the module; the online phase
(``scripts/dreamer.py``) then starts from these weights. With ``--online false`` the pretraining is the whole
run and writes ``RUN_DIR/checkpoints/last.ckpt`` itself, so ``worldmodels.load(RUN_DIR)`` reads it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from trainers.runs.checkpoint_io import resume_checkpoint
from trainers.modules.dreamer import DreamerAgentConfig, DreamerModule
from trainers.runs.dreamer import DreamerRunConfig, make_trainer
from trainers.data.online import StreamReplay, load_store
from worldmodels.config import from_dict, save_json_atomic, to_dict
from worldmodels.data.store import EpisodeStore

OFFLINE_DIR = "offline"
DONE = "DONE"


class StoreReplay(IterableDataset):
    """``(batch_size, seq_len)`` chunks of a store's episodes, sampled with ``seed``; no env is made."""

    def __init__(self, store_dir: str, *, batch_size: int, seq_len: int, capacity: int, seed: int) -> None:
        super().__init__()
        store = EpisodeStore.open(store_dir)
        if len(store) == 0:
            raise ValueError(f"--store {store_dir!r} holds no episodes; fill it with wm collect or wm import")
        self.obs_shape, self.action_spec = store.spec.obs_shape, store.spec.action_spec
        self.batch_size, self.seq_len = batch_size, seq_len
        self.replay = StreamReplay(streams=1, capacity=min(capacity, store.num_frames), obs_shape=self.obs_shape,
                                   action_spec=self.action_spec, obs_dtype=np.dtype(store.spec.obs_dtype))
        rows = load_store(self.replay, store)
        if rows < seq_len:
            raise ValueError(f"--store {store_dir!r}: {rows} rows fit in --capacity {capacity}, fewer than one "
                             f"--seq-len {seq_len} chunk; lower --seq-len or raise --capacity")
        self.rng = np.random.default_rng(seed)
        self.batches = 0
        self.env_steps = 0  # no env: the online counters of OnlineReplay stay at zero
        self.store = None

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches = int(state["batches"])
        self.rng.bit_generator.state = state["rng"]

    def metrics(self) -> dict[str, float]:
        return {"replay_rows": float(len(self.replay))}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            batch = self.replay.sample(self.rng, self.batch_size, self.seq_len)  # (B, T, ...)
            self.batches += 1
            yield batch


def pretrain(config: DreamerRunConfig, *, callbacks: Sequence[L.Callback] = ()) -> DreamerModule:
    """``config.pretrain_steps`` gradient steps on ``config.store`` into ``RUN_DIR/offline/`` (resumed, or loaded when done)."""
    # Offline only, the run IS the pretraining (RUN_DIR/checkpoints/last.ckpt: `wm evaluate` and worldmodels.load read it).
    out = Path(config.run_dir) / OFFLINE_DIR if config.online else Path(config.run_dir)
    torch.manual_seed(config.seed)
    replay = StoreReplay(config.store, batch_size=config.batch_size, seq_len=config.seq_len, capacity=config.capacity,
                         seed=config.seed)
    frames = len(replay.obs_shape) == 3  # a store of vectors has no image size
    if frames and tuple(replay.obs_shape[:2]) != (config.image_size, config.image_size):
        raise ValueError(f"--store {config.store!r} holds {replay.obs_shape[0]}x{replay.obs_shape[1]} frames, not "
                         f"--image-size {config.image_size}; pass --image-size {replay.obs_shape[0]} (or re-import "
                         f"with wm import --image-size {config.image_size})")
    module = DreamerModule(obs_shape=replay.obs_shape, action_spec=replay.action_spec,
                           config=from_dict(DreamerAgentConfig, to_dict(config)))
    module.attach_replay(replay)
    last = out / "checkpoints" / "last.ckpt"
    if (out / DONE).exists():
        module.load_state_dict(torch.load(last, map_location="cpu", weights_only=True)["state_dict"])
        return module
    # make_trainer under RUN_DIR/offline: checkpoints and TensorBoard logs apart from the online phase's.
    trainer = make_trainer(dataclasses.replace(config, run_dir=str(out)), out, callbacks=callbacks,
                           max_gradient_steps=config.pretrain_steps)
    resume = resume_checkpoint(last)
    trainer.fit(module, train_dataloaders=DataLoader(replay, batch_size=None),
                ckpt_path=str(resume) if resume else None, weights_only=True)
    trainer.save_checkpoint(str(last), weights_only=False)
    if trainer.is_global_zero:
        save_json_atomic(out / DONE, {"gradient_steps": config.pretrain_steps, "store": config.store,
                                      "replay_rows": len(replay.replay)})
    return module
