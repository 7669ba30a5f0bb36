"""`wm import` never deletes what it did not create, never hangs on a special file, reports only what reads
back, and answers every bad input with `wm import: error: ...` (exit 2, no traceback)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import scripts.cli
import worldmodels.data.importers as importers
from worldmodels.data.store import EpisodeStore

ROOT = Path(__file__).resolve().parents[2]


def transitions(steps: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """One valid episode in the transition layout: obs (T+1, 6, 6, 3) uint8, 3 discrete actions."""
    rng = np.random.default_rng(seed)
    return {"obs": rng.integers(0, 256, (steps + 1, 6, 6, 3), dtype=np.uint8), "action": rng.integers(0, 3, steps),
            "reward": np.arange(1, steps + 1, dtype=np.float32), "terminated": np.eye(steps, dtype=bool)[-1],
            "truncated": np.zeros(steps, bool)}


def source_dir(path: Path, count: int = 2, *, meta: dict | None = None) -> Path:
    path.mkdir()
    (path / "dataset.json").write_text(json.dumps(meta or {"action_spec": {"kind": "discrete", "dim": 3}}))
    for seed in range(count):
        np.savez(path / f"ep-{seed}.npz", **transitions(seed=seed))
    return path


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every path under ``root`` with its bytes (files) or link target (symlinks, not followed)."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[key] = path.read_bytes()
        else:
            found[key] = "dir"
    return found


def run_import(capsys, *args: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = scripts.cli.main(["import", *args])
    return code, capsys.readouterr().err.splitlines()


def assert_one_line_error(code: int, err: list[str], *words: str) -> None:
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("wm import: error: "), err
    for word in words:
        assert word in err[0], err


def dreamer_like_run_dir(path: Path) -> Path:
    """What a finished `wm dreamer --run-dir R` holds: replay episodes + index, but no store.json at R."""
    episode = path / "episodes" / "ep-000000-0123abcd"
    episode.mkdir(parents=True)
    for name in ("obs", "action", "reward", "terminated", "truncated"):
        np.save(episode / f"{name}.npy", np.zeros(3, np.float32))
    (episode / "meta.json").write_text('{"length": 3}')
    (path / "index.json").write_text('{"episodes": []}')
    (path / "config.json").write_text('{"preset": "debug"}')
    (path / "checkpoints").mkdir()
    (path / "checkpoints" / "last.ckpt").write_bytes(b"\x00weights")
    return path


def test_import_into_a_run_dir_is_refused_and_touches_nothing(tmp_path, capsys):
    run_dir = dreamer_like_run_dir(tmp_path / "run")
    before = snapshot(run_dir)
    code, err = run_import(capsys, "--source", str(source_dir(tmp_path / "src")), "--out", str(run_dir))
    assert_one_line_error(code, err, "not empty", str(run_dir))
    assert snapshot(run_dir) == before


def test_a_staging_dir_without_the_import_marker_is_not_the_import_s(tmp_path, capsys):
    out = tmp_path / "store"
    (out / ".tmp-import" / "episodes").mkdir(parents=True)  # looks like staging, but no import wrote it
    (out / ".tmp-import" / "episodes" / "precious.npy").write_bytes(b"data")
    before = snapshot(out)
    code, err = run_import(capsys, "--source", str(source_dir(tmp_path / "src")), "--out", str(out))
    assert_one_line_error(code, err, ".tmp-import")
    assert snapshot(out) == before


class Killed(BaseException):
    """Stands in for SIGKILL: no ``except Exception`` cleanup runs."""


@pytest.mark.parametrize("kill_at", ["writing", "publishing"])
def test_a_killed_import_can_be_rerun(tmp_path, capsys, monkeypatch, kill_at):
    source, out = source_dir(tmp_path / "src", 3), tmp_path / "store"
    if kill_at == "writing":  # killed while writing the staging store (after its first episode)
        real_add = EpisodeStore.add_episode

        def add_then_die(self, *args, **kwargs):
            if len(self) == 1:
                raise Killed()
            return real_add(self, *args, **kwargs)
        monkeypatch.setattr(EpisodeStore, "add_episode", add_then_die)
    else:  # killed between publishing episodes/ and store.json
        real_rename, renames = os.rename, []

        def rename_then_die(src, dst):
            if Path(dst).parent == out:  # a publishing rename (add_episode renames inside the staging store)
                renames.append(dst)
                if len(renames) == 2:
                    raise Killed()
            return real_rename(src, dst)
        monkeypatch.setattr(importers.os, "rename", rename_then_die)
    with pytest.raises(Killed):
        scripts.cli.main(["import", "--source", str(source), "--out", str(out)])
    assert not (out / "store.json").exists() and (out / ".tmp-import").is_dir()
    assert (out / "episodes").is_dir() == (kill_at == "publishing")
    monkeypatch.undo()
    assert scripts.cli.main(["import", "--source", str(source), "--out", str(out)]) == 0
    store = EpisodeStore.open(out)
    assert len(store) == 3 and not (out / ".tmp-import").exists()


def test_reported_episodes_must_read_back(tmp_path, capsys, monkeypatch):
    import worldmodels.data.store as store_module
    from worldmodels.data.episode_files import CorruptEpisodeError

    def unreadable(*args, **kwargs):
        raise CorruptEpisodeError("simulated: a written episode that does not read back")

    monkeypatch.setattr(store_module, "check_values", unreadable)  # opening the store skips every episode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        code, err = run_import(capsys, "--source", str(source_dir(tmp_path / "src")), "--out", str(tmp_path / "s"))
    assert_one_line_error(code, err, "2 episode", "0")


def import_in_subprocess(source: Path, out: Path) -> subprocess.CompletedProcess:
    """`wm import` in a child process with a timeout: a regression that blocks on a FIFO fails instead of hanging."""
    command = [sys.executable, "-m", "scripts.cli", "import", "--source", str(source), "--out", str(out)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("fifo", ["ep-9.npz", "dataset.json"])
def test_a_fifo_is_refused_without_hanging(tmp_path, fifo):
    source = source_dir(tmp_path / "src", 1)
    (source / fifo).unlink(missing_ok=True)
    os.mkfifo(source / fifo)  # np.load / read_text would block opening it until a writer appears
    done = import_in_subprocess(source, tmp_path / "s")
    err = done.stderr.splitlines()
    assert done.returncode == 2 and len(err) == 1 and fifo in err[0] and "FIFO" in err[0], done.stderr
    assert err[0].startswith("wm import: error: ") and not (tmp_path / "s").exists()


def test_a_directory_named_npz_is_refused(tmp_path, capsys):
    source = source_dir(tmp_path / "src", 1)
    (source / "ep-5.npz").mkdir()
    code, err = run_import(capsys, "--source", str(source), "--out", str(tmp_path / "s"))
    assert_one_line_error(code, err, "ep-5.npz", "directory, not a regular file")
    assert not (tmp_path / "s").exists()


def npy_bytes(array: np.ndarray, shape: tuple[int, ...] | None = None) -> bytes:
    """``array`` as .npy bytes; with ``shape``, a header that declares that shape over ``array``'s bytes."""
    buffer = io.BytesIO()
    if shape is None:
        np.save(buffer, array)
    else:
        np.lib.format.write_array_header_1_0(buffer, {"descr": np.lib.format.dtype_to_descr(array.dtype),
                                                       "fortran_order": False, "shape": shape})
        buffer.write(array.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("damage", ["truncated", "3-TiB-header", "short-header"])
def test_a_damaged_npz_is_one_line(tmp_path, capsys, damage):
    source = source_dir(tmp_path / "src", 1)
    path = source / "ep-bad.npz"
    if damage == "truncated":
        np.savez(path, **transitions(seed=5))
        path.write_bytes(path.read_bytes()[:300])
    else:
        arrays = transitions(seed=5)
        claim = (3 * 2**40 // 4,) if damage == "3-TiB-header" else (40,)
        with zipfile.ZipFile(path, "w") as archive:
            for key, value in arrays.items():
                data = npy_bytes(value.astype(np.float32), claim) if key == "reward" else npy_bytes(value)
                archive.writestr(f"{key}.npy", data)
    code, err = run_import(capsys, "--source", str(source), "--out", str(tmp_path / "s"))
    assert_one_line_error(code, err, "ep-bad.npz", "nothing imported")
    if damage == "3-TiB-header":
        assert "reward" in err[0] and "header" in err[0], err
    assert not (tmp_path / "s").exists()


def test_out_that_is_a_file_or_empty_is_refused(tmp_path, capsys):
    source = source_dir(tmp_path / "src")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, err = run_import(capsys, "--source", str(source), "--out", str(blocker))
    assert_one_line_error(code, err, "not a directory")
    assert blocker.read_text() == "not a directory"
    before = sorted(os.listdir(ROOT))
    code, err = run_import(capsys, "--source", str(source), "--out", "")
    assert_one_line_error(code, err, "--out")
    assert sorted(os.listdir(ROOT)) == before


def test_episodes_symlink_in_out_is_refused_and_not_followed(tmp_path, capsys):
    elsewhere, out = tmp_path / "elsewhere", tmp_path / "store"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    out.mkdir()
    (out / "episodes").symlink_to(elsewhere, target_is_directory=True)
    code, err = run_import(capsys, "--source", str(source_dir(tmp_path / "src")), "--out", str(out))
    assert_one_line_error(code, err, "episodes")
    assert snapshot(elsewhere) == {"keep.txt": b"keep"} and (out / "episodes").is_symlink()


def minari_dataset(tmp_path, monkeypatch) -> Path:
    """A two-episode local Minari dataset (hdf5), built as tests/integration/test_import_cmd.py does."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    import minari
    from minari.data_collector import EpisodeBuffer

    buffers = [EpisodeBuffer(id=i, observations=e["obs"], actions=e["action"], rewards=list(e["reward"]),
                             terminations=list(e["terminated"]), truncations=list(e["truncated"]), infos={})
               for i, e in enumerate(transitions(seed=s) for s in range(2))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            "wmtest/bad/random-v0", buffers, observation_space=gym.spaces.Box(0, 255, (6, 6, 3), np.uint8),
            action_space=gym.spaces.Discrete(3), data_format="hdf5", jpeg_encoding=False)
    return tmp_path / "minari" / "wmtest/bad/random-v0"


@pytest.mark.parametrize("damage", ["empty-metadata", "truncated-hdf5"])
def test_a_damaged_minari_dataset_is_one_line(tmp_path, capsys, monkeypatch, damage):
    data = minari_dataset(tmp_path, monkeypatch) / "data"
    if damage == "empty-metadata":
        (data / "metadata.json").write_text("{}")
    else:
        hdf5 = data / "main_data.hdf5"
        hdf5.write_bytes(hdf5.read_bytes()[:5000])
    code, err = run_import(capsys, "--source", str(data.parent), "--format", "minari", "--out", str(tmp_path / "s"))
    assert_one_line_error(code, err, "Minari dataset")
    assert not (tmp_path / "s").exists()
