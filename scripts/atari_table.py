"""The Atari-20k table: records of finished ``wm dreamer`` Atari runs into a results file, and the markdown table.

``wm atari-table --runs /work/runs/atari20k --out results/atari20k.json`` reads every finished run directory under
``--runs`` (``scripts/atari20k.sh`` makes them), replaces the file's records of the same (game, seed) and prints the
table (README "Results", docs/results.md). ``--runs ""`` only prints the table of ``--out``. Record fields, the
training window and HNS: :mod:`trainers.runs.atari_table`, :mod:`worldmodels.atari_scores`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trainers.runs.atari_table import run_record, table
from worldmodels.config import arg, file_problem, save_json_atomic


@dataclass
class AtariTableConfig:
    runs: str = arg("", "directory whose sub-directories are finished wm dreamer runs on Atari-100k games "
                        "(empty: print the table of --out only)")
    out: str = arg("results/atari20k.json", "the results file: a JSON list of records, one per (game, seed)",
                   check=lambda c: file_problem(c.out))


CONFIG = AtariTableConfig


def run(config: AtariTableConfig) -> dict:
    out = Path(config.out)
    records = json.loads(out.read_text()) if out.is_file() else []
    if config.runs:
        root = Path(config.runs)
        if not root.is_dir():
            raise FileNotFoundError(f"--runs {config.runs!r} is not a directory of run directories")
        finished = [run_record(d) for d in sorted(root.iterdir()) if (d / "results.json").is_file()
                    and (d / "eval.json").is_file()]
        fresh = {(r["game"], r["seed"]) for r in finished}
        records = [r for r in records if (r["game"], r["seed"]) not in fresh] + finished
        records.sort(key=lambda r: (r["game"], r["seed"]))
        save_json_atomic(out, records)
        print(f"wm atari-table: {len(finished)} finished run(s) under {root} -> {out} ({len(records)} records)")
    print(table(records) if records else f"wm atari-table: no records in {out}")
    return {"records": len(records)}
