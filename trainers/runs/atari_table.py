"""The Atari-20k table: one record per finished ``wm dreamer`` run, and the markdown table built from them.

A record (``results/atari20k.json``, a list) holds what a row needs and where it came from::

    game, env, seed, agent_steps        the run's results.json (exactly the --steps budget)
    eval_returns, random_returns        its eval.json: the actor and uniform random on the same seeds
    train_window_mean, train_window_episodes   training episodes ending in (15k, 20k] agent steps
    curve                               [agent steps at an episode's end, its return] for every training episode
    wall_s, cpu, commit, command        from RUN/segments.jsonl, one line per process (scripts/atari20k.sh)

The training window is DreamerV3's protocol (worldmodels.atari_scores), so ``train_window_mean`` is the figure
compared with DreamerV3's at 20k; the evaluation is ours (mode actions, ``eval_episodes`` fresh episodes).
An episode's end in agent steps is the running sum of stored rows: one row per agent step (worldmodels.driver).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from worldmodels.atari_scores import ATARI_100K, DREAMERV3_WINDOW, game_of, hns
from worldmodels.config import read_json
from worldmodels.data.store import EpisodeStore
from worldmodels.evaluation import margin_in_standard_errors


def training_curve(store: EpisodeStore) -> list[tuple[int, float]]:
    """``(agent steps at the episode's end, return)`` for each stored episode, in order (one env)."""
    steps, curve = 0, []
    for info in store.episodes:
        steps += info.length
        curve.append((steps, info.episode_return))
    return curve


def window_mean(curve: list[tuple[int, float]], window: tuple[int, int] = DREAMERV3_WINDOW) -> tuple[float | None, int]:
    low, high = window
    returns = [ret for end, ret in curve if low < end <= high]
    return (statistics.fmean(returns) if returns else None), len(returns)


def read_segments(run_dir: Path) -> list[dict[str, Any]]:
    """One dict per process of the run (``start``, ``end``, ``exit``, ``cpu``, ``commit``, ``command``, ``paused_s``)
    from ``segments.jsonl``; a process killed before its end line ends at its heartbeat (``heartbeat-<start>``).
    A line ``{"start": S, "paused_s": X}`` records X seconds the process was stopped (SIGSTOP, to free the cores for
    a measurement): they are not part of its wall time."""
    path = run_dir / "segments.jsonl"
    if not path.is_file():
        return []
    segments: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            segment = segments.setdefault(int(entry["start"]), {})
            paused = float(segment.get("paused_s", 0)) + float(entry.pop("paused_s", 0))  # SIGSTOP pauses add up
            segment.update(entry, paused_s=paused)
    for start, segment in segments.items():
        beat = run_dir / f"heartbeat-{start}"
        if "end" not in segment and beat.is_file():
            segment["end"], segment["exit"] = int(beat.read_text().strip() or start), "killed"
    return [segments[start] for start in sorted(segments)]


def run_record(run_dir: str | Path) -> dict[str, Any]:
    """The record of one finished run directory; a one-line error for a run that is not a finished Atari-100k game."""
    run_dir = Path(run_dir)
    config = read_json(run_dir / "config.json", what="the run's settings")
    results = read_json(run_dir / "results.json", what="a finished run's results (the run has not finished)")
    evaluation = read_json(run_dir / "eval.json", what="the run's evaluation")
    game = game_of(config["env"])
    if game is None:
        raise ValueError(f"{run_dir}: env {config['env']!r} is not one of the 26 Atari-100k games")
    curve = training_curve(EpisodeStore.open(run_dir / "episodes"))
    mean, count = window_mean(curve)
    segments = read_segments(run_dir)
    return {"game": game, "env": config["env"], "seed": int(config["seed"]), "preset": segments[-1].get("preset")
            if segments else None, "agent_steps": int(results["env_steps"]),
            "eval_returns": evaluation["returns"], "random_returns": evaluation["random_returns"],
            "train_window_mean": mean, "train_window_episodes": count, "curve": curve,
            "wall_s": sum(s["end"] - s["start"] - s["paused_s"] for s in segments if "end" in s) if segments else None,
            "cpu": sorted({s["cpu"] for s in segments if s.get("cpu")}),
            "commit": segments[-1].get("commit") if segments else None,
            "command": segments[-1].get("command") if segments else None}


def _mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.1f} (1 episode)" if values else "-"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def table(records: list[dict[str, Any]]) -> str:
    """The markdown table, one row per run, and the summary row over the games run (HNS of the window means)."""
    lines = ["| game | seed | ours: eval (episodes) | margin vs random | ours: training 15k-20k | random | human | "
             "DreamerV3 20k | HNS ours | HNS DreamerV3 | wall | CPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ours: dict[str, list[float]] = {}
    for record in sorted(records, key=lambda r: (r["game"], r["seed"])):
        reference = ATARI_100K[record["game"]]
        window = record["train_window_mean"]
        score_hns = None if window is None else hns(record["game"], window)
        if score_hns is not None:
            ours.setdefault(record["game"], []).append(score_hns)
        margin = margin_in_standard_errors({"returns": record["eval_returns"], "random_returns": record["random_returns"]})
        wall = "-" if record["wall_s"] is None else f"{record['wall_s'] / 3600:.1f} h"
        lines.append(
            f"| {record['game']} | {record['seed']} | {_mean_std(record['eval_returns'])} "
            f"({len(record['eval_returns'])}) | {margin:+.1f} SE | "
            f"{'-' if window is None else f'{window:.1f}'} ({record['train_window_episodes']} ep) | {reference.random} | "
            f"{reference.human} | {reference.dreamerv3_20k} | {'-' if score_hns is None else f'{score_hns:.3f}'} | "
            f"{hns(record['game'], reference.dreamerv3_20k):.3f} | {wall} | {', '.join(record['cpu']) or '-'} |")
    if ours:
        per_game = {game: statistics.fmean(values) for game, values in ours.items()}
        theirs = {game: hns(game, ATARI_100K[game].dreamerv3_20k) for game in per_game}
        lines.append(f"| **{len(per_game)} games** | | | | | | | | mean {statistics.fmean(per_game.values()):.3f}, "
                     f"median {statistics.median(per_game.values()):.3f} | mean {statistics.fmean(theirs.values()):.3f}, "
                     f"median {statistics.median(theirs.values()):.3f} | | |")
    return "\n".join(lines)
