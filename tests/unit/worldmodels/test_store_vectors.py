"""EpisodeStore with float32 vector observations ``(L, D)`` next to uint8 frames: spec, writes, validation on read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from worldmodels.data.chunks import ChunkDataset
from worldmodels.data.store import EpisodeStore, StoreSpec, read_spec
from worldmodels.envs.spaces import ActionSpec

D = 5
SPEC = ActionSpec("discrete", 2)


def vector_episode(length: int, seed: int, dtype=np.float64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    action = rng.integers(0, SPEC.dim, size=length)
    action[-1] = 0
    reward = np.ones(length, np.float32)
    reward[0] = 0.0
    terminated = np.zeros(length, bool)
    terminated[-1] = True
    return {"obs": rng.normal(size=(length, D)).astype(dtype), "action": action, "reward": reward,
            "terminated": terminated, "truncated": np.zeros(length, bool)}


def vector_store(root) -> EpisodeStore:
    return EpisodeStore.create(root, env_id="CartPole-v1", obs_shape=(D,), action_spec=SPEC)


def test_vector_round_trip_records_the_dtype_and_stores_float32(tmp_path):
    store = vector_store(tmp_path / "s")
    written = vector_episode(7, 0)  # float64, as MuJoCo envs observe: stored as float32
    name = store.add_episode(**written)
    on_disk = json.loads((tmp_path / "s" / "store.json").read_text())
    assert on_disk["obs_shape"] == [D] and on_disk["obs_dtype"] == "float32"
    reopened = EpisodeStore.open(tmp_path / "s")
    assert reopened.spec == StoreSpec("CartPole-v1", (D,), SPEC, "float32") and reopened.spec.vector_obs
    episode = reopened.load(name)
    assert episode.obs.dtype == np.float32 and episode.obs.shape == (7, D)
    np.testing.assert_allclose(episode.obs, written["obs"].astype(np.float32))
    # The windowing over stores is the same for both kinds: (T, D) float32 windows.
    window = ChunkDataset(tmp_path / "s", [name], seq_len=4)[0]
    assert window["obs"].shape == (4, D) and window["obs"].dtype.is_floating_point


def test_frame_stores_record_uint8_and_old_stores_without_the_field_still_open(tmp_path):
    frames = EpisodeStore.create(tmp_path / "f", env_id="Toy-v0", obs_shape=(8, 8, 3), action_spec=SPEC)
    assert frames.spec.obs_dtype == "uint8" and not frames.spec.vector_obs
    values = json.loads((tmp_path / "f" / "store.json").read_text())
    del values["obs_dtype"]  # a store written before vector observations existed
    (tmp_path / "f" / "store.json").write_text(json.dumps(values))
    assert read_spec(tmp_path / "f").obs_dtype == "uint8"


def test_bad_vectors_are_refused_on_write(tmp_path):
    store = vector_store(tmp_path / "s")
    episode = vector_episode(4, 0)
    with pytest.raises(ValueError, match="obs must be float32 vectors"):
        store.add_episode(**{**episode, "obs": np.zeros((4, D + 1))})
    with pytest.raises(ValueError, match="obs must be float32 vectors"):
        store.add_episode(**{**episode, "obs": np.zeros((4, D), np.int64)})
    nan = episode["obs"].copy()
    nan[2, 1] = np.nan
    with pytest.raises(ValueError, match="obs row 2 .* must be finite"):
        store.add_episode(**{**episode, "obs": nan})
    assert len(store) == 0


@pytest.mark.parametrize("damage, expected", [
    (lambda obs: np.where(np.arange(len(obs))[:, None] == 3, np.inf, obs).astype(np.float32), "obs.npy row 3"),
    (lambda obs: obs.astype(np.float64), "obs.npy is float64"),
    (lambda obs: (obs * 0).astype(np.uint8), "obs.npy is uint8"),
])
def test_a_damaged_vector_episode_is_skipped_with_a_warning_naming_it(tmp_path, damage, expected):
    store = vector_store(tmp_path / "s")
    good = store.add_episode(**vector_episode(6, 0))
    bad = store.add_episode(**vector_episode(6, 1))
    path = tmp_path / "s" / "episodes" / bad / "obs.npy"
    np.save(path, damage(np.load(path)))
    with pytest.warns(RuntimeWarning, match=f"skipping corrupt episode .*{bad}.*{expected}"):
        reopened = EpisodeStore.open(tmp_path / "s")
    assert reopened.names == [good]


def test_spec_checks_kind_against_shape_and_stores_refuse_the_other_kind(tmp_path):
    with pytest.raises(ValueError, match="obs_dtype 'uint8' does not fit obs_shape \\[5\\]"):
        StoreSpec("CartPole-v1", (D,), SPEC, "uint8")
    with pytest.raises(ValueError, match="neither \\[H, W, C\\] frames nor \\[D\\] vectors"):
        StoreSpec("CartPole-v1", (4, 4), SPEC)
    vector_store(tmp_path / "s")
    with pytest.raises(ValueError, match="holds obs shape \\(5,\\) but this run wants \\(16, 16, 3\\)"):
        EpisodeStore.create(tmp_path / "s", env_id="CartPole-v1", obs_shape=(16, 16, 3), action_spec=SPEC)
    values = json.loads((tmp_path / "s" / "store.json").read_text())
    (tmp_path / "s" / "store.json").write_text(json.dumps({**values, "obs_dtype": "uint8"}))  # an edited file
    with pytest.raises(ValueError, match="store.json: obs_dtype .uint8. does not fit .* restore the file"):
        EpisodeStore.open(tmp_path / "s")
