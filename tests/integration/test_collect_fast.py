"""``wm collect --collect-mode fast`` (seeded once, autoresets, episodes written as they finish), the mode recorded in
store.json, and the driver's row blocks that made both modes cheaper without changing what exact mode stores."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import scripts.cli
from tests.integration.test_collect import AlignEnv, align_vector, new_store
from worldmodels.data.collect import collect_episodes, store_spec_for
from worldmodels.data.store import EpisodeStore
from worldmodels.driver import Driver, Recycled
from worldmodels.envs import make_vector
from worldmodels.envs.spaces import ActionSpec
from worldmodels.envs.toy import CATCH_ID
from worldmodels.policies import make_random_policy


def collect_catch(root, episodes: int, *, mode: str, policy: str = "hold", seed: int = 11, num_envs: int = 3,
                  **kwargs) -> EpisodeStore:
    vec_env = make_vector(CATCH_ID, num_envs, image_size=16)
    try:
        spec = store_spec_for(vec_env, CATCH_ID)
        store = EpisodeStore.create(root, env_id=CATCH_ID, obs_shape=spec.obs_shape, action_spec=spec.action_spec)
        collect_episodes(vec_env, store, episodes=episodes, policy=policy, seed=seed, progress=False, mode=mode, **kwargs)
    finally:
        vec_env.close()
    return EpisodeStore.open(root)


def test_fast_mode_writes_the_target_count_of_valid_episodes_and_records_the_mode(tmp_path):
    store = new_store(tmp_path)
    vec_env = align_vector(3)
    stats = collect_episodes(vec_env, store, episodes=11, policy="sticky", seed=0, progress=False, mode="fast")
    vec_env.close()
    reread = EpisodeStore.open(tmp_path)
    assert stats.episodes == 11 and stats.total_episodes == 11 and len(reread) == 11
    assert json.loads((tmp_path / "store.json").read_text())["collect_mode"] == "fast"
    for name in reread.names:  # the row convention of tests/integration/test_collect.py, episode by episode
        ep = reread.load(name)
        code, step, episode_id = (ep.obs[:, 0, 0, k].astype(int) for k in range(3))
        np.testing.assert_array_equal(step, np.arange(len(ep)))  # one whole episode, from its (auto)reset frame
        assert (episode_id == episode_id[0]).all() and code[0] == 0 and ep.reward[0] == 0.0 and ep.action[-1] == 0
        np.testing.assert_array_equal(code[1:], ep.action[:-1] + 1)
        assert ep.terminated[-1] or ep.truncated[-1]


def test_fast_mode_is_seeded_once_and_a_rerun_adds_other_episodes(tmp_path):
    first = collect_catch(tmp_path / "a", 8, mode="fast")
    again = collect_catch(tmp_path / "b", 8, mode="fast")
    assert first.names == again.names  # an uninterrupted run is reproducible (same seed, same number of envs)
    stopped = collect_catch(tmp_path / "c", 4, mode="fast")
    resumed = collect_catch(tmp_path / "c", 8, mode="fast")
    assert len(resumed) == 8 and resumed.names[:4] == stopped.names
    assert resumed.names != first.names  # not exactly resumable: the added episodes are not those of the straight run


def test_exact_mode_stores_what_it_stored_before_fast_mode_existed(tmp_path):
    # Names end in a BLAKE2b digest of the episode's arrays, so equal names are equal stores, bit for bit; these
    # were written by the collector before the row blocks, the numpy random policies and fast mode.
    assert collect_catch(tmp_path / "r", 7, mode="exact", policy="random", seed_every=1).names[:3] == [
        "ep-000000-8e58c477", "ep-000001-d33849dc", "ep-000002-967c83ed"]
    assert collect_catch(tmp_path / "h", 7, mode="exact", policy="hold", seed_every=2).names[-2:] == [
        "ep-000005-596cab13", "ep-000006-7e47af06"]
    assert collect_catch(tmp_path / "s", 7, mode="exact", policy="sticky", seed_every=1).names[3:5] == [
        "ep-000003-e13df359", "ep-000004-03db6ceb"]
    assert "collect_mode" not in json.loads((tmp_path / "r" / "store.json").read_text())  # as stores had it


@pytest.mark.parametrize("first, second", [("fast", "exact"), ("exact", "fast")])
def test_a_rerun_in_the_other_mode_is_refused_in_one_line(tmp_path, capsys, first, second):
    args = ["collect", "--env", CATCH_ID, "--episodes", "4", "--num-envs", "2", "--image-size", "16",
            "--out", str(tmp_path / "s")]
    assert scripts.cli.main([*args, "--collect-mode", first]) == 0
    capsys.readouterr()
    code = scripts.cli.main([*args[:4], "8", *args[5:], "--collect-mode", second])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"holds 4 episode(s) collected with --collect-mode {first}" in err and f"--collect-mode {first} or" in err
    assert len(EpisodeStore.open(tmp_path / "s")) == 4
    with pytest.raises(ValueError, match="collected with --collect-mode"):  # the library refuses it too
        collect_catch(tmp_path / "s", 8, mode=second)


def test_an_empty_store_takes_either_mode(tmp_path):
    collect_catch(tmp_path, 1, mode="fast")
    for entry in (tmp_path / "episodes").iterdir():  # emptied by hand: no episode of either mode left
        for file in entry.iterdir():
            file.unlink()
        entry.rmdir()
    assert len(collect_catch(tmp_path, 2, mode="exact")) == 2
    assert "collect_mode" not in json.loads((tmp_path / "store.json").read_text())


class LongEnv(AlignEnv):
    """AlignEnv with episodes of 90..300 steps, so the driver's blocks of 64 rows are crossed and reused."""

    def reset(self, *, seed=None, options=None):
        frame, info = super().reset(seed=seed)
        self.length = int(self.np_random.integers(90, 300))
        return frame, info

    def _frame(self, last_action_code):
        frame = np.zeros((64, 64, 3), np.uint8)
        frame[0, 0] = (last_action_code, self.t % 256, self.episode_id)
        frame[0, 1] = (self.t // 256, self.t % 256, 0)
        return frame


class _Rows:
    def __init__(self):
        self.rows, self.episodes = {}, []

    def on_row(self, env_index, row):
        self.rows.setdefault(env_index, []).append({k: np.array(v) for k, v in row.items()})

    def on_episode(self, env_index, episode, complete):
        self.episodes.append((env_index, {k: np.array(v) for k, v in episode.items()}, complete))


def test_driver_episodes_are_the_rows_it_recorded_across_blocks_and_masked_resets():
    vec_env = gym.vector.SyncVectorEnv([LongEnv for _ in range(3)])
    hook = _Rows()
    driver = Driver(vec_env, make_random_policy("hold", ActionSpec("discrete", 5), 0), hooks=[hook])
    driver.reset(seed=[1, 2, 3])
    for t in range(1500):
        if t == 700:  # env 1 drops its running episode; a done env would have its episode finished first
            driver.reset_envs(np.array([False, True, False]), [9])
        driver.step()
    vec_env.close()
    assert len(hook.episodes) >= 8
    cursor = {i: 0 for i in range(3)}  # where each env's next episode begins in its rows
    for env_index, episode, complete in hook.episodes:
        rows = hook.rows[env_index]
        start = cursor[env_index]
        while not rows[start]["is_first"] or rows[start]["obs"][0, 0, 2] != episode["obs"][0, 0, 0, 2]:
            start += 1  # the rows of the episode dropped by the masked reset
        length = len(episode["obs"])
        cursor[env_index] = start + length
        assert complete
        for key in ("obs", "action", "reward", "terminated", "truncated"):
            np.testing.assert_array_equal(episode[key], np.stack([r[key] for r in rows[start:start + length]]), key)
        step = episode["obs"][:, 0, 1, 0].astype(int) * 256 + episode["obs"][:, 0, 1, 1]
        np.testing.assert_array_equal(step, np.arange(length))


def test_recycled_buffers_come_back_only_when_nothing_of_them_is_alive():
    pool = Recycled()
    first = pool.take(100, (2,), np.dtype(np.uint8))
    tail = first[50:]  # a view of a view still holds the buffer
    del first
    second = pool.take(100, (2,), np.dtype(np.uint8))
    assert second.base is not tail.base
    buffer = id(tail.base)  # not the buffer itself: holding it would keep it in use
    del tail
    again = pool.take(80, (2,), np.dtype(np.uint8))
    assert id(again.base) == buffer and again.base.shape == (128, 2)  # rows rounded up to a power of two


@pytest.mark.parametrize("spec", [ActionSpec("discrete", 4), ActionSpec("continuous", 2, low=(-2.0, 0.0), high=(0.5, 3.0))])
@pytest.mark.parametrize("name", ["random", "sticky", "hold"])
def test_numpy_acting_draws_what_the_torch_act_gives(spec, name):
    import torch

    direct, through_act = make_random_policy(name, spec, 0), make_random_policy(name, spec, 0)
    for policy in (direct, through_act):
        policy.use_batch_stream(5)
    state_a = state_b = None
    for t in range(40):
        is_first = np.array([t == 0, t % 7 == 0, False])
        env_action, state_a = direct.act_env(is_first, state_a)
        model_action, state_b = through_act.act(torch.zeros(3, 1), torch.as_tensor(is_first), state_b)
        np.testing.assert_array_equal(env_action, spec.to_env(model_action))
        if not spec.discrete:
            assert ((env_action >= np.array(spec.low)) & (env_action <= np.array(spec.high))).all()
