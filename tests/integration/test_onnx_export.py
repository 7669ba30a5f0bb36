"""`wm export --format onnx`: one recurrent step per family, driven by onnxruntime, matches the torch policy.

Each check plays a 50-step episode of 2 rows (row 1 restarts at step 25, so the in-graph reset is exercised per row)
feeding the ONNX outputs back as the next state, exactly as a torch-free client would (policy.onnx.json's
``state``), and compares every step with ``ModelPolicy.act`` fed its own state: actions exactly, states to 1e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import worldmodels
from model_fixtures import CATCH, DEBUG_AGENT, tiny_dreamer, tiny_worldmodels
from scripts.export import ExportConfig, run as export
from worldmodels.envs.spaces import ActionSpec
from worldmodels.onnx_export import SPEC_FILE, check_against_torch, policy_step
from worldmodels.pretrained import build, save_dreamer

ort = pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[2]
STEPS, ROWS, RESTART = 50, 2, 25
TORCH_KEY = {"action": "action", "next_deter": "deter", "next_stoch": "stoch", "logits": "logits", "next_z": "z",
             "next_h": "h", "next_c": "c"}  # ONNX output -> key of the torch policy's state


def play_both(model: str | Path, onnx_dir: Path, *, seed: int = 0) -> dict[str, float]:
    """Drive the torch policy and the ONNX step side by side; assert they agree at every step.

    The Dreamer step's posterior uniforms are torch's own draws: torch is reseeded before each step and the same
    ``torch.rand(B, S, 1)`` that ``OneHotCategorical.sample`` draws first is handed to onnxruntime.
    Returns the largest state difference seen and how much the states moved (so the check cannot pass vacuously).
    """
    spec = json.loads((onnx_dir / SPEC_FILE).read_text())
    session = ort.InferenceSession(str(onnx_dir / spec["onnx"]), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == [o["name"] for o in spec["outputs"]] and [i.name for i in session.get_inputs()] == [
        i["name"] for i in spec["inputs"]]
    policy = worldmodels.load(model).policy()
    obs_shape = tuple(spec["obs_shape"])
    state = {name: np.tile(np.asarray(value, np.float32), (ROWS,) + (1,) * np.ndim(value))
             for name, value in spec["initial_state"].items()}
    rng = np.random.default_rng(seed)
    torch_state, worst, moved, previous = None, 0.0, 0.0, None
    for t in range(STEPS):
        if len(obs_shape) == 3:
            obs = rng.integers(0, 256, (ROWS, *obs_shape), dtype=np.uint8)
        else:
            obs = rng.normal(0.0, 3.0, (ROWS, *obs_shape)).astype(np.float32)
        is_first = np.array([t == 0, t in (0, RESTART)])
        feed = {"obs": obs, "is_first": is_first, **state}
        if "uniform" in spec["noise"]:
            torch.manual_seed(seed * 1000 + t)
            stoch = spec["inputs"][[i["name"] for i in spec["inputs"]].index("uniform")]["shape"][1]
            feed["uniform"] = torch.rand(ROWS, stoch, 1)[..., 0].numpy()
            torch.manual_seed(seed * 1000 + t)
        action, torch_state = policy.act(torch.from_numpy(obs), torch.from_numpy(is_first), torch_state)
        outputs = dict(zip(names, session.run(None, feed)))
        if "action_index" in outputs:  # one-hot: exactly; a Box action: to float round-off, as the states
            np.testing.assert_array_equal(outputs["action"], action.numpy(), err_msg=f"action at step {t}")
        if "action_index" in outputs:
            np.testing.assert_array_equal(outputs["action_index"], action.argmax(-1).numpy())
            assert outputs["action_index"].dtype == np.int64
        for name, value in outputs.items():
            if name in TORCH_KEY:
                expected = torch_state[TORCH_KEY[name]].numpy()
                np.testing.assert_allclose(value, expected, rtol=0, atol=1e-5, err_msg=f"{name} at step {t}")
                worst = max(worst, float(np.abs(value - expected).max()))
        recurrent = next(n for n in names if n in ("next_deter", "next_h"))
        if previous is not None:
            moved = max(moved, float(np.abs(outputs[recurrent] - previous).max()))
        previous = outputs[recurrent]
        state = {name: outputs[output] for name, output in spec["state"].items()}
    assert moved > 1e-3, f"the recurrent state never moved ({moved}); the comparison would be vacuous"
    return {"max_abs_diff": worst, "moved": moved}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A tiny model of each family, exported once (each dynamo export takes some seconds)."""
    root = tmp_path_factory.mktemp("onnx")
    tiny_dreamer(root / "dreamer")
    tiny_worldmodels(root / "worldmodels")
    for family in ("dreamer", "worldmodels"):
        export(ExportConfig(format="onnx", checkpoint=str(root / family), out=str(root / f"{family}-onnx")))
    return root


@pytest.mark.parametrize("family", ["dreamer", "worldmodels"])
def test_onnx_step_matches_the_torch_policy_for_50_steps(tiny_models, family):
    play_both(tiny_models / family, tiny_models / f"{family}-onnx")
    spec = json.loads((tiny_models / f"{family}-onnx" / SPEC_FILE).read_text())
    assert spec["family"] == family and spec["action"]["env_action"] == "action_index"
    assert spec["action"]["dim"] == CATCH.dim and spec["inputs"][0]["dtype"] == "uint8"


def test_onnx_spec_names_every_input_and_state(tiny_models):
    spec = json.loads((tiny_models / "dreamer-onnx" / SPEC_FILE).read_text())
    inputs = {i["name"]: i for i in spec["inputs"]}
    assert list(inputs) == ["obs", "is_first", "deter", "stoch", "prev_action", "uniform"]
    assert inputs["obs"]["shape"] == ["batch", 16, 16, 3] and inputs["is_first"]["dtype"] == "bool"
    assert set(spec["state"]) == set(spec["initial_state"]) == {"deter", "stoch", "prev_action"}
    assert np.asarray(spec["initial_state"]["stoch"]).shape == (4, 4)  # (S, K) per row


def test_continuous_controller_exports_its_box_action(tmp_path):
    spec = ActionSpec("continuous", 2, (-1.0, 0.0), (1.0, 1.0))
    tiny_worldmodels(tmp_path / "model", spec)
    export(ExportConfig(format="onnx", checkpoint=str(tmp_path / "model"), out=str(tmp_path / "onnx")))
    play_both(tmp_path / "model", tmp_path / "onnx")
    action = json.loads((tmp_path / "onnx" / SPEC_FILE).read_text())["action"]
    assert action == {**action, "kind": "continuous", "env_action": "action", "low": [-1.0, 0.0], "high": [1.0, 1.0]}


def test_the_export_self_check_refuses_a_file_that_disagrees_with_torch(tiny_models):
    step = policy_step(worldmodels.load(tiny_models / "worldmodels").policy())
    path = tiny_models / "worldmodels-onnx" / "policy.onnx"
    check_against_torch(step, path, (16, 16, 3))  # the written file agrees
    with torch.no_grad():
        step.world_model.mdnrnn.lstm.weight_hh_l0.add_(0.1)  # as if the exporter had mistranslated M
    with pytest.raises(ValueError, match="next_h .* away from the torch step"):
        check_against_torch(step, path, (16, 16, 3))


def test_vector_dreamer_with_a_continuous_actor(tmp_path):
    """The other Dreamer paths: the MLP encoder on float vectors and the bounded-normal actor's mode."""
    spec = ActionSpec("continuous", 2, (-2.0, -1.0), (2.0, 1.0))
    torch.manual_seed(0)
    parts = build({"family": "dreamer", "obs_shape": [5], "action_spec": spec.to_dict(), "config": DEBUG_AGENT})
    save_dreamer(tmp_path / "model", parts, agent_config=DEBUG_AGENT, env_id="Pendulum-v1")
    export(ExportConfig(format="onnx", checkpoint=str(tmp_path / "model"), out=str(tmp_path / "onnx")))
    play_both(tmp_path / "model", tmp_path / "onnx")
    inputs = json.loads((tmp_path / "onnx" / SPEC_FILE).read_text())["inputs"]
    assert inputs[0] == {**inputs[0], "shape": ["batch", 5], "dtype": "float32"}


def test_bad_requests_are_one_line_errors(tmp_path):
    tiny_worldmodels(tmp_path / "no-c", controller=False)  # V + M only: it acts at random, nothing to export
    with pytest.raises(ValueError, match="RandomPolicy has no ONNX step") as info:
        export(ExportConfig(format="onnx", checkpoint=str(tmp_path / "no-c"), out=str(tmp_path / "out")))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="--out"):
        export(ExportConfig(format="onnx", checkpoint=str(tmp_path / "no-c")))
    with pytest.raises(ValueError, match="--checkpoint or --run-dir"):
        export(ExportConfig(format="onnx", out=str(tmp_path / "out")))
    with pytest.raises(ValueError, match="--checkpoint goes with --format onnx"):
        export(ExportConfig(checkpoint=str(tmp_path / "no-c"), out=str(tmp_path / "out")))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["boxing-dreamer-cpu", "takecover-worldmodels-cpu"])
def test_shipped_models_export_and_match(tmp_path, name):
    """The shipped models, by name (about 10-15 s each on 2 shared cores, most of it the export)."""
    result = export(ExportConfig(format="onnx", checkpoint=name, out=str(tmp_path)))
    assert result["size_mb"] < 20
    play_both(name, tmp_path)


def test_example_client_imports_no_torch(tiny_models):
    """docs/examples/onnx_policy.py, on recorded (here: random) frames, never imports torch."""
    script = ROOT / "docs" / "examples" / "onnx_policy.py"
    probe = ("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
             "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    done = subprocess.run([sys.executable, "-c", probe, str(script), str(tiny_models / "dreamer-onnx"), "--frames",
                           "random", "--steps", "5"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ""}, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "NO-TORCH" and "step 4" in done.stdout
