"""PETS on the continuous cartpole: CEM over a probabilistic ensemble balances the pole within 2,000 real steps."""

from __future__ import annotations

import json

import numpy as np

from scripts.pets import run
from trainers.runs.pets import PETSRunConfig, make_state_env
from worldmodels.envs.cartpole_continuous import CONTINUOUS_CARTPOLE_ID, MAX_EPISODE_STEPS
from worldmodels.envs.spaces import ActionSpec
from worldmodels.evaluation import run_episodes
from worldmodels.pets.family import load_whole
from worldmodels.policies import RandomPolicy

# Small enough for well under a minute of CPU (measured ~23 s CPU, see the README PETS section): 3 members, 100 rows per
# imagine call (50 candidates x 2 particles), 2 CEM iterations. Horizon 20 (0.4 s): with 12 the plans kept the
# pole up but let the cart drift off the track (|x| > 2.4) after 120-160 steps, since only termination is scored.
LIGHT = dict(ensemble=3, hidden=64, layers=3, candidates=50, particles=2, iterations=2, cem_elites=5, horizon=20)
BUDGET = 1000  # real transitions; the issue allows 2,000. Seeds 0, 1, 2 first reached 200 after 534, 549, 445.


def test_pets_balances_continuous_cartpole(tmp_path):
    config = PETSRunConfig(env=CONTINUOUS_CARTPOLE_ID, steps=BUDGET, eval_episodes=3, eval_envs=3,
                           run_dir=str(tmp_path / "run"), seed=0, propagation="tsinf", **LIGHT)
    results = run(config)

    env = make_state_env(CONTINUOUS_CARTPOLE_ID, 5)
    random = run_episodes(env, RandomPolicy(ActionSpec.from_space(env.single_action_space), seed=1),
                          episodes=20, seed=123)
    env.close()
    # Random play survives ~20 steps (a handful of Euler steps until |theta| > 12 deg); its best of 20 stays far
    # below 150, so 150 is a level only a controller that uses theta and theta_dot reaches.
    assert random.mean() < 40 and random.max() < 150, random

    returns, ends = np.array(results["episode_returns"]), np.array(results["episode_end_steps"])
    assert results["env_steps"] <= 2000 and ends.max() <= 2000
    # The bar: an episode of >= 150 (of at most 200) within 2,000 real steps, random warm-up included.
    assert (returns >= 150).any(), (returns.tolist(), ends.tolist())

    record = json.loads((tmp_path / "run" / "eval.json").read_text())
    # The evaluation (3 fresh seeds, shared with random) must keep the pole up for most of the 200 steps:
    # 150 is 7x the random mean and above every random episode measured here.
    assert record["return_mean"] >= 150 > record["random_mean"], record
    assert record["return_mean"] <= MAX_EPISODE_STEPS
    # The checkpoint reloads into a world model that imagines from a real state.
    assert load_whole(tmp_path / "run" / "model").ensemble.ensemble_size == 3
