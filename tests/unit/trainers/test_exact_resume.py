"""Exact resume (DESIGN.md): each piece a killed run restarts from continues exactly as the uninterrupted one does.

The step sampler of V and M, CMA-ES's replayed state, the online replay's ring rebuilt from the store, and the
collector's episode-indexed seeding. The whole pipelines under SIGKILL: tests/integration/test_kill_harness.py.
"""

from __future__ import annotations

import numpy as np
import torch

from trainers.data.online import StreamReplay, load_store
from trainers.data.resume import StepBatchSampler
from worldmodels.controllers.cmaes import train_cmaes
from worldmodels.data.collect import collect_episodes
from worldmodels.data.store import EpisodeStore
from worldmodels.envs import make_vector
from worldmodels.envs.spaces import ActionSpec
from worldmodels.envs.toy import CATCH_ID


def test_a_sampler_started_at_step_k_yields_what_the_straight_one_yields_from_k():
    def batches(sampler, epochs):
        return [b for _ in range(epochs) for b in sampler]

    straight = batches(StepBatchSampler(10, batch_size=4, num_samples=12, seed=3), epochs=3)  # 3 batches an epoch
    assert len(straight) == 9 and all(len(b) == 4 for b in straight)
    # No replacement inside an epoch while the permutation lasts: the first 10 of 12 draws are 10 distinct items.
    assert sorted(sum(straight[:3], [])[:10]) == list(range(10))
    for k in (1, 3, 4, 8):  # mid-epoch, on an epoch boundary, and in the last epoch
        resumed = StepBatchSampler(10, batch_size=4, num_samples=12, seed=3, start=k)
        assert batches(resumed, epochs=3 - k // 3) == straight[k:], k
    assert batches(StepBatchSampler(10, batch_size=4, num_samples=12, seed=4), epochs=1) != straight[:3]


def test_cmaes_stopped_at_any_generation_resumes_bit_identical(tmp_path):
    target = torch.linspace(-1, 1, 6)

    def fitness(params):  # noisy, so the torch draws of every generation matter too
        return -(params - target).pow(2).sum(-1) + 0.1 * torch.randn(params.shape[0])

    straight = train_cmaes(fitness, 6, generations=12, population=8, seed=3, checkpoint_dir=tmp_path / "straight")
    train_cmaes(fitness, 6, generations=5, population=8, seed=3, checkpoint_dir=tmp_path / "stopped")
    np.random.seed(123), torch.manual_seed(123)  # whatever ran in between must not matter
    resumed = train_cmaes(fitness, 6, generations=12, population=8, seed=3, checkpoint_dir=tmp_path / "stopped")
    assert np.array_equal(straight["mean"], resumed["mean"]) and np.array_equal(straight["best_params"],
                                                                                 resumed["best_params"])
    strip = lambda history: [{k: v for k, v in r.items() if k != "seconds"} for r in history]  # noqa: E731
    assert strip(straight["history"]) == strip(resumed["history"])


def _store_with_episodes(root, lengths) -> EpisodeStore:
    store = EpisodeStore.create(root, env_id="Rows-v0", obs_shape=(2, 2, 1), action_spec=ActionSpec("discrete", 3))
    row = 0
    for length in lengths:
        obs = (np.arange(row, row + length, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8))
        store.add_episode(obs=obs, action=np.zeros(length, np.int64), reward=np.zeros(length, np.float32),
                          terminated=np.eye(length, dtype=bool)[-1], truncated=np.zeros(length, bool))
        row += length
    return store


def test_one_stream_replay_is_rebuilt_row_for_row_from_the_store(tmp_path):
    lengths = [5, 7, 4, 6]  # 22 rows through a 10-row ring: the oldest kept episode is cut
    store = _store_with_episodes(tmp_path, lengths)
    live = StreamReplay(streams=1, capacity=10, obs_shape=(2, 2, 1), action_spec=store.spec.action_spec)
    for info in store.episodes:  # what the running replay held, row by row
        episode = store.load(info.name)
        for t in range(info.length):
            live.add(0, {"obs": episode.obs[t], "action": episode.action[t], "reward": episode.reward[t],
                         "terminated": episode.terminated[t], "truncated": episode.truncated[t], "is_first": t == 0})
    rebuilt = StreamReplay(streams=1, capacity=10, obs_shape=(2, 2, 1), action_spec=store.spec.action_spec)
    assert load_store(rebuilt, store) == 10 and rebuilt.count == live.count == [22]
    for key in live.data[0]:
        np.testing.assert_array_equal(rebuilt.data[0][key], live.data[0][key], err_msg=key)
    a, b = (r.sample(np.random.default_rng(0), 3, 4) for r in (live, rebuilt))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_collection_stopped_mid_run_resumes_to_the_straight_store(tmp_path):
    def collect(root, episodes):
        env = make_vector(CATCH_ID, 3, image_size=16)
        store = EpisodeStore.create(root, env_id=CATCH_ID, obs_shape=(16, 16, 3), action_spec=ActionSpec("discrete", 3))
        try:
            collect_episodes(env, store, episodes=episodes, seed=5, policy="sticky", progress=False)
        finally:
            env.close()
        return EpisodeStore.open(root)

    straight = collect(tmp_path / "straight", 10)
    collect(tmp_path / "stopped", 4)  # 3 envs: it stops with later episodes still running (discarded)
    resumed = collect(tmp_path / "stopped", 10)
    assert len(resumed) == len(straight) == 10
    for x, y in zip(straight.episodes, resumed.episodes):
        np.testing.assert_array_equal(straight.load(x.name).obs, resumed.load(y.name).obs)
        np.testing.assert_array_equal(straight.load(x.name).action, resumed.load(y.name).action)
