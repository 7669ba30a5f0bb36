"""The ``wm`` console command: one subcommand per entry point, options generated from typed configs.

Each subcommand is described by a :class:`Command` in :data:`COMMANDS` (an explicit
registry): a module exposing ``CONFIG`` (a dataclass), optionally ``PRESETS``
(flat dicts of overrides) and ``run(config) -> dict``. The module is imported
only when its subcommand runs (or for ``--help``), so ``wm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from dataclasses import dataclass

from worldmodels.config import ConfigError, add_config_args, build_config


@dataclass(frozen=True)
class Command:
    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "collect": Command("scripts.collect", "Collect episodes with a random policy into an on-disk episode store."),
    "checkpoints": Command("scripts.checkpoints", "List the pretrained world models shipped in checkpoints/ with their metrics."),
    "bench": Command("scripts.bench", "Benchmarks with JSON output (env collection, training, imagination)."),
    "dream": Command("scripts.dream", "Render a saved world model's dreams (open loop + imagined) to TensorBoard and GIF files."),
    "worldmodels": Command("scripts.worldmodels_pipeline", "World Models end to end: collect -> V -> M -> C (CMA-ES in the dream) -> evaluate."),
    "dreamer": Command("scripts.dreamer", "Train a DreamerV3 agent online (world model + actor-critic in imagination), then evaluate it vs random."),
    "export": Command("scripts.export", "Export a finished run to safetensors + JSON, measure it on held-out episodes, write its model card."),
    "finetune": Command("scripts.finetune", "Fine-tune a pretrained world model on another env, new data or a new reward."),
    "bench-finetune": Command("scripts.bench_finetune", "Benchmark (JSON): steps for a fine-tuned vs a from-scratch world model to reach the same val loss."),
    "evaluate": Command("scripts.evaluate", "Play any saved model (a run, an export or a shipped name) in the real env next to a random policy on the same seeds."),
}


class UserError(Exception):
    """An error the user can fix; printed as one line, without a traceback."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only``, just that subcommand gets its options (the others import nothing)."""
    parser = argparse.ArgumentParser(
        prog="wm",
        description="worldmodels: world models with latent imagination (World Models V+M+C and Dreamer).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=command.help)  # listed in `wm --help` without importing torch & co.
            continue
        module = importlib.import_module(command.module)
        p = sub.add_parser(name, help=command.help, description=(module.__doc__ or command.help).strip().splitlines()[0])
        presets = getattr(module, "PRESETS", None)
        if presets:
            p.add_argument("--preset", choices=sorted(presets), default=getattr(module, "DEFAULT_PRESET", None),
                           help=f"named size preset applied before explicit flags (default: {getattr(module, 'DEFAULT_PRESET', None)})")
        add_config_args(p, module.CONFIG)
        for flag, dest in getattr(module, "CLI_ALIASES", {}).items():  # e.g. --from for a field named `source`
            p.add_argument(flag, dest=dest, default=None, help=f"same as --{dest.replace('_', '-')}")
        p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Import only the module of the subcommand being run (or none for `wm --help`): keeps the CLI fast.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=chosen if chosen in COMMANDS else "")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.command].module)
    try:
        config = build_config(module.CONFIG, args, presets=getattr(module, "PRESETS", None), preset=getattr(args, "preset", None))
        if args.print_config:
            print(json.dumps(config.__dict__, indent=2, default=str))
            return 0
        module.run(config)
    except (ConfigError, UserError, ValueError, FileNotFoundError, PermissionError) as error:
        # One line, no traceback: every user-facing check raises one of these with a full message.
        # WM_DEBUG=1 re-raises, for developers who want the traceback.
        if os.environ.get("WM_DEBUG"):
            raise
        print(f"wm {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"wm {args.command}: interrupted; completed work is on disk and the run resumes where it stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
