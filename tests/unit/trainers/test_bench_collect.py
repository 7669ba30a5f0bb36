"""The collection benchmark's pipeline-vs-raw record (issue 12 item 4): both rates measured, ratios consistent."""

from __future__ import annotations

from trainers.bench.collect import collection_vs_raw, pipeline_rates, raw_steps_per_second


def test_collection_vs_raw_record_on_a_fast_env():
    record = collection_vs_raw("CartPole-v1", 2, steps=20, episodes_per_env=1, repeats=2, seed=0, image_size=16)
    raw, piped = record["raw_steps_per_s"], record["pipeline_env_steps_per_s"]
    assert len(raw["runs"]) == len(piped["runs"]) == 2 and min(raw["runs"] + piped["runs"]) > 0
    assert record["pipeline_vs_raw"] == piped["median"] / raw["median"]
    assert record["pipeline_stored_frames_per_s"]["median"] > 0
    # A non-ALE id also gets the raw envs in worker processes, the ceiling of an async pipeline.
    assert record["pipeline_vs_raw_async"] == piped["median"] / record["raw_async_steps_per_s"]["median"]


def test_stored_frames_are_env_steps_or_reset_frames():
    rates = pipeline_rates("CartPole-v1", 2, episodes_per_env=2, seed=0, image_size=16)
    # Each stored frame is an env step's result or an episode's reset frame (a seeded reset is no step); at the end,
    # envs with no episode left play on into discarded episodes, so steps can only exceed that count.
    assert rates["episodes"] == 4 and rates["frames"] <= rates["env_steps"] + rates["episodes"]


def test_raw_rate_needs_none_of_our_wrappers():
    assert raw_steps_per_second("CartPole-v1", 1, steps=10, seed=0, image_size=16) > 0


def test_both_collection_modes_against_raw_in_alternating_runs():
    record = collection_vs_raw("CartPole-v1", 2, steps=20, episodes_per_env=1, repeats=2, seed=0, image_size=16,
                               collect_modes=("exact", "fast"))
    for mode in ("exact", "fast"):  # each mode against the raw runs taken just before its own
        figures = record["by_mode"][mode]
        piped, raw = figures["pipeline_env_steps_per_s"], figures["raw_steps_per_s"]
        assert len(piped["runs"]) == len(raw["runs"]) == 2 and figures["pipeline_vs_raw"] == piped["median"] / raw["median"]
        assert figures["pipeline_vs_raw_by_pair"] == [p / q for p, q in zip(piped["runs"], raw["runs"])]
    assert len(record["raw_steps_per_s"]["runs"]) == 4
    # The top-level figures are the first mode's, as a one-mode record has them.
    assert record["collect_mode"] == "exact" and record["pipeline_vs_raw"] == record["by_mode"]["exact"]["pipeline_vs_raw"]


def test_fast_pipeline_rates_are_timed_after_the_first_reset():
    rates = pipeline_rates("CartPole-v1", 2, episodes_per_env=2, seed=0, image_size=16, collect_mode="fast")
    assert rates["episodes"] == 4 and 0.0 < rates["reset_seconds"] < rates["seconds"]
    assert rates["env_steps_per_s"] >= rates["env_steps_per_s_with_reset"]
