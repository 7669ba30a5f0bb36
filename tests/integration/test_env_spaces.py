"""Issue 15 item 8 for `wm dream`, `wm plan`, `wm finetune`, `wm serve` (and `wm evaluate` beyond World Models): an
env whose spaces are not the model's is refused in one line (exit 2) naming both, for every family those commands
load, before anything is written; another env with the same spaces writes its own file, never the model's own.

Models are the tiny Catch ones of ``model_fixtures`` (16 px frames, discrete(3) actions) and a tiny PETS
ensemble of ContinuousCartPole (observations (4,), continuous(1) actions); nothing here trains.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from model_fixtures import tiny_dreamer, tiny_worldmodels
from point_mass import POINT_ID, register_point_mass
from scripts.cli import main
from scripts.serve import ServeConfig, make_server
from worldmodels.envs.spaces import ActionSpec
from worldmodels.envs.toy import CatchEnv, LEFTRIGHT_ID
from worldmodels.pets import PETSWorldModel, ProbabilisticEnsemble
from worldmodels.pets.family import save_whole

CARTPOLE = "worldmodels/ContinuousCartPole-v0"
TWIN_ID = "worldmodels-test/CatchTwin-v0"  # Catch under another id: the same spaces, another env
GRID_ID = "worldmodels-test/CatchGrid-v0"  # Catch frames with MultiDiscrete actions: no model acts in those
PLAN = ["--planner", "cem", "--horizon", "2", "--candidates", "4", "--iterations", "1", "--episodes", "1",
        "--num-envs", "1", "--max-episode-steps", "5", "--device", "cpu", "--tensorboard", "false"]
# The env each family is refused in, and what the error names: the env's spaces, then the model's.
WRONG = {"worldmodels": (LEFTRIGHT_ID, "(16, 16, 3) and discrete(2) actions", "(16, 16, 3) and discrete(3)"),
         "dreamer": ("CarRacing-v3", "(16, 16, 3) and continuous(3) actions", "(16, 16, 3) and discrete(3)"),
         "pets": (POINT_ID, "(1,) and continuous(1) actions", "(4,) and continuous(1)")}


class CatchGrid(CatchEnv):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.action_space = gym.spaces.MultiDiscrete([3, 3])

    def step(self, action):
        return super().step(int(np.asarray(action)[0]))




@pytest.fixture(scope="module")
def models(tmp_path_factory):
    register_point_mass()
    for env_id, entry_point in ((TWIN_ID, CatchEnv), (GRID_ID, CatchGrid)):
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point, max_episode_steps=100)
    root = tmp_path_factory.mktemp("models")
    tiny_worldmodels(root / "worldmodels")
    tiny_dreamer(root / "dreamer")
    torch.manual_seed(0)
    spec = ActionSpec.from_space(gym.spaces.Box(-1, 1, (1,)))
    ensemble = ProbabilisticEnsemble(4 + 1, 4 + 1, ensemble_size=2, hidden=4, layers=1)  # learns its reward
    save_whole(root / "pets", PETSWorldModel(ensemble, spec), env_id=CARTPOLE, known_task=False,
               planner={"horizon": 2, "candidates": 4, "iterations": 1, "particles": 1, "elites": 2, "seed": 0})
    return root


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ": error: " in err[0], err  # one line, no traceback
    return err[0]


def assert_names_both(line: str, family: str) -> None:
    env_id, env_spaces, model_spaces = WRONG[family]
    assert f"{env_id} has observations {env_spaces}, but" in line and f"trained on {model_spaces}" in line, line


@pytest.mark.parametrize("family", ["worldmodels", "dreamer"])  # PETS models have no frames to dream
def test_dream_refuses_other_spaces_before_writing(models, tmp_path, capsys, family):
    logdir = tmp_path / "dreams"
    argv = ["dream", "--checkpoint", str(models / family), "--env", WRONG[family][0], "--logdir", str(logdir)]
    assert main([*argv, "--device", "cpu"]) == 2
    assert_names_both(one_error(capsys), family)
    assert not logdir.exists()  # refused before a clip or an event file


@pytest.mark.parametrize("family", ["worldmodels", "dreamer", "pets"])
def test_plan_and_evaluate_refuse_other_spaces(models, capsys, family):
    before = sorted(p.name for p in (models / family).iterdir())
    assert main(["plan", "--checkpoint", str(models / family), "--env", WRONG[family][0], *PLAN]) == 2
    assert_names_both(one_error(capsys), family)
    assert main(["evaluate", "--run-dir", str(models / family), "--env", WRONG[family][0], "--episodes", "1",
                 "--device", "cpu"]) == 2
    assert_names_both(one_error(capsys), family)
    assert sorted(p.name for p in (models / family).iterdir()) == before  # no eval file written


def test_plan_on_another_env_writes_its_own_file(models):
    own = models / "worldmodels" / "eval-plan-cem.json"
    assert main(["plan", "--checkpoint", str(models / "worldmodels"), *PLAN]) == 0
    before = own.read_text()
    assert main(["plan", "--checkpoint", str(models / "worldmodels"), "--env", TWIN_ID, *PLAN]) == 0
    assert own.read_text() == before
    assert (models / "worldmodels" / "eval-plan-cem-worldmodels-test_CatchTwin-v0.json").is_file()


@pytest.mark.parametrize("family", ["worldmodels", "dreamer", "pets"])
def test_serve_checks_env_at_load(models, capsys, family):
    assert main(["serve", "--checkpoint", str(models / family), "--env", WRONG[family][0], "--port", "0",
                 "--device", "cpu"]) == 2  # refused before it binds or serves
    assert_names_both(one_error(capsys), family)
    own_env = CARTPOLE if family == "pets" else TWIN_ID  # the same spaces: served
    server, sock, info = make_server(ServeConfig(checkpoint=str(models / family), env=own_env, port=0, device="cpu"))
    sock.close()
    assert info["family"] == family


@pytest.mark.parametrize("family", ["worldmodels", "dreamer"])  # the families `wm finetune` adapts
def test_finetune_refuses_actions_no_model_takes(models, tmp_path, capsys, family):
    run_dir = tmp_path / "ft"
    argv = ["finetune", "--preset", "debug", "--from", str(models / family), "--run-dir", str(run_dir)]
    assert main([*argv, "--env", GRID_ID]) == 2
    line = one_error(capsys)
    assert f"{GRID_ID} has observations (16, 16, 3) and unsupported MultiDiscrete([3 3]) actions" in line, line
    assert "fine-tuning adapts the action layers, not the observations" in line
    assert not run_dir.exists()  # refused before collecting or training


def test_finetune_never_writes_over_its_source(models, capsys):
    source = models / "worldmodels"
    before = sorted(p.name for p in source.iterdir())
    assert main(["finetune", "--preset", "debug", "--from", str(source), "--run-dir", str(source)]) == 2
    assert "holds the source model" in one_error(capsys)
    assert sorted(p.name for p in source.iterdir()) == before
