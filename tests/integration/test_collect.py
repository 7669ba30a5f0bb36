"""collect_episodes on a tiny pixel env that writes its own bookkeeping into every frame,
so the stored row convention (DESIGN.md) can be checked exactly; plus the `wm collect` entry point."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import scripts.cli
import worldmodels.envs
from scripts.collect import CollectConfig, run
from worldmodels.data.collect import collect_episodes
from worldmodels.data.store import EpisodeStore
from worldmodels.envs.spaces import ActionSpec

ENV_ID = "Align-v0"


class AlignEnv(gym.Env):
    """Frame pixel (0, 0) holds (last action + 1 or 0 at reset, step index, episode id).

    Reward arriving with step t's frame is ``10 * t + action``; episodes last 3..8 steps and end
    terminated when the length is even, truncated when it is odd.
    """

    observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gym.spaces.Discrete(5)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.length = 0, int(self.np_random.integers(3, 9))
        self.episode_id = int(self.np_random.integers(1, 256))
        return self._frame(0), {}

    def step(self, action):
        self.t += 1
        done = self.t == self.length
        reward = 10.0 * self.t + int(action)
        return self._frame(int(action) + 1), reward, done and self.length % 2 == 0, done and self.length % 2 == 1, {}

    def _frame(self, last_action_code: int) -> np.ndarray:
        frame = np.zeros((64, 64, 3), np.uint8)
        frame[0, 0] = (last_action_code, self.t, self.episode_id)
        return frame


def align_vector(num_envs: int = 3) -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv([AlignEnv for _ in range(num_envs)])  # NEXT_STEP autoreset by default


def new_store(root) -> EpisodeStore:
    return EpisodeStore.create(root, env_id=ENV_ID, obs_shape=(64, 64, 3), action_spec=ActionSpec("discrete", 5))


def collect(root, episodes: int, seed: int = 0, **kwargs):
    store = new_store(root)
    vec_env = align_vector()
    try:
        return store, collect_episodes(vec_env, store, episodes=episodes, seed=seed, progress=False, **kwargs)
    finally:
        vec_env.close()


def test_rows_follow_the_convention(tmp_path):
    store, stats = collect(tmp_path, episodes=7)
    assert len(store) == 7 and stats.episodes == 7 and stats.total_episodes == 7
    assert stats.frames == store.num_frames and stats.env_steps >= stats.frames - 7
    for info in store.episodes:
        ep = store.load(info.name)
        L = len(ep)
        code, step, episode_id = (ep.obs[:, 0, 0, k].astype(int) for k in range(3))
        assert L == info.length and 4 <= L <= 9
        np.testing.assert_array_equal(step, np.arange(L))  # one episode, no frame lost or repeated
        assert (episode_id == episode_id[0]).all()
        assert code[0] == 0 and ep.reward[0] == 0.0  # row 0 is the reset frame, nothing arrived yet
        # action[t] is the action taken at obs[t]: the env drew it into obs[t + 1] and paid it in reward[t + 1].
        np.testing.assert_array_equal(code[1:], ep.action[:-1] + 1)
        np.testing.assert_array_equal(ep.reward[1:], 10.0 * np.arange(1, L) + ep.action[:-1])
        assert ep.action[-1] == 0
        assert not ep.terminated[:-1].any() and not ep.truncated[:-1].any()
        length_steps = L - 1
        assert ep.terminated[-1] == (length_steps % 2 == 0) and ep.truncated[-1] == (length_steps % 2 == 1)
        assert info.episode_return == pytest.approx(float(ep.reward.sum()))
    assert stats.mean_return == pytest.approx(np.mean([i.episode_return for i in store.episodes]))


def test_same_seed_same_store_and_different_seed_differs(tmp_path):
    first, _ = collect(tmp_path / "a", episodes=5, seed=3)
    second, _ = collect(tmp_path / "b", episodes=5, seed=3)
    other, _ = collect(tmp_path / "c", episodes=5, seed=4)
    assert first.names == second.names != other.names
    for name in first.names:
        a, b = first.load(name), second.load(name)
        for key in ("obs", "action", "reward", "terminated", "truncated"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


def test_episodes_is_a_target_total_so_a_rerun_resumes(tmp_path):
    store, stats = collect(tmp_path, episodes=3)
    first_names = store.names
    store, stats = collect(tmp_path, episodes=7)
    assert stats.episodes == 4 and len(store) == 7 and store.names[:3] == first_names
    # The resumed run is reseeded from the count, so it does not replay the first episodes.
    assert {n.split("-")[2] for n in store.names[3:]}.isdisjoint({n.split("-")[2] for n in first_names})
    store, stats = collect(tmp_path, episodes=5)
    assert stats.episodes == 0 and len(store) == 7


def test_policy_sees_is_first_exactly_at_episode_starts(tmp_path):
    seen = []

    class Recorder:
        """A stateless Policy (carry stays None) that always picks class 2 and records what it saw."""

        action_spec = ActionSpec("discrete", 5)

        def initial(self, batch_size):
            return None

        def act(self, obs, is_first, state):
            assert obs.shape == (3, 64, 64, 3) and obs.dtype == torch.uint8 and is_first.shape == (3,)
            seen.append((obs[:, 0, 0, 1].numpy().copy(), obs[:, 0, 0, 0].numpy().copy(), is_first.numpy().copy()))
            return torch.nn.functional.one_hot(torch.full((3,), 2), 5).float(), state

    store, _ = collect(tmp_path, episodes=6, policy=Recorder())
    for step, code, is_first in seen:
        np.testing.assert_array_equal(is_first, step == 0)
    assert all((store.load(n).action[:-1] == 2).all() for n in store.names)


def fake_make_vector(calls):
    def make_vector(env_id, num_envs, *, image_size=64, seed=None, **options):
        calls.append(env_id)
        return align_vector(num_envs)
    return make_vector


def test_run_collects_and_returns_stats(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(worldmodels.envs, "make_vector", fake_make_vector(calls), raising=False)
    config = CollectConfig(env=ENV_ID, episodes=4, out=str(tmp_path / "store"), num_envs=2, seed=1)
    stats = run(config)
    assert calls == [ENV_ID] and stats["episodes"] == 4 and stats["total_episodes"] == 4
    assert len(EpisodeStore.open(tmp_path / "store")) == 4
    assert capsys.readouterr().out.strip().count("\n") == 0
    with pytest.raises(ValueError, match="holds episodes of 'Align-v0'"):
        run(CollectConfig(env="Other-v0", episodes=4, out=str(tmp_path / "store")))
    assert calls == [ENV_ID]


@pytest.fixture
def cli(monkeypatch):
    """``wm`` with only the collect subcommand registered (others may not exist yet), envs faked."""
    calls: list[str] = []
    monkeypatch.setattr(scripts.cli, "COMMANDS", {"collect": scripts.cli.COMMANDS["collect"]})
    monkeypatch.setattr(worldmodels.envs, "make_vector", fake_make_vector(calls), raising=False)
    return calls


@pytest.mark.parametrize("count", ["0", "-3"])
def test_cli_rejects_non_positive_episodes_in_one_line(tmp_path, cli, capsys, count):
    code = scripts.cli.main(["collect", "--episodes", count, "--out", str(tmp_path / "s"), "--env", ENV_ID])
    err = capsys.readouterr().err
    assert code == 2 and cli == []
    assert err.count("\n") == 1 and f"--episodes must be a positive integer, got {count}" in err


def test_cli_refuses_unwritable_out_before_making_envs(tmp_path, cli, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, so nothing can ever be created under it (even as root)")
    code = scripts.cli.main(["collect", "--episodes", "2", "--out", str(blocker / "sub"), "--env", ENV_ID])
    err = capsys.readouterr().err
    assert code == 2 and cli == []
    assert err.count("\n") == 1 and "cannot write to store directory" in err and str(blocker / "sub") in err


def test_cli_collects(tmp_path, cli, capsys):
    code = scripts.cli.main(["collect", "--episodes", "2", "--num-envs", "2", "--out", str(tmp_path / "s"),
                             "--env", ENV_ID])
    assert code == 0 and cli == [ENV_ID] and len(EpisodeStore.open(tmp_path / "s")) == 2


def test_sticky_random_policy_repeats_and_resets():
    from worldmodels.policies import StickyRandomPolicy

    spec = ActionSpec("discrete", 6)
    policy = StickyRandomPolicy(spec, seed=0, repeat_prob=0.9)
    obs = torch.zeros(4, 8, 8, 3, dtype=torch.uint8)  # 4 sub-envs
    state, actions = None, []
    for _ in range(200):
        action, state = policy.act(obs, torch.zeros(4, dtype=torch.bool), state)
        actions.append(spec.to_env(action))
    changes = np.mean([np.mean(a != b) for a, b in zip(actions, actions[1:])])
    # A fresh draw happens w.p. 0.1 and differs from the old action w.p. 5/6: expected change rate 0.083.
    assert 0.04 < changes < 0.13
    reset, _ = policy.act(obs, torch.ones(4, dtype=torch.bool), state)  # is_first: every sub-env draws afresh
    assert spec.to_env(reset).shape == (4,)


@pytest.mark.parametrize("name", ["random", "sticky", "hold"])
def test_named_collection_policies(tmp_path, name):
    store, stats = collect(tmp_path, episodes=3, policy=name)
    assert stats.episodes == 3 and all(((store.load(n).action >= 0) & (store.load(n).action < 5)).all()
                                       for n in store.names)
    with pytest.raises(ValueError, match="unknown collection policy 'nope'"):
        collect(tmp_path / "other", episodes=1, policy="nope")


class _Rows:
    """Driver hook keeping every row and every finished episode."""

    def __init__(self):
        self.rows, self.episodes = {}, []

    def on_row(self, env_index, row):
        self.rows.setdefault(env_index, []).append({k: np.array(v) for k, v in row.items()})

    def on_episode(self, env_index, episode, complete):
        self.episodes.append((env_index, episode, complete))


def test_driver_rows_follow_the_convention():
    from worldmodels.driver import Driver
    from worldmodels.policies import HoldRandomPolicy

    vec_env = align_vector()
    hook = _Rows()
    driver = Driver(vec_env, HoldRandomPolicy(ActionSpec("discrete", 5), seed=0), hooks=[hook])
    driver.reset(seed=0)
    driver.run(episodes=9)
    vec_env.close()
    assert driver.episodes >= 9 and len(hook.episodes) == driver.episodes
    for env_index, rows in hook.rows.items():
        for t, row in enumerate(rows[:-1]):
            nxt = rows[t + 1]
            if row["terminated"] or row["truncated"]:  # last row: zeros; the next row starts an episode at reward 0
                assert row["action"] == 0 and nxt["is_first"] and nxt["reward"] == 0.0
                continue
            # action[t] is taken at obs[t]: drawn into obs[t + 1], paid in reward[t + 1].
            assert nxt["obs"][0, 0, 0] == row["action"] + 1 and nxt["reward"] == 10.0 * nxt["obs"][0, 0, 1] + row["action"]
            assert row["is_first"] == (row["obs"][0, 0, 1] == 0)
    for env_index, episode, complete in hook.episodes:
        assert complete and episode["reward"][0] == 0.0 and episode["action"][-1] == 0
        np.testing.assert_array_equal(episode["obs"][:, 0, 0, 1], np.arange(len(episode["obs"])))


def test_record_episode_cuts_with_a_zero_last_action():
    from worldmodels.driver import record_episode
    from worldmodels.policies import RandomPolicy

    spec = ActionSpec("discrete", 5)
    whole = record_episode(align_vector(1), RandomPolicy(spec, seed=1), max_rows=100, seed=1)
    L = len(whole["obs"])
    assert 4 <= L <= 9 and (whole["terminated"][-1] or whole["truncated"][-1]) and whole["action"][-1] == 0
    np.testing.assert_array_equal(whole["obs"][1:, 0, 0, 0], whole["action"][:-1] + 1)
    cut = record_episode(align_vector(1), RandomPolicy(spec, seed=1), max_rows=3, seed=1)
    assert len(cut["obs"]) == 3 and cut["action"][-1] == 0 and not cut["terminated"].any()
    np.testing.assert_array_equal(cut["obs"], whole["obs"][:3])


def collect_with(root, episodes: int, num_envs: int, **kwargs) -> EpisodeStore:
    store = EpisodeStore.open(root) if (root / "index.json").exists() else new_store(root)
    vec_env = align_vector(num_envs)
    try:
        collect_episodes(vec_env, store, episodes=episodes, seed=2, progress=False, **kwargs)
    finally:
        vec_env.close()
    return EpisodeStore.open(root)


def assert_same_store(a: EpisodeStore, b: EpisodeStore) -> None:
    assert a.names == b.names and len(a) > 0
    for name in a.names:
        x, y = a.load(name), b.load(name)
        for key in ("obs", "action", "reward", "terminated", "truncated"):
            np.testing.assert_array_equal(getattr(x, key), getattr(y, key), err_msg=f"{name} {key}")


@pytest.mark.parametrize("seed_every", [1, 2])
@pytest.mark.parametrize("policy", ["random", "sticky", "hold"])
def test_an_episode_does_not_depend_on_its_env_slot_or_the_number_of_envs(tmp_path, policy, seed_every):
    # Episode j is a function of (seed, j) only: 2 and 3 envs run different episodes side by side, in other slots.
    two = collect_with(tmp_path / "two", 6, 2, policy=policy, seed_every=seed_every)
    three = collect_with(tmp_path / "three", 6, 3, policy=policy, seed_every=seed_every)
    assert_same_store(two, three)


def test_a_collection_in_blocks_resumes_to_the_straight_store(tmp_path):
    straight = collect_with(tmp_path / "straight", 10, 2, policy="sticky", seed_every=3)
    collect_with(tmp_path / "stopped", 4, 2, policy="sticky", seed_every=3)  # stopped inside block 1
    resumed = collect_with(tmp_path / "stopped", 10, 2, policy="sticky", seed_every=3)
    assert len(resumed) == 10
    assert_same_store(straight, resumed)
    with pytest.raises(ValueError, match="seed_every must be a positive integer, got 0"):
        collect_with(tmp_path / "other", 2, 2, seed_every=0)


def test_a_write_error_on_the_writer_thread_surfaces_in_one_line(tmp_path, cli, capsys, monkeypatch):
    from worldmodels.config import WriteError

    real_add = EpisodeStore.add_episode

    def add_then_fail(self, *args, **kwargs):
        if len(self) == 2:
            raise WriteError(f"cannot write episode to {self.root}: no space left on device")
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(EpisodeStore, "add_episode", add_then_fail)
    code = scripts.cli.main(["collect", "--episodes", "6", "--num-envs", "2", "--out", str(tmp_path / "s"),
                             "--env", ENV_ID])
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("collect episode")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("wm collect: error: cannot write episode"), lines
    assert lines[0].endswith("no space left on device")
    assert len(EpisodeStore.open(tmp_path / "s")) == 2  # what was written before the error stays, in order


def test_reset_envs_records_the_last_row_and_starts_a_seeded_episode():
    from worldmodels.driver import Driver
    from worldmodels.policies import RandomPolicy

    hook = _Rows()
    vec_env = align_vector(2)
    driver = Driver(vec_env, RandomPolicy(ActionSpec("discrete", 5), seed=0), hooks=[hook])
    driver.reset(seed=[4, 5])
    while not driver.done[0]:
        driver.step()
    done = driver.done.copy()
    driver.reset_envs(done, [7] * int(done.sum()))
    fresh = AlignEnv()
    first, _ = fresh.reset(seed=7)
    assert [e for e, _, complete in hook.episodes if complete] == list(np.flatnonzero(done))
    assert hook.rows[0][-1]["action"] == 0 and (hook.rows[0][-1]["terminated"] or hook.rows[0][-1]["truncated"])
    np.testing.assert_array_equal(driver.current["obs"][0], first)
    assert driver.current["is_first"][0] and not driver.done[0]
    driver.step()  # no second (auto)reset: the env takes its first step of the seeded episode
    step_index = driver.current["obs"][0, 0, 0, 1]
    assert step_index == 1
    vec_env.close()


def test_ale_masked_seeded_reset_is_slot_free_and_not_followed_by_an_autoreset():
    pytest.importorskip("ale_py")
    from worldmodels.driver import Driver
    from worldmodels.envs import make_vector
    from worldmodels.policies import RandomPolicy

    def episode_start(num_envs, slot, steps=40):
        vec_env = make_vector("ALE/Pong-v5", num_envs, image_size=16)
        driver = Driver(vec_env, RandomPolicy(ActionSpec("discrete", 6), seed=0))
        driver.reset(seed=list(range(100, 100 + num_envs)))
        for _ in range(3):  # the other slots are somewhere else in their own episodes
            driver.step()
        mask = np.arange(num_envs) == slot
        driver.reset_envs(mask, [11])
        policy = RandomPolicy(ActionSpec("discrete", 6), seed=0)
        policy.reseed_rows(range(num_envs), [3] * num_envs)
        driver.policy = policy
        frames = [driver.current["obs"][slot].copy()]  # the driver's rows are views of its reused ring
        for _ in range(steps):
            driver.step()
            frames.append(driver.current["obs"][slot].copy())
        vec_env.close()
        return np.stack(frames)

    a, b = episode_start(1, 0), episode_start(3, 2)
    # Pong's frames change within 40 steps, so equal stacks mean the same episode, seeded by the reset alone
    # (ALE v5's sticky actions included); a second reset after the masked one would restart the frames.
    assert not np.array_equal(a[0], a[-1])
    np.testing.assert_array_equal(a, b)


def test_per_row_random_streams_are_independent_of_the_other_rows():
    from worldmodels.policies import make_random_policy

    spec = ActionSpec("discrete", 6)
    for name in ("random", "sticky", "hold"):
        alone, shared = make_random_policy(name, spec, 0), make_random_policy(name, spec, 1)
        alone.reseed_rows([0], [42])
        shared.reseed_rows([0, 1, 2], [5, 42, 6])
        obs, state_a, state_s, got_a, got_s = torch.zeros(3, 1), None, None, [], []
        for t in range(50):
            action_a, state_a = alone.act(obs[:1], torch.tensor([t == 0]), state_a)
            action_s, state_s = shared.act(obs, torch.tensor([t == 0, t == 0, t == 7]), state_s)
            got_a.append(spec.to_env(action_a)[0]), got_s.append(spec.to_env(action_s)[1])
        assert got_a == got_s, name
    with pytest.raises(ValueError, match=r"seeded for rows \[0\], but the batch has 2 rows"):
        alone.act(torch.zeros(2, 1), torch.zeros(2, dtype=torch.bool), None)
