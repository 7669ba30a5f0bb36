"""`wm remeasure`: a saved model's held-out KPIs and baselines are re-measured in place; the weights are never written."""

from __future__ import annotations

import hashlib
import json

from model_fixtures import tiny_worldmodels

from scripts.cli import main


def test_remeasure_adds_the_baselines_and_keeps_the_weights(tmp_path, capsys):
    tiny_worldmodels(tmp_path / "model")
    weights = hashlib.sha256((tmp_path / "model" / "model.safetensors").read_bytes()).hexdigest()
    assert main(["remeasure", "--checkpoint", str(tmp_path / "model"), "--heldout-episodes", "2"]) == 0
    metrics = json.loads((tmp_path / "model" / "config.json").read_text())["metrics"]
    for key in ("kpi/open_loop_mse_h1", "kpi/copy_last_mse_h1", "kpi/mean_frame_mse_h1"):
        assert key in metrics, sorted(metrics)
    assert metrics["return"] == 0.5  # metrics the measurement does not produce are kept
    assert hashlib.sha256((tmp_path / "model" / "model.safetensors").read_bytes()).hexdigest() == weights


def test_remeasure_without_a_checkpoint_is_one_line(capsys):
    assert main(["remeasure"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--checkpoint is required" in err[0]


def test_remeasure_of_a_vector_observation_model_names_what_is_unsupported(tmp_path, capsys):
    """Held-out open-loop KPIs score predicted frames: a vector model has none. The message is remeasure's own."""
    from worldmodels.envs.spaces import ActionSpec
    from worldmodels.pretrained import build, save_dreamer

    from model_fixtures import DEBUG_AGENT

    spec = ActionSpec("discrete", 2)
    parts = build({"family": "dreamer", "obs_shape": [4], "action_spec": spec.to_dict(), "config": DEBUG_AGENT})
    save_dreamer(tmp_path / "model", parts, agent_config=DEBUG_AGENT, env_id="CartPole-v1",
                 env_options={"obs": "vector"})
    before = (tmp_path / "model" / "config.json").read_text()
    assert main(["remeasure", "--checkpoint", str(tmp_path / "model"), "--heldout-episodes", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("wm remeasure: error:"), err
    assert "(4,) vectors" in err[0] and "image observations" in err[0] and "wm evaluate" in err[0], err[0]
    assert "wm dream" not in err[0], err[0]
    assert (tmp_path / "model" / "config.json").read_text() == before
