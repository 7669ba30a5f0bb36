"""The dream callbacks' fair open-loop KPIs (FairKPICallback) inside a real Trainer, and their wiring."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from dream_fakes import ClockWorldModel, clock_episode
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainers.modules.callbacks import WorldModelKPICallback
from trainers.modules.dream_callbacks import FairKPICallback, dream_callbacks, heldout_episodes
from worldmodels.data.store import EpisodeStore
from worldmodels.envs.spaces import ActionSpec

S, L_EPISODE = 8, 40
SPEC = ActionSpec("discrete", 3)


class ClockModule(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(1, 1)
        self.fake = ClockWorldModel(L_EPISODE, S)

    def dream_models(self):
        return self.fake, None

    def training_step(self, batch, batch_idx):
        return (self.net(batch["obs"].float().mean().reshape(1, 1)) - 1).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def clock_batch(columns=(0, 3)) -> dict[str, torch.Tensor]:
    """Two rows, each a whole clock episode (model-encoded actions), as a DESIGN.md batch."""
    episodes = [clock_episode(L_EPISODE, S, column=c) for c in columns]
    is_first = torch.zeros(len(columns), L_EPISODE, dtype=torch.bool)
    is_first[:, 0] = True
    return {"obs": torch.stack([torch.as_tensor(e["obs"]) for e in episodes]),
            "action": torch.stack([SPEC.to_model(e["action"]) for e in episodes]),
            "reward": torch.stack([torch.as_tensor(e["reward"]) for e in episodes]),
            "terminated": torch.stack([torch.as_tensor(e["terminated"]) for e in episodes]), "is_first": is_first}


def fit(tmp_path, callback) -> EventAccumulator:
    trainer = L.Trainer(max_steps=2, logger=TensorBoardLogger(str(tmp_path), name="run"), callbacks=[callback],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", devices=1)
    trainer.fit(ClockModule(), train_dataloaders=torch.utils.data.DataLoader([clock_batch()] * 2, batch_size=None))
    events = EventAccumulator(trainer.logger.log_dir, size_guidance={"scalars": 0})
    events.Reload()
    return events


@pytest.mark.parametrize("given", ["episodes", "batch"])
def test_a_perfect_model_scores_zero_on_episodes_or_the_batch(tmp_path, given):
    episodes = [clock_episode(L_EPISODE, S, column=c) for c in (0, 3)] if given == "episodes" else None
    callback = FairKPICallback(context=3, horizon=15, every_n_steps=1, batch=clock_batch(), episodes=episodes,
                               source="val", windows=16, samples=2)
    events = fit(tmp_path, callback)
    for name in ("kpi/sample_mean_mse_h1_val", "kpi/moving_sample_mean_mse_h5_val", "kpi/best_of_k_mse_h15_val"):
        assert [(e.step, e.value) for e in events.Scalars(name)] == [(1, 0.0), (2, 0.0)], name
    assert callback.last_metrics["kpi/termination_recall_val"] == 1.0
    assert callback.last_metrics["kpi/moving_copy_last_mse_h5_val"] > 0 and callback.last_metrics["kpi/windows_val"] == 16


def test_dream_callbacks_choose_the_protocol():
    fair = [c for c in dream_callbacks("dreamer", every_n_steps=5) if isinstance(c, WorldModelKPICallback)]
    assert len(fair) == 1 and isinstance(fair[0], FairKPICallback) and fair[0].source == "replay"
    old = [c for c in dream_callbacks("mdnrnn", every_n_steps=5, protocol="first-rows")
           if isinstance(c, WorldModelKPICallback)]
    assert len(old) == 1 and not isinstance(old[0], FairKPICallback)
    with pytest.raises(ValueError, match="choose fair or first-rows"):
        dream_callbacks("mdnrnn", every_n_steps=5, protocol="fancy")


def test_heldout_episodes_are_the_whole_validation_episodes(tmp_path):
    store = EpisodeStore.create(tmp_path / "store", env_id="x", obs_shape=(S, S, 3), action_spec=SPEC)
    for length in (30, 35, 40, 45, 50):
        e = clock_episode(length, S)
        store.add_episode(e["obs"], e["action"], e["reward"], e["terminated"], e["truncated"])
    episodes = heldout_episodes(tmp_path / "store", val_fraction=0.4, seed=0)
    assert 1 <= len(episodes) <= 2
    assert all(len(e["obs"]) in (30, 35, 40, 45, 50) and e["terminated"][-1] for e in episodes)
    np.testing.assert_array_equal(episodes[0]["obs"][:, 0, 0, 0], 4 * np.arange(len(episodes[0]["obs"])))
