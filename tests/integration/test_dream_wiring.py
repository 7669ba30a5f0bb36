"""Both families' training commands log dreams and KPIs to TensorBoard and print the end-of-stage table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from scripts.dreamer import CONFIG as DREAMER_CONFIG, PRESETS as DREAMER_PRESETS, run as run_dreamer
from scripts.worldmodels_pipeline import PRESETS, WorldModelsConfig, run as run_worldmodels
from worldmodels.config import apply_overrides, build_config
from worldmodels.envs.toy import LEFTRIGHT_ID


def _tags(logdir: Path) -> tuple[set[str], set[str]]:
    images, scalars = set(), set()
    for events in logdir.glob("events*"):
        accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
        accumulator.Reload()
        images |= set(accumulator.Tags()["images"])
        scalars |= set(accumulator.Tags()["scalars"])
    return images, scalars


def test_worldmodels_stages_log_dreams_and_print_kpi_table(tmp_path, capsys):
    config = apply_overrides(WorldModelsConfig(), PRESETS["debug"], source="debug")
    run_worldmodels(dataclasses.replace(config, env=LEFTRIGHT_ID, run_dir=str(tmp_path), dream_every=2))
    vae_images, _ = _tags(tmp_path / "tb" / "vae" / "version_0")
    assert {"dreams/reconstruction", "dreams/latent_traversal"} <= vae_images
    images, scalars = _tags(tmp_path / "tb" / "mdnrnn" / "version_0")
    assert {"dreams/open_loop/sample_0", "dreams/imagined/sample_0"} <= images
    # The fair protocol on the store's held-out episodes (suffix _val), K samples per window.
    assert {"kpi/sample_mean_mse_h1_val", "kpi/best_of_k_mse_h1_val", "kpi/one_sample_mse_h1_val",
            "kpi/copy_last_mse_h1_val", "kpi/windows_val", "kpi/samples"} <= scalars, sorted(scalars)
    assert "kpi/open_loop_mse_h1" not in scalars  # the old protocol's: dream_callbacks(protocol="first-rows")
    _, evaluation = _tags(tmp_path / "tb" / "evaluate")
    assert {"kpi/real_return", "kpi/random_return", "kpi/return_vs_env_steps"} <= evaluation
    out = capsys.readouterr().out
    assert "kpi/sample_mean_mse_h1_val" in out and "kpi/real_return" in out and f"tensorboard --logdir {tmp_path / 'tb' / 'mdnrnn'}" in out


def test_dreamer_logs_dreams_kpis_and_return_vs_env_steps(tmp_path, capsys):
    config = build_config(DREAMER_CONFIG, {"env": LEFTRIGHT_ID, "run_dir": str(tmp_path), "steps": 300,
                                           "dream_every": 10, "eval_episodes": 1}, presets=DREAMER_PRESETS, preset="debug")
    run_dreamer(config)
    images, scalars = _tags(tmp_path / "tb" / "version_0")
    assert {"dreams/reconstruction", "dreams/open_loop/sample_0", "dreams/imagined/sample_0"} <= images
    assert {"kpi/sample_mean_mse_h1_replay", "kpi/return_vs_env_steps", "imag/return", "train/loss/dyn",
            "kpi/real_return", "kpi/random_return"} <= scalars
    assert "tensorboard --logdir" in capsys.readouterr().out
