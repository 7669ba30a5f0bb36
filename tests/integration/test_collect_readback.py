"""`wm collect` reports only what the store reads back: an env whose rewards the store cannot hold (NaN, or past
float32) is refused in one line naming the env and the episode, never "collected 2 episodes" over a store that
reads 0; and an empty --out never means the working directory."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import scripts.cli
import worldmodels.envs
from worldmodels.data.store import EpisodeStore

ENV_ID = "BadReward-v0"


class BadRewardEnv(gym.Env):
    """Three-step episodes of 16x16 frames; the reward of step 2 is ``BAD`` (class attribute, set per test)."""

    observation_space = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)
    BAD = float("nan")

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros((16, 16, 3), np.uint8), {}

    def step(self, action):
        self.t += 1
        reward = self.BAD if self.t == 2 else 1.0
        return np.zeros((16, 16, 3), np.uint8), reward, self.t == 3, False, {}


@pytest.fixture
def cli(monkeypatch):
    """``wm`` with only collect registered and every env a BadRewardEnv; yields the env ids made."""
    calls: list[str] = []

    def make_vector(env_id, num_envs, *, image_size=64, seed=None, **options):
        calls.append(env_id)
        return gym.vector.SyncVectorEnv([BadRewardEnv for _ in range(num_envs)])

    monkeypatch.setattr(scripts.cli, "COMMANDS", {"collect": scripts.cli.COMMANDS["collect"]})
    monkeypatch.setattr(worldmodels.envs, "make_vector", make_vector, raising=False)
    return calls


def collect(capsys, out: str, episodes: int = 2) -> tuple[int, str, list[str]]:
    capsys.readouterr()
    code = scripts.cli.main(["collect", "--episodes", str(episodes), "--num-envs", "1", "--image-size", "16",
                             "--out", out, "--env", ENV_ID])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if not line.startswith("collect episode")]


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # 1e300 -> float32 in the driver
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e300])
def test_an_env_with_rewards_the_store_cannot_hold_is_refused(tmp_path, cli, capsys, monkeypatch, bad):
    monkeypatch.setattr(BadRewardEnv, "BAD", bad)
    code, out, err = collect(capsys, str(tmp_path / "s"))
    assert code == 2 and "collected" not in out, (out, err)
    assert len(err) == 1 and err[0].startswith("wm collect: error: "), err
    assert ENV_ID in err[0] and "episode 0" in err[0] and "reward" in err[0], err
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # nothing half-written that a reader would skip
        assert len(EpisodeStore.open(tmp_path / "s")) == 0


def test_collected_episodes_must_read_back(tmp_path, cli, capsys, monkeypatch):
    import worldmodels.data.store as store_module
    from worldmodels.data.episode_files import CorruptEpisodeError

    monkeypatch.setattr(BadRewardEnv, "BAD", 2.0)  # a fine env; the read-back is made to fail

    def unreadable(*args, **kwargs):
        raise CorruptEpisodeError("simulated: a written episode that does not read back")

    real_init = EpisodeStore.__init__

    def init_then_break(self, *args, **kwargs):  # writes go through; the re-open after collecting skips all
        real_init(self, *args, **kwargs)
        monkeypatch.setattr(store_module, "check_values", unreadable)

    monkeypatch.setattr(EpisodeStore, "__init__", init_then_break)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        code, out, err = collect(capsys, str(tmp_path / "s"))
    assert code == 2 and len(err) == 1 and err[0].startswith("wm collect: error: "), (out, err)
    assert "2 episode" in err[0] and "0 read back" in err[0], err


def test_an_empty_out_is_refused_before_making_envs(tmp_path, cli, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = collect(capsys, "")
    assert code == 2 and cli == [] and os.listdir(tmp_path) == [], err
    assert len(err) == 1 and err[0].startswith("wm collect: error: --out"), err


def test_a_fine_env_still_collects(tmp_path, cli, capsys, monkeypatch):
    monkeypatch.setattr(BadRewardEnv, "BAD", -1.0)
    code, out, err = collect(capsys, str(tmp_path / "s"))
    assert code == 0 and "collected 2 episodes" in out and len(EpisodeStore.open(Path(tmp_path / "s"))) == 2
