"""Issue 15 item 4: one writer per run directory / episode store; the refusal names the holder's PID, a lock
left by a killed process is taken over, and concurrent JSON writers never share a temp file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from worldmodels.config import save_json_atomic
from worldmodels.locking import LOCK_NAME, DirectoryLocked, exclusive_lock

HOLD = "import sys, time; from worldmodels.locking import exclusive_lock\n" \
       "with exclusive_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)"


@pytest.fixture
def holder(tmp_path):
    """Another process holding ``tmp_path/run``'s lock."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield process
    process.kill()
    process.wait()


def test_a_held_lock_is_refused_naming_the_holder(tmp_path, holder):
    with pytest.raises(DirectoryLocked) as info:
        with exclusive_lock(tmp_path / "run", what="run directory"):
            pass
    message = str(info.value)
    assert "\n" not in message and f"in use by process {holder.pid}" in message and "run directory" in message


def test_a_killed_holder_leaves_no_held_lock(tmp_path, holder):
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "run" / LOCK_NAME).exists()  # the file stays, the flock died with the process
    with exclusive_lock(tmp_path / "run") as path:
        assert path.read_text().strip() == str(os.getpid())


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with exclusive_lock(tmp_path):
        with exclusive_lock(tmp_path):
            pass
        # still held by us: another process is refused
        probe = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(60)", "pass"), str(tmp_path)],
                               capture_output=True, text=True)
        assert probe.returncode != 0 and "DirectoryLocked" in probe.stderr


def test_concurrent_json_writers_do_not_share_a_temp_file(tmp_path):
    target, errors = tmp_path / "index.json", []

    def write(n: int) -> None:
        try:
            for i in range(200):
                save_json_atomic(target, {"writer": n, "i": i})
        except OSError as error:  # the shared ".index.json.tmp" used to vanish under the other writer
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and json.loads(target.read_text())["i"] == 199
    assert not list(tmp_path.glob(".*.tmp"))
