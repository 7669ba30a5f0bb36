"""Lightning DDP on CPU (gloo), 2 processes: both families' data sharding / seeding and parameter sync.

Each case runs ``tests/support/ddp_run.py`` in a subprocess (Lightning's launcher re-executes it for rank 1) and
reads the ``RUN_DIR/ranks/rank<r>.json`` files a :class:`~trainers.data.distributed.RankReport` wrote:

- both ranks stepped: same ``global_step``, the expected count;
- each rank saw different data: no batch digest shared between the ranks (and, for the store, disjoint
  episode shards that together cover the training split);
- DDP kept the replicas identical: the same parameter checksum on both ranks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 240  # each case takes ~20-50 s on 2 busy cores; the bound only stops a hung rendezvous


def _launch(*args: str) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("LOCAL_RANK", None)
    env.pop("WORLD_SIZE", None)
    run_dir = Path(args[1])
    result = subprocess.run([sys.executable, str(REPO / "tests" / "support" / "ddp_run.py"), *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, f"ddp run failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    reports = [json.loads((run_dir / "ranks" / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["global_rank"] for r in reports] == [0, 1] and all(r["world_size"] == 2 for r in reports)
    return reports


def _check_common(reports: list[dict], expected_steps: int) -> None:
    assert reports[0]["global_step"] == reports[1]["global_step"] == expected_steps
    assert all(len(r["batches"]) > 0 for r in reports)
    shared = set(reports[0]["batches"]) & set(reports[1]["batches"])
    assert not shared, f"ranks consumed {len(shared)} identical batch(es): data is not split between ranks"
    assert reports[0]["param_checksum"] == reports[1]["param_checksum"], (
        f"replicas diverged: {reports[0]['module_checksums']} vs {reports[1]['module_checksums']}")


def test_dreamer_ddp_two_ranks(tmp_path):
    reports = _launch("dreamer", str(tmp_path / "run"))
    _check_common(reports, expected_steps=4 * 3)  # 4 gradient steps x 3 optimisers (see tests/support/ddp_run.py)
    # Per-rank replay: each rank wrote its own episode store, results only from rank zero.
    assert (tmp_path / "run" / "episodes-rank0" / "store.json").exists()
    assert (tmp_path / "run" / "episodes-rank1" / "store.json").exists()
    assert (tmp_path / "run" / "results.json").exists()
    # The checkpoint (written by rank zero) holds every rank's own replay position, so each resumes its stream.
    from worldmodels.checkpoint import load_lightning_checkpoint

    per_rank = load_lightning_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["replay_per_rank"]
    assert len(per_rank) == 2 and per_rank[0]["seed"] != per_rank[1]["seed"]


def test_vae_ddp_shards_the_store(tmp_path):
    from worldmodels.data.store import EpisodeStore
    from worldmodels.envs.spaces import ActionSpec

    store = EpisodeStore.create(tmp_path / "store", env_id="Toy-v0", obs_shape=(16, 16, 3),
                                action_spec=ActionSpec("discrete", 3))
    rng = np.random.default_rng(0)
    names = []
    for _ in range(6):
        length = 12
        terminated = np.zeros(length, bool)
        terminated[-1] = True
        names.append(store.add_episode(rng.integers(0, 256, (length, 16, 16, 3), dtype=np.uint8),
                                       rng.integers(0, 3, length), rng.normal(size=length).astype(np.float32),
                                       terminated, np.zeros(length, bool)))
    reports = _launch("vae", str(tmp_path / "run"), "--store", str(tmp_path / "store"))
    _check_common(reports, expected_steps=4)
    shards = [set(r["train_episodes"]) for r in reports]
    assert shards[0] and shards[1] and not shards[0] & shards[1], shards
    assert shards[0] | shards[1] == set(names)  # val_fraction 0: the shards cover the whole store


def test_worldmodels_pipeline_ddp_end_to_end(tmp_path):
    """`wm worldmodels --devices 2 --strategy ddp`: V and M under DDP, C and the evaluation on rank zero only."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LOCAL_RANK", None)
    env.pop("WORLD_SIZE", None)
    result = subprocess.run([sys.executable, "-m", "scripts.cli", "worldmodels", "--preset", "debug", "--env",
                             "worldmodels/Catch-v0", "--run-dir", str(run_dir), "--devices", "2", "--strategy", "ddp"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    for stage in ("vae", "mdnrnn", "controller"):
        assert (run_dir / stage / "DONE").exists() and (run_dir / stage / "model.safetensors").exists(), stage
    assert (run_dir / "eval.json").exists()
    assert result.stdout.count("standard errors of the paired difference") == 1  # printed by rank zero only


def test_replay_state_of_another_rank_keeps_this_ranks_stream():
    """A DDP checkpoint holds rank zero's replay state; rank 1 resuming from it must not copy its sampler."""
    from trainers.data.distributed import rank_seed
    from trainers.data.online import OnlineReplay

    replays = [OnlineReplay("worldmodels/Catch-v0", None, batch_size=2, seq_len=4, prefill=0,
                            seed=rank_seed(0, rank), env_options={"image_size": 16}) for rank in (0, 1)]
    state = replays[0].state_dict()
    replays[0].load_state_dict(state)  # same rank: exact resume
    replays[1].load_state_dict(state)  # other rank: counters shared, own stream
    assert replays[1].batches == replays[0].batches and replays[1].env_steps == replays[0].env_steps
    assert replays[0].rng.integers(1 << 30, size=4).tolist() != replays[1].rng.integers(1 << 30, size=4).tolist()
