"""The Atari-20k table: a record per finished run (DreamerV3's training window, HNS), the table, the reference scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scripts import cli
from trainers.runs.atari_table import run_record, table, window_mean
from worldmodels.atari_scores import ATARI_100K, game_of, hns
from worldmodels.data.store import EpisodeStore
from worldmodels.envs.spaces import ActionSpec

LENGTHS, RETURNS = [6000, 6000, 4000, 3000, 1000], [1.0, 2.0, 3.0, 4.0, 5.0]  # episodes end at 6k, 12k, 16k, 19k, 20k


def _finished_run(root, *, env="ALE/Boxing-v5", seed=1):
    run = root / f"run-{seed}"
    store = EpisodeStore.create(run / "episodes", env_id=env, obs_shape=(2, 2, 3), action_spec=ActionSpec("discrete", 3))
    for length, ret in zip(LENGTHS, RETURNS):
        reward = np.zeros(length, np.float32)
        reward[-1] = ret
        done = np.zeros(length, bool)
        done[-1] = True
        store.add_episode(np.zeros((length, 2, 2, 3), np.uint8), np.zeros(length, np.int64), reward, done,
                          np.zeros(length, bool))
    (run / "config.json").write_text(json.dumps({"env": env, "seed": seed}))
    (run / "results.json").write_text(json.dumps({"env_steps": 20000}))
    (run / "eval.json").write_text(json.dumps({"returns": [30.0, 20.0, 25.0], "random_returns": [1.0, -2.0, 0.0]}))
    (run / "segments.jsonl").write_text(
        '{"start": 100, "cpu": "AMD EPYC", "commit": "abc", "preset": "cpu", "command": "wm dreamer ..."}\n'
        '{"start": 100, "end": 1900, "exit": 0}\n'
        '{"start": 5000, "cpu": "AMD EPYC", "commit": "abd", "preset": "cpu", "command": "wm dreamer ..."}\n'
        '{"start": 5000, "paused_s": 300}\n')
    (run / "heartbeat-5000").write_text("6800\n")  # the second process was killed: its heartbeat ends it
    return run


def test_a_record_takes_dreamerv3s_training_window_and_the_wall_time_of_every_process(tmp_path):
    record = run_record(_finished_run(tmp_path))
    assert record["game"] == "boxing" and record["agent_steps"] == 20000 and record["seed"] == 1
    # (15k, 20k]: the episodes ending at 16k, 19k and 20k (returns 3, 4, 5); 12k is outside.
    assert record["train_window_mean"] == pytest.approx(4.0) and record["train_window_episodes"] == 3
    assert record["curve"][-1] == (20000, 5.0) and len(record["curve"]) == 5
    assert record["wall_s"] == 1800 + 1800 - 300 and record["cpu"] == ["AMD EPYC"] and record["commit"] == "abd"


def test_the_window_is_open_below_and_closed_above():
    assert window_mean([(15000, 1.0), (15001, 2.0), (20000, 3.0), (20001, 9.0)]) == (2.5, 2)
    assert window_mean([(100, 1.0)]) == (None, 0)


def test_the_table_has_a_row_per_run_and_a_summary_of_hns(tmp_path):
    records = [run_record(_finished_run(tmp_path, seed=s)) for s in (0, 1)]
    text = table(records)
    rows = [line for line in text.splitlines() if line.startswith("| boxing |")]
    assert len(rows) == 2 and "25.0 ± 5.0 (3)" in rows[0]
    ours = hns("boxing", 4.0)
    assert f"mean {ours:.3f}" in text.splitlines()[-1] and f"mean {hns('boxing', 23.9):.3f}" in text.splitlines()[-1]


def test_a_run_outside_the_atari_100k_games_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="not one of the 26 Atari-100k games"):
        run_record(_finished_run(tmp_path, env="ALE/Tetris-v5"))


def test_the_command_merges_records_by_game_and_seed(tmp_path, capsys):
    runs = tmp_path / "runs"
    _finished_run(runs, seed=0)
    out = tmp_path / "atari20k.json"
    out.write_text(json.dumps([{**run_record(_finished_run(tmp_path / "old", seed=0)), "eval_returns": [0.0, 0.0]}]))
    assert cli.main(["atari-table", "--runs", str(runs), "--out", str(out)]) == 0
    records = json.loads(out.read_text())
    assert len(records) == 1 and records[0]["eval_returns"] == [30.0, 20.0, 25.0]  # the fresh run replaced the old
    assert "| boxing | 0 |" in capsys.readouterr().out


def test_reference_scores_name_real_ale_ids_and_hns_is_zero_at_random_one_at_human():
    assert len(ATARI_100K) == 26 and game_of("ALE/Krull-v5") == "krull" and game_of("ALE/Tetris-v5") is None
    for game, reference in ATARI_100K.items():
        assert hns(game, reference.random) == 0 and hns(game, reference.human) == pytest.approx(1)
        assert reference.dreamerv3_20k_min <= reference.dreamerv3_20k <= reference.dreamerv3_20k_max


def test_evaluation_lines_give_the_hns_of_an_atari_game_and_no_nan_margin_for_one_episode():
    from worldmodels.evaluation import eval_record, result_table, summary_line

    boxing = eval_record(env_id="ALE/Boxing-v5", seed=1, returns=[20.0, 30.0, 25.0], random_returns=[1.0, 0.0, -1.0])
    assert "HNS 2.075" in summary_line(boxing) and "HNS 2.075" in result_table(boxing)  # (25 - 0.1) / (12.1 - 0.1)
    one = eval_record(env_id="worldmodels/Catch-v0", seed=1, returns=[1.0], random_returns=[0.0])
    for text in (summary_line(one), result_table(one)):
        assert "nan" not in text and "one episode: no margin" in text and "1 episodes" not in text and "HNS" not in text
