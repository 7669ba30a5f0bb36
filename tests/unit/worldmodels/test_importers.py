"""The import validator: each kind of bad episode is named (episode, field, fix) and refuses the whole import;
a good one becomes store rows with the DESIGN.md reward alignment."""

from __future__ import annotations

import json

import numpy as np
import pytest

from worldmodels.data.importers import import_episodes, npz_source
from worldmodels.data.store import EpisodeStore
from worldmodels.data.validate import ImportRefused, check_episode, to_rows
from worldmodels.envs.spaces import ActionSpec

DISCRETE = ActionSpec("discrete", 3)
CONTINUOUS = ActionSpec("continuous", 2, (-1.0, -1.0), (1.0, 1.0))


def episode(steps: int = 5, *, continuous: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """A valid transition-layout episode: obs (T+1, 8, 8, 3), reward[t] = 10 + t, terminated on the last step."""
    rng = np.random.default_rng(seed)
    action = rng.uniform(-1, 1, (steps, 2)).astype(np.float32) if continuous else rng.integers(0, 3, steps)
    return {"obs": rng.integers(0, 256, (steps + 1, 8, 8, 3), dtype=np.uint8), "action": action,
            "reward": (10.0 + np.arange(steps)).astype(np.float32),
            "terminated": np.eye(steps, dtype=bool)[-1], "truncated": np.zeros(steps, bool)}


def problem_of(arrays, spec=DISCRETE):
    problems = check_episode("ep-a.npz", arrays, spec)
    assert len(problems) == 1, problems  # each case breaks exactly one thing
    text = str(problems[0])
    assert text.startswith("episode ep-a.npz: ") and "; fix: " in text, text  # names the episode, says the fix
    return problems[0]


def test_valid_episodes_pass():
    assert check_episode("ok", episode(), DISCRETE) == []
    assert check_episode("ok", episode(continuous=True), CONTINUOUS) == []


def test_rows_follow_the_design_row_convention():
    arrays = episode(4)
    rows = to_rows(arrays, DISCRETE)
    assert {k: v.shape[0] for k, v in rows.items()} == dict.fromkeys(rows, 5)  # L = T + 1 rows everywhere
    # reward[t] (for action[t] at obs[t]) arrives with obs[t+1]: row t+1; row 0 holds 0.
    np.testing.assert_array_equal(rows["reward"], [0, 10, 11, 12, 13])
    np.testing.assert_array_equal(rows["action"], [*arrays["action"], 0])  # last row: zeros
    np.testing.assert_array_equal(rows["terminated"], [False, False, False, False, True])
    np.testing.assert_array_equal(rows["obs"], arrays["obs"])


@pytest.mark.parametrize("field, change, words", [
    ("obs", lambda a: a["obs"].astype(np.float32) / 255, "dtype float32, expected uint8"),
    ("obs", lambda a: a["obs"][..., 0], "is not (T+1, H, W, 3)"),
    ("obs", lambda a: np.zeros((6, 0, 0, 3), np.uint8), "frames of 0x0 pixels"),  # was imported
    ("action", lambda a: a["action"].astype(np.float32), "expected integer (5,)"),
    ("action", lambda a: np.r_[a["action"][:-1], 3], "action[4] = 3 is outside [0, 3)"),
    ("reward", lambda a: a["reward"][:, None], "expected float (T,)"),
    ("truncated", lambda a: a["truncated"][:-1], "expected bool (5,)"),
])
def test_wrong_dtype_or_shape_is_named(field, change, words):
    arrays = episode()
    arrays[field] = change(arrays)
    problem = problem_of(arrays)
    assert problem.field == field and words in problem.message, problem


def test_continuous_action_outside_bounds_or_nan():
    arrays = episode(continuous=True)
    arrays["action"][2] = (1.5, 0.0)
    assert "outside" in problem_of(arrays, CONTINUOUS).message
    arrays["action"][2] = (np.nan, 0.0)
    assert "NaN or inf" in problem_of(arrays, CONTINUOUS).message


def test_reward_alignment_missing_final_observation():
    arrays = episode()
    arrays["obs"] = arrays["obs"][:-1]  # T observations for T rewards: every reward would shift one step
    problem = problem_of(arrays)
    assert problem.field == "obs" and "5 observations for 5 rewards" in problem.message
    assert "final observation" in problem.fix


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e300, -1e39])
def test_non_finite_reward(value):
    """1e300 (float64) was imported, stored as float32 inf and then skipped on every read."""
    arrays = episode()
    arrays["reward"] = arrays["reward"].astype(np.float64)
    arrays["reward"][3] = value
    problem = problem_of(arrays)
    assert problem.field == "reward" and "reward[3]" in problem.message


def test_missing_terminal_flags():
    arrays = episode()
    arrays["terminated"][:] = False
    problem = problem_of(arrays)
    assert problem.field == "terminated/truncated" and "--mark-truncated" in problem.fix


def test_flag_before_the_last_step():
    arrays = episode()
    arrays["terminated"][1] = True
    problem = problem_of(arrays)
    assert problem.field == "terminated" and "split this one after step 1" in problem.fix


def test_missing_field():
    arrays = episode()
    del arrays["truncated"]
    assert problem_of(arrays).field == "truncated"


def write_dir(path, episodes, spec=DISCRETE):
    path.mkdir()
    (path / "dataset.json").write_text(json.dumps({"action_spec": spec.to_dict(), "env_id": "worldmodels/Catch-v0"}))
    for index, arrays in enumerate(episodes):
        np.savez(path / f"ep-{index:02d}.npz", **arrays)
    return path


def test_one_bad_episode_refuses_the_whole_import(tmp_path):
    bad = episode(seed=2)
    bad["reward"][0] = np.nan
    source = npz_source(write_dir(tmp_path / "src", [episode(seed=1), bad, episode(seed=3)]))
    with pytest.raises(ImportRefused, match=r"1 problem\(s\) in 1 of 3 episode\(s\), nothing imported; first: "
                                            r"episode ep-01.npz: reward"):
        import_episodes(source, tmp_path / "store")
    assert not (tmp_path / "store" / "store.json").exists() and not (tmp_path / "store" / "episodes").exists()


def test_frame_sizes_must_agree_unless_resized(tmp_path):
    small = episode(seed=1)
    small["obs"] = small["obs"][:, :4]  # 4 x 8 frames next to 8 x 8 ones
    source = npz_source(write_dir(tmp_path / "src", [episode(), small]))
    with pytest.raises(ImportRefused, match="--image-size"):
        import_episodes(source, tmp_path / "store")
    stats = import_episodes(source, tmp_path / "store", image_size=16)
    store = EpisodeStore.open(tmp_path / "store")
    assert stats.episodes == len(store) == 2 and store.spec.obs_shape == (16, 16, 3)
    assert store.spec.env_id == "worldmodels/Catch-v0" and store.spec.action_spec == DISCRETE


def test_mark_truncated_imports_unflagged_episodes(tmp_path):
    open_ended = episode()
    open_ended["terminated"][:] = False
    source = npz_source(write_dir(tmp_path / "src", [open_ended]))
    import_episodes(source, tmp_path / "store", mark_truncated=True)
    stored = EpisodeStore.open(tmp_path / "store").load(0)
    assert stored.truncated[-1] and not stored.terminated.any()


def test_unreadable_file_and_bad_dataset_json(tmp_path):
    src = write_dir(tmp_path / "src", [episode()])
    (src / "ep-99.npz").write_bytes(b"not a zip")
    with pytest.raises(ImportRefused, match="ep-99.npz: file: cannot be read"):
        import_episodes(npz_source(src), tmp_path / "store")
    (src / "dataset.json").write_text("{}")
    with pytest.raises(ValueError, match='needs "action_spec"'):
        npz_source(src)
