"""A `wm pets` run is a checkpoint like any other: `worldmodels.load`, `wm plan` (every planner) and `wm evaluate`
read it, play it in its vector-observation env, and every planner run leaves its KPIs in TensorBoard."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import worldmodels
from scripts.cli import main
from worldmodels.envs.spaces import ActionSpec
from worldmodels.evaluation import EVAL_KEYS
from worldmodels.kpis import EpisodeRecorder, open_loop_errors
from worldmodels.pets import PETSWorldModel, ProbabilisticEnsemble
from worldmodels.policies import PlannerPolicy

ENV = "worldmodels/ContinuousCartPole-v0"
H = 3  # planning horizon of the run and of `wm plan`: the KPIs are logged at k = 1 and k = H
TINY = ["--ensemble", "2", "--hidden", "8", "--layers", "2", "--horizon", str(H), "--candidates", "8",
        "--iterations", "1", "--particles", "1", "--cem-elites", "2", "--epochs", "1", "--eval-envs", "2"]
PLAN = ["--horizon", str(H), "--candidates", "8", "--iterations", "2", "--particles", "2", "--episodes", "2",
        "--num-envs", "2", "--device", "cpu", "--max-episode-steps", "20"]


def scalar_tags(logdir) -> set[str]:
    events = EventAccumulator(str(logdir))
    events.Reload()
    return set(events.Tags()["scalars"])




@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("pets") / "run"
    assert main(["pets", "--env", ENV, "--steps", "80", "--eval-episodes", "2", "--run-dir", str(run), "--seed", "1",
                 *TINY]) == 0
    return run


def test_a_pets_run_loads_and_acts_by_cem_with_its_saved_settings(run_dir):
    model = worldmodels.load(run_dir)
    assert model.family == "pets" and model.obs_shape == (4,) and model.env_id == ENV
    assert model.env_options == {}  # no pixel image size for a vector-observation model
    policy = model.policy(seed=5)
    assert isinstance(policy, PlannerPolicy)
    planner = policy.planner
    assert (planner.horizon, planner.candidates, planner.iterations, planner.particles, planner.elites,
            planner.seed) == (H, 8, 1, 1, 2, 5)  # the run's --cem-* settings; the seed given here wins
    action, _ = policy.act(torch.zeros(2, 4), torch.ones(2, dtype=torch.bool), None)
    assert action.shape == (2, 1) and bool((action.abs() <= 1).all())  # inside the Box(-1, 1) force
    assert worldmodels.load(run_dir / "model").family == "pets"  # the export layout reads the same


def test_wm_pets_logs_the_planner_kpis(run_dir):
    tags = scalar_tags(run_dir / "tb")
    want = {"kpi/return_vs_env_steps", "kpi/plan_ms_per_action", "kpi/open_loop_mse_h1", f"kpi/open_loop_mse_h{H}",
            "kpi/open_loop_disagreement_h1", f"kpi/open_loop_disagreement_h{H}"}
    assert want <= tags, sorted(tags)


@pytest.mark.parametrize("planner", ["shooting", "cem", "icem", "mppi"])
def test_wm_plan_over_a_pets_run(run_dir, planner):
    assert main(["plan", "--checkpoint", str(run_dir), "--planner", planner, *PLAN]) == 0
    record = json.loads((run_dir / f"eval-plan-{planner}.json").read_text())
    assert set(EVAL_KEYS) <= set(record) and record["env"] == ENV and record["episodes"] == 2
    assert record["planner"]["family"] == "pets" and record["planner"]["ms_per_action"] > 0
    assert len(record["open_loop"]["mse"]) == H and len(record["open_loop"]["disagreement"]) == H
    tags = scalar_tags(run_dir / "tb" / f"plan-{planner}")
    want = {"kpi/return_vs_env_steps", "kpi/plan_ms_per_action", "kpi/open_loop_mse_h1", f"kpi/open_loop_mse_h{H}",
            "kpi/open_loop_disagreement_h1", f"kpi/open_loop_disagreement_h{H}"}
    assert want <= tags, sorted(tags)


def test_wm_evaluate_plays_a_pets_run_in_its_vector_env(run_dir, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--run-dir", str(run_dir), "--episodes", "2", "--num-envs", "2", "--device", "cpu",
                 "--max-episode-steps", "20", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(EVAL_KEYS) <= set(record) and record["env"] == ENV and len(record["returns"]) == 2
    # Every step alive earns 1 and episodes are cut at 20 steps: both returns lie in [1, 20].
    assert all(1 <= r <= 20 for r in record["returns"] + record["random_returns"])
    assert main(["evaluate", "--run-dir", str(run_dir), "--frameskip", "2", "--out", str(out)]) == 2  # one line


def test_open_loop_error_of_a_perfect_model_is_zero():
    """The KPI compares prediction k with real row t + k: a model that predicts exactly scores 0 at every k."""
    spec = ActionSpec.from_space(gym.spaces.Box(-1, 1, (1,)))
    ensemble = ProbabilisticEnsemble(2 + 1, 2, ensemble_size=2, hidden=4, layers=1)
    with torch.no_grad():  # every member predicts the delta 0 (the mean): obs_{t+1} = obs_t under "expectation"
        ensemble.head.weight.zero_()
        ensemble.head.bias.zero_()
    model = PETSWorldModel(ensemble, spec, propagation="expectation",
                           reward_fn=lambda o, a, n: torch.zeros(o.shape[0]))
    still = {"obs": torch.ones(6, 2).numpy(), "action": torch.zeros(6, 1).numpy()}
    recorder = EpisodeRecorder(limit=1)
    recorder.on_episode(0, still, complete=True)
    recorder.on_episode(0, still, complete=True)  # past the limit: not kept
    model.generator = torch.Generator().manual_seed(0)
    before, global_before = model.generator.get_state(), torch.random.get_rng_state()
    errors = open_loop_errors(model, recorder.episodes, 3)
    assert len(recorder.episodes) == 1 and errors["mse"] == pytest.approx([0.0, 0.0, 0.0], abs=1e-8)
    # Scoring draws particles, yet a run samples the same afterwards as without the KPI.
    assert torch.equal(model.generator.get_state(), before) and torch.equal(torch.random.get_rng_state(), global_before)
    assert errors["disagreement"] == pytest.approx([0.0, 0.0, 0.0], abs=1e-8)  # identical members agree
    assert open_loop_errors(model, recorder.episodes, 6) == {}  # 6 rows cannot hold 1 context + 6 predictions
