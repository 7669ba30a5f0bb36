"""`--env package.module:EnvId` (the module registers the env) in every command, image-observation envs
without render(), and `wm doctor` on a good env and on broken ones (tests/support/doctor_envs.py)."""

from __future__ import annotations

import numpy as np
import pytest

import scripts.cli
from doctor_envs import GoodImageEnv
from worldmodels.data.store import EpisodeStore
from worldmodels.envs import EnvError, make, make_vector
from worldmodels.envs.wrappers import resize_frame

GOOD = "doctor_envs:GoodImage-v0"


def test_module_env_id_with_image_observations_needs_no_render():
    env = make(GOOD, image_size=16, seed=3)
    raw = GoodImageEnv()
    try:
        obs, _ = env.reset()
        expected, _ = raw.reset(seed=3)
        assert obs.shape == (16, 16, 3) and obs.dtype == np.uint8
        # The observation itself, resized (GoodImageEnv has no render(): it would raise NotImplementedError).
        np.testing.assert_array_equal(obs, resize_frame(expected, 16))
    finally:
        env.close()
    vector = make_vector(GOOD, 2, image_size=16, seed=0)
    try:
        assert vector.reset()[0].shape == (2, 16, 16, 3)
    finally:
        vector.close()


def test_unimportable_module_is_one_line():
    with pytest.raises(EnvError, match=r"cannot import module 'no_such_pkg\.envs' .*registers 'X-v0'"):
        make("no_such_pkg.envs:X-v0")


def test_collect_records_the_module_env_id(tmp_path):
    out = tmp_path / "store"
    assert scripts.cli.main(["collect", "--env", GOOD, "--episodes", "2", "--num-envs", "1", "--image-size", "16",
                             "--out", str(out)]) == 0
    store = EpisodeStore.open(out)
    assert len(store) == 2 and store.spec.env_id == GOOD  # a later command imports the module again


def test_doctor_good_env(capsys):
    assert scripts.cli.main(["doctor", "--env", GOOD]) == 0
    lines = capsys.readouterr().out.splitlines()
    checks = [line for line in lines if line.startswith(("OK", "FAIL"))]
    assert len(checks) == 8 and all(line.startswith("OK") for line in checks), lines
    assert any("not needed: the observation already is an (H, W, 3) uint8 image" in line for line in checks)
    assert lines[-1] == f"  wm dreamer --env {GOOD} --preset tiny --run-dir runs/goodimage-v0-dreamer"


def test_doctor_broken_env(capsys):
    assert scripts.cli.main(["doctor", "--env", "doctor_envs:Broken-v0"]) == 1
    out = capsys.readouterr().out
    assert "FAIL reset: reset() returned array float32 (4,); gymnasium 1.x reset(seed=...) returns (obs, info: dict)" in out
    assert "FAIL step: step() returned a 4-tuple" in out
    assert "FAIL render_mode='rgb_array'" in out
    assert "is not ready: fix the FAIL line(s) above" in out.splitlines()[-1]


def test_doctor_unseeded_env(capsys):
    assert scripts.cli.main(["doctor", "--env", "doctor_envs:Unseeded-v0"]) == 1
    out = capsys.readouterr().out
    assert "FAIL seeding: two reset(seed=123) runs with the same actions differ at step 0" in out
    assert "OK   reset" in out and "OK   step:" in out


def test_doctor_unknown_env(capsys):
    assert scripts.cli.main(["doctor", "--env", "CartPol-v1"]) == 1
    assert "FAIL env id: raised EnvError: unknown env id 'CartPol-v1'; did you mean 'CartPole-v1'" in capsys.readouterr().out
