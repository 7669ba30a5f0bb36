"""`wm remeasure`: a saved model's held-out KPIs and baselines are re-measured in place; the weights are never written."""

from __future__ import annotations

import hashlib
import json

from model_fixtures import tiny_worldmodels

from scripts.cli import main


def test_remeasure_adds_the_fair_kpis_next_to_the_old_ones_and_keeps_the_weights(tmp_path, capsys):
    """The first-rows run stands for an old card; the fair default adds its keys and tables and keeps the old ones."""
    from scripts.remeasure import CARD_SECTION, CARD_SECTION_END

    tiny_worldmodels(tmp_path / "model")
    weights = hashlib.sha256((tmp_path / "model" / "model.safetensors").read_bytes()).hexdigest()
    (tmp_path / "model" / "README.md").write_text(f"# card\n\n{CARD_SECTION}\n\nold\n\n{CARD_SECTION_END} ...\n")
    small = ["--checkpoint", str(tmp_path / "model"), "--heldout-episodes", "2"]
    assert main(["remeasure", *small, "--protocol", "first-rows"]) == 0
    metrics = json.loads((tmp_path / "model" / "config.json").read_text())["metrics"]
    for key in ("kpi/open_loop_mse_h1", "kpi/copy_last_mse_h1", "kpi/mean_frame_mse_h1"):
        assert key in metrics, sorted(metrics)
    assert not any(key.endswith("_random") for key in metrics)
    old = {key: value for key, value in metrics.items() if key.startswith("kpi/")}
    assert main(["remeasure", *small, "--samples", "2"]) == 0  # the fair protocol, the default
    metrics = json.loads((tmp_path / "model" / "config.json").read_text())["metrics"]
    assert {key: metrics[key] for key in old} == old  # the old protocol's figures are kept for the card
    for key in ("kpi/sample_mean_mse_h1_random", "kpi/best_of_k_mse_h5_agent", "kpi/moving_fraction_h1_random",
                "kpi/windows_agent"):  # the tiny model has a controller: its own policy's episodes too
        assert key in metrics, sorted(metrics)
    assert metrics["kpi/samples"] == 2 and metrics["return"] == 0.5  # metrics the measurement does not produce are kept
    card = (tmp_path / "model" / "README.md").read_text()
    assert card.startswith("# card") and "\nold\n" not in card and card.rstrip().endswith(f"{CARD_SECTION_END} ...")
    assert card.index("### Fair protocol") < card.index("**random-policy episodes**") < card.index("**agent-policy")
    assert card.index("**agent-policy") < card.index("### Old protocol") < card.index("| metric | value |")
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
