"""EpisodeStore: round trip, atomic writes, recovery from killed writers and corrupt files."""

from __future__ import annotations

import json
import os
import re
import time
import warnings

import numpy as np
import pytest

from worldmodels.data.store import EpisodeStore, ensure_writable_dir
from worldmodels.envs.spaces import ActionSpec
from worldmodels.locking import exclusive_lock

OBS_SHAPE = (8, 8, 3)
DISCRETE = ActionSpec("discrete", 4)


def make_episode(length: int, seed: int, spec: ActionSpec = DISCRETE) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if spec.discrete:
        action = rng.integers(0, spec.dim, size=length)
    else:
        action = rng.uniform(-1, 1, size=(length, spec.dim)).astype(np.float32)
    action[-1] = 0
    reward = rng.normal(size=length).astype(np.float32)
    reward[0] = 0.0
    terminated = np.zeros(length, dtype=bool)
    terminated[-1] = True
    return {"obs": rng.integers(0, 256, size=(length, *OBS_SHAPE), dtype=np.uint8), "action": action,
            "reward": reward, "terminated": terminated, "truncated": np.zeros(length, dtype=bool)}


def new_store(root, spec: ActionSpec = DISCRETE) -> EpisodeStore:
    return EpisodeStore.create(root, env_id="Toy-v0", obs_shape=OBS_SHAPE, action_spec=spec)


@pytest.mark.parametrize("spec", [DISCRETE, ActionSpec("continuous", 2, (-1.0, -1.0), (1.0, 1.0))])
def test_round_trip_arrays_dtypes_and_index(tmp_path, spec):
    store = new_store(tmp_path / "store", spec)
    written = [make_episode(length, seed, spec) for seed, length in enumerate((5, 1, 9))]
    names = [store.add_episode(**episode, seed=seed) for seed, episode in enumerate(written)]
    assert names == sorted(names) and names[0].startswith("ep-000000-")
    assert len(store) == 3 and store.num_frames == 15

    reopened = EpisodeStore.open(tmp_path / "store")
    assert reopened.spec == store.spec and reopened.names == names
    assert [info.length for info in reopened.episodes] == [5, 1, 9]
    for name, expected in zip(names, written):
        episode = reopened.load(name)
        assert isinstance(episode.obs, np.memmap)
        assert episode.obs.dtype == np.uint8 and episode.obs.shape == (len(episode), *OBS_SHAPE)
        assert episode.action.dtype == spec.store_dtype() and episode.action.shape == spec.store_shape(len(episode))
        assert episode.reward.dtype == np.float32
        assert episode.terminated.dtype == bool and episode.truncated.dtype == bool
        for key, array in expected.items():
            np.testing.assert_array_equal(getattr(episode, key), array.astype(getattr(episode, key).dtype))
        info = reopened.info(name)
        assert info.episode_return == pytest.approx(float(expected["reward"].sum()), rel=1e-5)
    meta = json.loads((tmp_path / "store" / "episodes" / names[0] / "meta.json").read_text())
    assert meta == {"length": 5, "return": pytest.approx(float(written[0]["reward"].sum())), "env_id": "Toy-v0", "seed": 0}
    on_disk = json.loads((tmp_path / "store" / "store.json").read_text())
    assert on_disk["format"] == "worldmodels-episodes/1" and on_disk["obs_shape"] == list(OBS_SHAPE)


def test_add_episode_rejects_bad_shapes(tmp_path):
    store = new_store(tmp_path)
    episode = make_episode(4, 0)
    with pytest.raises(ValueError, match="reward must have shape"):
        store.add_episode(**{**episode, "reward": np.zeros(3)})
    with pytest.raises(ValueError, match="obs must be uint8"):
        store.add_episode(**{**episode, "obs": episode["obs"].astype(np.float32)})
    assert len(store) == 0 and os.listdir(tmp_path / "episodes") == []


def test_truncated_file_is_skipped_with_one_warning_naming_it(tmp_path):
    store = new_store(tmp_path)
    names = [store.add_episode(**make_episode(6, seed)) for seed in range(3)]
    obs_path = tmp_path / "episodes" / names[1] / "obs.npy"
    with open(obs_path, "r+b") as handle:  # a write killed halfway through the frames
        handle.truncate(obs_path.stat().st_size // 2)
    with pytest.warns(RuntimeWarning) as record:
        reopened = EpisodeStore.open(tmp_path)
    assert len(record) == 1 and names[1] in str(record[0].message)
    assert reopened.names == [names[0], names[2]]
    np.testing.assert_array_equal(reopened.load(names[2]).obs, make_episode(6, 2)["obs"])
    # The next write never reuses the corrupt episode's index.
    assert reopened.add_episode(**make_episode(2, 9)).startswith("ep-000003-")


def test_disagreeing_lengths_are_skipped(tmp_path):
    store = new_store(tmp_path)
    names = [store.add_episode(**make_episode(6, seed)) for seed in range(2)]
    np.save(tmp_path / "episodes" / names[0] / "reward.npy", np.zeros(5, np.float32))
    with pytest.warns(RuntimeWarning, match=names[0]):
        assert EpisodeStore.open(tmp_path).names == [names[1]]


def test_leftover_tmp_dir_is_ignored_and_cleaned_when_stale(tmp_path):
    store = new_store(tmp_path)
    name = store.add_episode(**make_episode(4, 0))
    tmp = tmp_path / "episodes" / ".tmp-ep-000001-deadbeef"
    tmp.mkdir()
    (tmp / "obs.npy").write_bytes(b"\x93NUMPY half a file")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a killed writer's leftovers are not corruption
        assert EpisodeStore.open(tmp_path).names == [name]
        assert new_store(tmp_path).names == [name]
        assert tmp.exists()  # young: it may belong to a live writer in another process
    old = time.time() - 3600
    os.utime(tmp, (old, old))
    assert new_store(tmp_path).names == [name]
    assert not tmp.exists()


def test_a_writer_holding_the_lock_cleans_even_young_tmp_dirs(tmp_path):
    """Under the store's lock no other process writes there: any .tmp-* directory is a killed writer's."""
    new_store(tmp_path)
    tmp = tmp_path / "episodes" / ".tmp-ep-000000-deadbeef"
    tmp.mkdir()
    with exclusive_lock(tmp_path, what="episode store"):
        assert new_store(tmp_path).names == []
    assert not tmp.exists()


def test_missing_or_stale_index_is_rebuilt(tmp_path):
    store = new_store(tmp_path)
    names = [store.add_episode(**make_episode(3 + seed, seed), seed=seed) for seed in range(3)]
    (tmp_path / "index.json").unlink()
    reopened = EpisodeStore.open(tmp_path)
    assert reopened.names == names and [i.seed for i in reopened.episodes] == [0, 1, 2]
    assert json.loads((tmp_path / "index.json").read_text())["episodes"][2]["name"] == names[2]
    # Stale: an index listing an episode that is gone and missing one that exists.
    index = json.loads((tmp_path / "index.json").read_text())
    index["episodes"] = index["episodes"][:1] + [{"name": "ep-000009-00000000", "length": 3, "return": 0.0}]
    (tmp_path / "index.json").write_text(json.dumps(index))
    assert EpisodeStore.open(tmp_path).names == names
    (tmp_path / "index.json").write_text("{not json")
    assert EpisodeStore.open(tmp_path).num_frames == 3 + 4 + 5


def test_spec_mismatch_is_a_one_line_error(tmp_path):
    new_store(tmp_path)
    with pytest.raises(ValueError, match="env id") as error:
        EpisodeStore.create(tmp_path, env_id="Other-v0", obs_shape=OBS_SHAPE, action_spec=DISCRETE)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="obs shape"):
        EpisodeStore.create(tmp_path, env_id="Toy-v0", obs_shape=(16, 16, 3), action_spec=DISCRETE)


def test_open_missing_store_is_a_one_line_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no episode store"):
        EpisodeStore.open(tmp_path / "nowhere")


def unwritable_path(tmp_path):
    """A directory path that cannot be written, even as root: it lies under a regular file."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    return blocker / "sub"


def test_unwritable_dir_is_refused_before_anything_happens(tmp_path):
    path = unwritable_path(tmp_path)
    with pytest.raises(PermissionError, match="cannot write to store directory") as error:
        EpisodeStore.create(path, env_id="Toy-v0", obs_shape=OBS_SHAPE, action_spec=DISCRETE)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    if os.geteuid() != 0:  # root ignores permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(PermissionError, match="locked"):
            ensure_writable_dir(locked / "store")


def test_set_aside_after_moves_later_episodes_without_deleting(tmp_path):
    store = new_store(tmp_path / "store")
    names = [store.add_episode(**make_episode(5 + i, seed=i)) for i in range(4)]
    with pytest.warns(RuntimeWarning, match="set aside 2 episode"):
        moved = store.set_aside_after(2)
    assert moved == names[2:]
    reopened = EpisodeStore.open(tmp_path / "store")
    assert reopened.names == names[:2]
    assert sorted(p.name for p in (tmp_path / "store" / "set_aside").iterdir()) == names[2:]
    assert store.set_aside_after(5) == []


# ---- issue 15 item 7: every stored array is checked on open (dtype, shape, length, range, finiteness); a bad
# episode is skipped with one warning naming it, the good ones stay.

BOX = ActionSpec("continuous", 2, (-1.0, -1.0), (1.0, 1.0))


def _rewrite(path, array: np.ndarray) -> None:
    np.save(path, array, allow_pickle=False)


def _f4_header_as_i4(path) -> None:
    """The reported damage: reward.npy's header says <i4 where the data are float32 (same byte count)."""
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"'descr': '<f4'", b"'descr': '<i4'", 1))


DAMAGES = {
    "reward header f4 -> i4": ("reward", lambda p, ep: _f4_header_as_i4(p), "reward.npy is int32"),
    "NaN reward": ("reward", lambda p, ep: _rewrite(p, np.where(np.arange(len(ep["reward"])) == 2, np.nan,
                                                                 ep["reward"]).astype(np.float32)), "row 2 holds nan"),
    "action out of range": ("action", lambda p, ep: _rewrite(p, np.full_like(ep["action"], 7)), "[0, 4)"),
    "negative action": ("action", lambda p, ep: _rewrite(p, np.full_like(ep["action"], -1)), "[0, 4)"),
    "action dtype": ("action", lambda p, ep: _rewrite(p, ep["action"].astype(np.float64)), "action.npy is float64"),
    "terminated dtype": ("terminated", lambda p, ep: _rewrite(p, ep["terminated"].astype(np.uint8)), "terminated.npy is uint8"),
    "obs shape": ("obs", lambda p, ep: _rewrite(p, ep["obs"][:, :4]), "obs.npy is uint8"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_bad_episode_is_skipped_with_a_warning_naming_it(tmp_path, damage):
    key, corrupt, expected = DAMAGES[damage]
    store = new_store(tmp_path)
    episodes = [make_episode(6, seed) for seed in range(3)]
    names = [store.add_episode(**ep) for ep in episodes]
    corrupt(tmp_path / "episodes" / names[1] / f"{key}.npy", episodes[1])
    with pytest.warns(RuntimeWarning) as record:
        reopened = EpisodeStore.open(tmp_path)
    messages = [str(w.message) for w in record if names[1] in str(w.message)]
    assert len(messages) == 1 and expected in messages[0] and "\n" not in messages[0], messages
    assert reopened.names == [names[0], names[2]]


def test_box_actions_outside_the_bounds_are_refused(tmp_path):
    store = new_store(tmp_path, BOX)
    episode = make_episode(5, 0, BOX)
    name = store.add_episode(**episode)
    _rewrite(tmp_path / "episodes" / name / "action.npy", np.full_like(episode["action"], 3.0))
    with pytest.warns(RuntimeWarning, match=f"{name}.*action.npy row 0 holds"):
        assert len(EpisodeStore.open(tmp_path)) == 0


def test_valid_store_opens_without_warnings(tmp_path, recwarn):
    store = new_store(tmp_path, BOX)
    store.add_episode(**make_episode(5, 0, BOX))
    assert len(EpisodeStore.open(tmp_path)) == 1 and not recwarn.list


@pytest.mark.parametrize("field, row, value, words", [
    ("reward", 2, np.nan, "reward row 2 holds nan"),
    ("reward", 1, 1e300, "reward row 1 holds inf"),  # float64 1e300 is float32 inf
    ("action", 3, 4, "action row 3 holds 4; discrete actions must lie in [0, 4)"),
    ("action", 0, -1, "action row 0 holds -1"),
])
def test_add_episode_refuses_what_no_reader_would_load(tmp_path, field, row, value, words):
    """Such an episode used to be written, counted ("collected 2 episodes"), then skipped on every open."""
    store = new_store(tmp_path)
    episode = make_episode(5, seed=0)
    episode[field] = episode[field].astype(np.float64 if field == "reward" else np.int64)
    episode[field][row] = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's "overflow encountered in cast" for 1e300
        with pytest.raises(ValueError, match=re.escape(words)):
            store.add_episode(**episode)
    assert len(store) == 0 and os.listdir(tmp_path / "episodes") == []
    assert len(EpisodeStore.open(tmp_path)) == 0
