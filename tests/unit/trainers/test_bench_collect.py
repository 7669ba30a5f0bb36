"""The collection benchmark's pipeline-vs-raw record (issue 12 item 4): both rates measured, ratios consistent."""

from __future__ import annotations

from trainers.bench_collect import collection_vs_raw, raw_steps_per_second


def test_collection_vs_raw_record_on_a_fast_env():
    record = collection_vs_raw("CartPole-v1", 2, steps=20, waves=1, repeats=2, seed=0, image_size=16)
    raw, piped = record["raw_steps_per_s"], record["pipeline_env_steps_per_s"]
    assert len(raw["runs"]) == len(piped["runs"]) == 2 and min(raw["runs"] + piped["runs"]) > 0
    assert record["pipeline_vs_raw"] == piped["median"] / raw["median"]
    # Stored frames are a subset of the env steps (a wave's early finishers play on into discarded episodes).
    assert record["pipeline_stored_frames_per_s"]["median"] <= piped["median"] + 1e-9


def test_raw_rate_needs_none_of_our_wrappers():
    assert raw_steps_per_second("CartPole-v1", 1, steps=10, seed=0, image_size=16) > 0
