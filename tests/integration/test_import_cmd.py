"""`wm import`: a local Minari dataset (built without minari[create]'s jax) and an .npz directory, end to end
through the CLI; a refused import prints one line per problem and writes nothing."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import numpy as np

import scripts.cli
from worldmodels.data.store import EpisodeStore

BACKEND = "hdf5"  # minari[hdf5] is a dependency (pyproject.toml): the Minari import is always tested, never skipped


def transitions(steps: int, seed: int) -> dict[str, np.ndarray]:
    """One episode in the transition layout: T steps, T + 1 frames, reward[t] = t + 1."""
    rng = np.random.default_rng(seed)
    return {"obs": rng.integers(0, 256, (steps + 1, 12, 12, 3), dtype=np.uint8), "action": rng.integers(0, 3, steps),
            "reward": np.arange(1, steps + 1, dtype=np.float32), "terminated": np.eye(steps, dtype=bool)[-1],
            "truncated": np.zeros(steps, bool)}


def test_minari_import(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    import minari
    from minari.data_collector import EpisodeBuffer  # a plain dataclass; only its add_step_data needs jax

    episodes = [transitions(steps, seed) for seed, steps in enumerate((4, 7))]
    buffers = [EpisodeBuffer(id=i, observations=e["obs"], actions=e["action"], rewards=list(e["reward"]),
                             terminations=list(e["terminated"]), truncations=list(e["truncated"]), infos={})
               for i, e in enumerate(episodes)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # minari's reminders to set author, code_permalink, ...
        minari.create_dataset_from_buffers(
            "wmtest/catch/random-v0", buffers, observation_space=gym.spaces.Box(0, 255, (12, 12, 3), np.uint8),
            action_space=gym.spaces.Discrete(3), data_format=BACKEND, jpeg_encoding=False)

    out = tmp_path / "store"
    assert scripts.cli.main(["import", "--source", "wmtest/catch/random-v0", "--format", "minari", "--out", str(out),
                             "--image-size", "16"]) == 0
    store = EpisodeStore.open(out)
    assert len(store) == 2 and store.spec.obs_shape == (16, 16, 3)
    assert store.spec.env_id == "minari:wmtest/catch/random-v0"  # no env spec recorded: the dataset names it
    stored = store.load(1)
    assert len(stored) == 8  # 7 steps -> 8 rows
    np.testing.assert_array_equal(stored.reward, [0, 1, 2, 3, 4, 5, 6, 7])  # reward of step t arrives on row t+1
    assert stored.terminated[-1] and not stored.terminated[:-1].any()
    np.testing.assert_array_equal(stored.action, [*episodes[1]["action"], 0])

    # The same dataset by path (minari.MinariDataset), without resizing.
    assert scripts.cli.main(["import", "--source", str(tmp_path / "minari" / "wmtest/catch/random-v0"), "--format",
                             "minari", "--out", str(tmp_path / "by-path")]) == 0
    assert EpisodeStore.open(tmp_path / "by-path").spec.obs_shape == (12, 12, 3)


def test_directory_import_and_refusal(tmp_path, capsys):
    source = tmp_path / "recorded"
    source.mkdir()
    (source / "dataset.json").write_text(json.dumps({"action_spec": {"kind": "discrete", "dim": 3}}))
    for seed in range(3):
        np.savez(source / f"ep-{seed}.npz", **transitions(5, seed))
    out = tmp_path / "store"
    assert scripts.cli.main(["import", "--source", str(source), "--out", str(out)]) == 0
    store = EpisodeStore.open(out)
    assert len(store) == 3 and store.num_frames == 18 and store.spec.env_id == "import:recorded"
    assert [info.episode_return for info in store.episodes] == [15.0] * 3  # 1 + ... + 5, nothing dropped

    bad = transitions(5, 9)
    bad["obs"] = bad["obs"][:-1]  # the classic off-by-one: final observation missing
    bad["truncated"] = bad["truncated"].astype(np.float32)
    np.savez(source / "ep-9.npz", **bad)
    capsys.readouterr()
    assert scripts.cli.main(["import", "--source", str(source), "--out", str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("wm import: episode ep-9.npz: obs: 5 observations for 5 rewards")
    assert err[1].startswith("wm import: episode ep-9.npz: truncated: float32 (5,), expected bool")
    assert err[-1].startswith("wm import: error: refused: 2 problem(s) in 1 of 4 episode(s), nothing imported")
    assert not (tmp_path / "again").exists()  # refused before writing: not even the directory is left
