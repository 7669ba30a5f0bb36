"""The one env loop: what the online replay and its store record is what the env executed; random prefill
inside the Box; evaluation's eval.json schema; V+M+C acting through ModelPolicy as the old real-env loop did."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from trainers.data.online import OnlineReplay
from worldmodels.data.store import EpisodeStore
from worldmodels.envs.spaces import ActionSpec
from worldmodels.envs.toy import CATCH_ID
from worldmodels.evaluation import EVAL_KEYS, evaluate_against_random, write_eval
from worldmodels.policies import RandomPolicy

PREFILL = 40  # agent steps (2 envs x 20 vector steps) of random actions before the agent acts


class ExecutedActions(gym.vector.VectorWrapper):
    """Records every action array the vector env was asked to execute, ``(E, A)`` per step."""

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        super().__init__(env)
        self.executed: list[np.ndarray] = []

    def step(self, actions):
        self.executed.append(np.array(actions, dtype=np.float32))
        return self.env.step(actions)


class OutOfBounds:
    """An agent whose actions leave the Box on every dimension: steer -3, gas 3, brake 3."""

    def __init__(self, action_spec: ActionSpec) -> None:
        self.action_spec = action_spec

    def initial(self, batch_size):
        return None

    def act(self, obs, is_first, state):
        return torch.tensor([-3.0, 3.0, 3.0]).expand(obs.shape[0], 3).clone(), state


@pytest.fixture(scope="module")
def carracing_replay(tmp_path_factory):
    """CarRacing-v3 (continuous, Box low (-1, 0, 0), high (1, 1, 1)) through OnlineReplay, 15-step episodes."""
    pytest.importorskip("Box2D")
    store_dir = tmp_path_factory.mktemp("online") / "episodes"
    replay = OnlineReplay("CarRacing-v3", None, num_envs=2, batch_size=2, seq_len=4, prefill=PREFILL, capacity=1000,
                          seed=0, store_dir=str(store_dir), env_options={"image_size": 16, "max_episode_steps": 15})
    replay.agent = OutOfBounds(replay.action_spec)
    replay.env = ExecutedActions(replay.env)
    for _ in range(60):
        replay.step()
    yield replay, np.stack(replay.env.executed), EpisodeStore.open(store_dir)  # executed (steps, E, A)
    replay.env.close()


def test_replay_and_store_hold_the_executed_action(carracing_replay):
    replay, executed, store = carracing_replay
    steps = executed.shape[0]
    for env_index in range(2):
        rows = replay.replay.data[env_index]["action"][:replay.replay.count[env_index]]  # (steps, A) store encoding
        assert replay.replay.count[env_index] == steps
        np.testing.assert_array_equal(rows, executed[:, env_index])
    # After the prefill the agent asked for (-3, 3, 3); the env executed, and everything recorded, the clipped action.
    agent_rows = executed[PREFILL // 2:]
    running = agent_rows.any(-1)  # rows that end an episode hold (and send) zeros
    np.testing.assert_array_equal(agent_rows[running], np.broadcast_to([-1.0, 1.0, 1.0], agent_rows[running].shape))
    # Every stored episode is a contiguous run of what one env executed.
    assert len(store) >= 4
    streams = [executed[:, i] for i in range(2)]
    for name in store.names:
        action = np.asarray(store.load(name).action)  # (L, A)
        L = len(action)
        assert any(np.array_equal(stream[s:s + L], action) for stream in streams for s in range(steps - L + 1)), name
        assert not action[-1].any()  # last row: zeros
    batch = next(iter(replay))
    assert batch["action"].shape == (2, 4, 3) and batch["action"].dtype == torch.float32  # model encoding


def test_random_prefill_stays_inside_the_box(carracing_replay):
    _, executed, _ = carracing_replay
    prefill = executed[:PREFILL // 2].reshape(-1, 3)
    prefill = prefill[prefill.any(-1)]  # drop the zero actions of episode-ending rows
    low, high = np.array([-1.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0])
    assert ((prefill >= low) & (prefill <= high)).all()
    # Uniform inside the Box: gas and brake spread over [0, 1] (a [-1, 1] draw would put half of them below 0).
    assert 0.3 < prefill[:, 1].mean() < 0.7 and prefill[:, 0].min() < 0.0 < prefill[:, 0].max()


def test_evaluation_writes_the_eval_json_schema(tmp_path):
    from worldmodels.envs import make_vector

    env = make_vector(CATCH_ID, 2, image_size=16, seed=0)
    try:
        spec = ActionSpec.from_space(env.single_action_space)
        # A random agent seeded like the baseline faces the same starts with the same actions: equal returns.
        record = evaluate_against_random(env, RandomPolicy(spec, seed=5), env_id=CATCH_ID, episodes=3, seed=5)
    finally:
        env.close()
    path = write_eval(tmp_path / "run" / "eval.json", record)
    written = json.loads(path.read_text())
    assert set(EVAL_KEYS) <= set(written) and written["env"] == CATCH_ID and written["episodes"] == 3
    assert len(written["returns"]) == len(written["random_returns"]) == 3
    assert written["returns"] == written["random_returns"]
    assert written["return_mean"] == pytest.approx(np.mean(written["returns"]))
    with pytest.raises(ValueError, match="eval record lacks") as error:
        write_eval(tmp_path / "bad.json", {"env": CATCH_ID})
    assert "\n" not in str(error.value)


def test_vmc_policy_acts_like_the_real_env_loop():
    """ModelPolicy(VMWorldModel(sample_latent=False)) + ControllerHead = the paper's V -> M -> C loop, by hand."""
    from worldmodels.controllers.linear import make_controller
    from worldmodels.controllers.real_env import world_model_policy_factory
    from worldmodels.models.conv import to_float_image
    from worldmodels.models.mdnrnn import MDNRNN
    from worldmodels.models.vae import ConvVAE

    torch.manual_seed(0)
    spec = ActionSpec("continuous", 3, (-1.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    vae, mdnrnn = ConvVAE(image_size=16, z_dim=4, depth=4, stages=2).eval(), MDNRNN(z_dim=4, action_dim=3, hidden_size=8)
    controller = make_controller("linear", 4 + 8, spec)
    params = torch.randn(2, controller.num_params)  # one candidate per env
    policy = world_model_policy_factory(vae, mdnrnn, controller, params)(np.arange(2))
    obs = torch.randint(0, 256, (6, 2, 16, 16, 3), dtype=torch.uint8)  # (steps, E, H, W, C)
    is_first = torch.zeros(6, 2, dtype=torch.bool)
    is_first[0], is_first[3, 1] = True, True  # env 1 starts a new episode at step 3
    state, h, c = None, torch.zeros(2, 8), torch.zeros(2, 8)
    with torch.no_grad():
        for t in range(6):
            action, state = policy.act(obs[t], is_first[t], state)
            z, _ = vae.encode(to_float_image(obs[t]))  # posterior mean
            keep = (~is_first[t]).float().unsqueeze(-1)
            h, c = h * keep, c * keep
            expected = controller(params, torch.cat([z, h], -1).unsqueeze(1)).squeeze(1)  # (E, A)
            _, (h, c) = mdnrnn.step(z, expected, (h, c))
            torch.testing.assert_close(action, expected)
