"""Dream callbacks inside a real Lightning Trainer: summaries read back with TensorBoard's own reader.

The world model is the fake :class:`dream_fakes.ShiftWorldModel` (driven through the protocol by
:mod:`worldmodels.dreams`), so these tests check the plumbing (schedule, tags, frame counts, sizes,
pixels, rank-zero guard, isolation), not a family's model.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from dream_fakes import ShiftWorldModel, few_colour_batch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainers.modules.callbacks import (DreamCallback, KPISummary, LatentTraversalCallback, OpenLoopCallback,
                                ReconstructionCallback, WorldModelKPICallback, print_kpi_table)
from worldmodels.kpis import format_kpi_table, log_return_vs_env_steps, open_loop_kpis
from worldmodels import viz

S, T, CONTEXT, HORIZON = 16, 12, 3, 6


class TinyModule(L.LightningModule):
    """Fits a linear map of the mean pixel; exposes the fake world model like a family module would."""

    def __init__(self, world_model: ShiftWorldModel | None = None) -> None:
        super().__init__()
        self.net = torch.nn.Linear(3, 1)
        self.fake = world_model or ShiftWorldModel(S)

    def dream_models(self) -> tuple[ShiftWorldModel, None]:
        return self.fake, None  # no head: the dream acts with random actions

    def training_step(self, batch, batch_idx):
        x = batch["obs"].float().mean((1, 2, 3)) / 255.0  # (B, C)
        # Dropout-like noise makes the loss depend on the global RNG, so a callback that
        # consumed random numbers without restoring them would change the weights.
        loss = (self.net(x + 0.01 * torch.randn_like(x)) - 1.0).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class BatchData(L.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        self.train_batches = [few_colour_batch(T=T, S=S, seed=s) for s in range(4)]
        self.val_batches = [few_colour_batch(T=T, S=S, seed=100)]

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.train_batches, batch_size=None)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self.val_batches, batch_size=None)


def fit(tmp_path: Path, callbacks, module: L.LightningModule | None = None, max_steps: int = 2) -> tuple[L.Trainer, TinyModule]:
    module = module or TinyModule()
    trainer = L.Trainer(max_steps=max_steps, logger=TensorBoardLogger(str(tmp_path), name="run"), callbacks=callbacks,
                        limit_val_batches=0, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(module, datamodule=BatchData())
    return trainer, module


def read_events(trainer: L.Trainer) -> EventAccumulator:
    events = EventAccumulator(trainer.logger.log_dir, size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


def image_tags(events: EventAccumulator) -> set[str]:
    return set(events.Tags()["images"])


def test_open_loop_and_dream_gifs_read_back(tmp_path):
    val = few_colour_batch(T=T, S=S, seed=100)
    callbacks = [OpenLoopCallback(context=CONTEXT, horizon=HORIZON, every_n_steps=1, num_samples=2, scale=1),
                 DreamCallback(context=CONTEXT, horizon=HORIZON, every_n_steps=1, num_samples=2, scale=1)]
    trainer, module = fit(tmp_path, callbacks)
    events = read_events(trainer)
    tags = {f"dreams/open_loop/sample_{i}" for i in range(2)} | {f"dreams/imagined/sample_{i}" for i in range(2)}
    assert image_tags(events) == tags
    layout = viz.strip_layout((S, S), scale=1)
    for tag in tags:
        summaries = events.Images(tag)
        assert [s.step for s in summaries] == [1, 2]  # every_n_steps=1, max_steps=2
        frames = viz.decode_gif(summaries[-1].encoded_image_string)
        assert frames.shape[0] == CONTEXT + HORIZON
        assert (summaries[-1].height, summaries[-1].width) == frames.shape[1:3]
        if "open_loop" in tag:
            assert frames.shape[1:3] == layout.shape
    # One decoded GIF against the frames the callback was given: the fake's predictions are exact.
    i = 1
    strip = viz.decode_gif(events.Images(f"dreams/open_loop/sample_{i}")[-1].encoded_image_string)
    true = val["obs"][i, : CONTEXT + HORIZON].numpy()
    expected_pred = np.concatenate([true[:CONTEXT], module.fake.predicted(val["obs"][i : i + 1, CONTEXT - 1], HORIZON)[0].numpy()])
    np.testing.assert_array_equal(layout.tile(strip, 0), true)
    np.testing.assert_array_equal(layout.tile(strip, 1), expected_pred)
    np.testing.assert_array_equal(layout.tile(strip, 2), viz.error_image(true, expected_pred))
    dream = viz.decode_gif(events.Images(f"dreams/imagined/sample_{i}")[-1].encoded_image_string)
    np.testing.assert_array_equal(dream[:CONTEXT, 2 : 2 + S, 2 : 2 + S], true[:CONTEXT])
    assert module.fake.calls.count("imagine:actions") == 2 and module.fake.calls.count("imagine:policy") == 2


def test_reconstruction_and_latent_traversal_grids(tmp_path):
    from worldmodels.models.vae import ConvVAE

    batch = few_colour_batch(B=3, T=T, S=S, seed=7)
    vae = ConvVAE(3, S, z_dim=4, depth=4, stages=4)  # latent traversals need World Models' V
    callbacks = [ReconstructionCallback(every_n_steps=2, batch=batch, num_samples=2, frames_per_sample=2),
                 LatentTraversalCallback(every_n_steps=2, batch=batch, dims=3, steps=5, models_fn=lambda m: (vae, None))]
    trainer, _ = fit(tmp_path, callbacks)
    events = read_events(trainer)
    assert image_tags(events) == {"dreams/reconstruction", "dreams/latent_traversal"}
    (recon,) = events.Images("dreams/reconstruction")  # every 2 steps, 2 steps: once, at step 2
    assert recon.step == 2
    grid = viz.decode_gif(recon.encoded_image_string)[0]
    real = batch["obs"][:2, :2].reshape(-1, S, S, 3).numpy()
    np.testing.assert_array_equal(grid, viz.image_grid(np.stack([real, 255 - real])))
    (sweep,) = events.Images("dreams/latent_traversal")
    assert (sweep.height, sweep.width) == (2 + 3 * (S + 2), 2 + 5 * (S + 2))


def test_kpi_scalars_and_summary_table(tmp_path, capsys):
    kpi = WorldModelKPICallback(context=CONTEXT, horizons=(1, 5, 15), every_n_steps=1)
    trainer, _ = fit(tmp_path, [kpi, KPISummary()])
    events = read_events(trainer)
    scalars = set(events.Tags()["scalars"])
    # T - CONTEXT = 9 predicted steps: horizon 15 does not fit and is left out.
    for name in ("kpi/open_loop_mse_h1", "kpi/open_loop_psnr_h1", "kpi/open_loop_mse_h5", "kpi/open_loop_psnr_h5",
                 "kpi/reward_mae", "kpi/termination_accuracy"):
        assert name in scalars, f"{name} missing from {sorted(scalars)}"
        assert [e.step for e in events.Scalars(name)] == [1, 2]
    assert "kpi/open_loop_mse_h15" not in scalars
    out = capsys.readouterr().out
    assert "kpi/open_loop_psnr_h5" in out and "train/loss" in out
    assert f"tensorboard --logdir {trainer.logger.root_dir}" in out


def test_open_loop_kpis_values_and_episode_mask():
    batch = few_colour_batch(B=2, T=8, S=4)
    batch["reward"][:] = 1.0
    batch["terminated"][:] = False
    batch["is_first"][1, 5] = True  # sample 1: a new episode starts at row 5 = predicted step 2
    context, P = 3, 5
    pred = batch["obs"][:, context:].clone()
    pred[0, 0] = 255 - pred[0, 0]
    out = {"frames": pred, "reward": torch.full((2, P), 0.5), "end": torch.full((2, P), 0.9)}
    kpis = open_loop_kpis(batch, out, context, horizons=(1, 5))
    expected_h1 = viz.frame_mse(batch["obs"][0, 3].numpy(), pred[0, 0].numpy()) / 2  # sample 1 is exact at h1
    assert kpis["kpi/open_loop_mse_h1"] == pytest.approx(float(expected_h1))
    assert kpis["kpi/open_loop_mse_h5"] == 0.0  # only sample 0 is still in its episode at h5
    assert kpis["kpi/reward_mae"] == pytest.approx(0.5)
    assert kpis["kpi/reward_at_events"] == pytest.approx(0.5)  # every real reward is 1.0, predicted 0.5
    assert kpis["kpi/termination_accuracy"] == 0.0  # predicted end 0.9 everywhere, no real end


def test_callbacks_do_not_change_training(tmp_path):
    class RandomWorldModel(ShiftWorldModel):
        def step(self, state, action):
            torch.randn(1000)  # consumes global RNG; the callback must restore it
            return super().step(state, action)

    _, plain = fit(tmp_path / "a", [], module=_seeded(), max_steps=3)
    _, with_cb = fit(tmp_path / "b", [OpenLoopCallback(context=CONTEXT, horizon=HORIZON, every_n_steps=1),
                                      DreamCallback(context=CONTEXT, horizon=HORIZON, every_n_steps=1)],
                     module=_seeded(RandomWorldModel(S)), max_steps=3)
    for a, b in zip(plain.parameters(), with_cb.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert with_cb.training  # train mode restored


def _seeded(world_model: ShiftWorldModel | None = None) -> TinyModule:
    torch.manual_seed(0)
    module = TinyModule(world_model)
    torch.manual_seed(1)  # the RNG state training starts from
    return module


def test_non_zero_rank_writes_nothing(tmp_path, monkeypatch):
    fake = ShiftWorldModel(S)
    callbacks = [OpenLoopCallback(context=CONTEXT, horizon=HORIZON, every_n_steps=1),
                 ReconstructionCallback(every_n_steps=1), DreamCallback(context=CONTEXT, horizon=HORIZON, every_n_steps=1),
                 LatentTraversalCallback(every_n_steps=1), WorldModelKPICallback(context=CONTEXT, every_n_steps=1)]
    monkeypatch.setattr(L.Trainer, "is_global_zero", property(lambda self: False))
    trainer, _ = fit(tmp_path, callbacks, module=TinyModule(fake))
    assert fake.calls == []
    events = read_events(trainer)
    assert image_tags(events) == set() and not [t for t in events.Tags()["scalars"] if t.startswith("kpi/")]


def test_rank_zero_only_guard_on_run(monkeypatch):
    callback = OpenLoopCallback(context=CONTEXT, horizon=HORIZON, batch=few_colour_batch(T=T, S=S),
                                models_fn=lambda m: (fake, None))
    fake = ShiftWorldModel(S)
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    callback._run(trainer=None, pl_module=TinyModule(fake), step=0)  # type: ignore[arg-type]
    assert fake.calls == []


def test_return_vs_env_steps_and_table(tmp_path):
    logger = TensorBoardLogger(str(tmp_path), name="run")
    for env_steps, value in [(1000, -1.0), (5000, 0.5)]:
        log_return_vs_env_steps(logger, env_steps, value)
    logger.finalize("success")
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("kpi/return_vs_env_steps")] == [(1000, -1.0), (5000, 0.5)]
    table = format_kpi_table({"kpi/b": 2.0, "kpi/a": 0.123456}, "runs")
    assert table.splitlines()[2].startswith("kpi/a") and "0.1235" in table
    assert table.splitlines()[-1] == "tensorboard --logdir runs"
    assert print_kpi_table({}, None) == format_kpi_table({}, None)


def test_every_n_steps_must_be_positive():
    with pytest.raises(ValueError, match="every_n_steps"):
        OpenLoopCallback(every_n_steps=0)


def test_without_val_set_uses_first_training_batch_and_catches_skipped_multiples(tmp_path):
    """Online training (Dreamer) has no datamodule; manual optimisation may add several steps per batch."""

    class ThreeStepsPerBatch(TinyModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            optimizer = self.optimizers()
            for _ in range(3):  # like DreamerModule: world model, critic, actor
                optimizer.zero_grad()
                loss = (self.net(batch["obs"].float().mean((1, 2, 3)) / 255.0) - 1.0).pow(2).mean()
                self.manual_backward(loss)
                optimizer.step()

    module = ThreeStepsPerBatch()
    callback = OpenLoopCallback(context=CONTEXT, horizon=HORIZON, every_n_steps=5, scale=1)
    trainer = L.Trainer(max_steps=12, logger=TensorBoardLogger(str(tmp_path), name="run"), callbacks=[callback],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", devices=1)
    batches = [few_colour_batch(T=T, S=S, seed=s) for s in range(4)]
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    events = read_events(trainer)
    # global_step 3, 6, 9, 12: multiples of 5 are never hit exactly; runs on entering 5-10 (6) and 10-15 (12).
    assert [s.step for s in events.Images("dreams/open_loop/sample_0")] == [6, 12]
    strip = viz.decode_gif(events.Images("dreams/open_loop/sample_0")[-1].encoded_image_string)
    layout = viz.strip_layout((S, S), scale=1)
    np.testing.assert_array_equal(layout.tile(strip, 0), batches[1]["obs"][0, : CONTEXT + HORIZON].numpy())


def test_dream_models_of_family_modules():
    from trainers.modules.callbacks import dream_models
    from trainers.modules.dreamer import DreamerAgentConfig, DreamerModule
    from trainers.modules.vae import VAEModule
    from worldmodels import dreams
    from worldmodels.config import to_dict
    from worldmodels.envs.spaces import ActionSpec
    from worldmodels.models.vae import ConvVAE
    from worldmodels.models.world_model import DreamerWorldModel
    from worldmodels.policies import ActorHead

    config = DreamerAgentConfig(deter=8, hidden=8, stoch=2, classes=3, depth=4, stages=4, layers=1, num_bins=15)
    dreamer = DreamerModule(obs_shape=(S, S, 3), action_spec=ActionSpec("discrete", 3), config=to_dict(config))
    world_model, head = dream_models(dreamer)
    assert isinstance(world_model, DreamerWorldModel) and isinstance(head, ActorHead) and head.actor is dreamer.actor
    vae, no_head = dream_models(VAEModule(image_size=S, z_dim=4, depth=4))
    assert isinstance(vae, ConvVAE) and no_head is None  # V alone: no M yet
    with torch.no_grad():
        assert dreams.reconstruct(vae, few_colour_batch(S=S)["obs"][:, 0]).shape == (2, S, S, 3)
    with pytest.raises(ValueError, match="MDN-RNN"):
        dreams.dream(vae, None, *[few_colour_batch(S=S)[k][:, :2] for k in ("obs", "action", "is_first")], horizon=2)
    with pytest.raises(TypeError, match="models_fn"):
        dream_models(torch.nn.Linear(1, 1))


def test_reward_at_events_exposes_a_model_that_always_predicts_zero():
    batch = few_colour_batch(B=2, T=8, S=4)
    batch["reward"][:] = 0.0
    batch["reward"][0, 4] = 1.0  # one sparse event (row 4 = predicted step 1) ...
    batch["reward"][1, 6] = -2.0  # ... and a negative one
    batch["terminated"][:] = False
    context, P = 3, 5
    out = {"frames": batch["obs"][:, context:].clone(), "reward": torch.zeros(2, P), "end": torch.zeros(2, P)}
    kpis = open_loop_kpis(batch, out, context, horizons=(1,))
    assert kpis["kpi/reward_mae"] == pytest.approx(3.0 / 10)  # small: 8 of the 10 rows are 0 and predicted 0
    assert kpis["kpi/reward_at_events"] == 0.0  # none of either event is predicted
