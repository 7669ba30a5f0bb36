"""The ``wm`` console command: one subcommand per entry point, options generated from typed configs.

Each subcommand is described by a :class:`Command` in :data:`COMMANDS` (an explicit
registry): a module exposing ``CONFIG`` (a dataclass), optionally ``PRESETS``
(flat dicts of overrides), ``CLI_ALIASES`` (``{flag: field}``), ``DEPRECATED_ALIASES``
(``{flag: (field, why)}``: accepted with a one-line warning) and ``run(config) -> dict``. The module is imported
only when its subcommand runs (or for ``--help``), so ``wm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import re
import sys
from dataclasses import dataclass

from worldmodels.config import ConfigError, WriteError, add_config_args, build_config, preset_config


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
    "tdmpc": Command("scripts.tdmpc", "Train a TD-MPC2-style value-equivalent model online (MPPI + value + prior), then evaluate it vs random."),
    "mbpo": Command("scripts.mbpo", "Train SAC on real + branched PETS-model rollouts (MBPO), then evaluate it vs random."),
    "serve": Command("scripts.serve", "Serve any saved model's policy over HTTP (sessions batched into shared forward passes; token auth)."),
    "serve-load": Command("scripts.serve_load", "Load-test a running `wm serve`: N concurrent sessions for T seconds -> throughput, p50/p99 latency, errors (JSON)."),
    "import": Command("scripts.import_data", "Import recorded episodes (.npz directory or Minari dataset) into an episode store, validated first."),
    "doctor": Command("scripts.doctor", "Check an env (gymnasium API, spaces, rendering, seeding, speed) and print the command that trains on it."),
    "pets": Command("scripts.pets", "PETS online: refit a probabilistic ensemble every episode, act by CEM-MPC over it, then evaluate it vs random."),
    "remeasure": Command("scripts.remeasure", "Re-measure a shipped or exported model's held-out open-loop KPIs and baselines in place (as wm export)."),
    "atari-table": Command("scripts.atari_table", "The Atari-20k table: finished wm dreamer Atari runs -> results/atari20k.json and a markdown table with HNS."),
    "plan": Command("scripts.plan", "Plan with any saved world model (MPC: shooting, CEM, iCEM, MPPI) in the real env next to random on the same seeds."),
    "fidelity": Command("scripts.fidelity", "Decision fidelity: a policy set's returns in a saved world model's dream vs the real env (Spearman, regret)."),
    "play": Command("scripts.play", "Play inside a saved world model's dream in the browser (keyboard or its policy), the real env beside it."),
}


def _version() -> str:
    """The installed package's version, read without importing torch (``wm --version`` stays instant)."""
    from importlib.metadata import PackageNotFoundError, version  # deferred: only --version needs it

    try:
        return version("worldmodels")
    except PackageNotFoundError:  # a checkout on PYTHONPATH, not installed
        return "(not installed)"


def plain(text: str) -> str:
    """Docstring markup as a terminal shows it: ``:mod:`x``` and ````x```` become `x`."""
    return re.sub(r"``([^`]+)``", r"`\1`", re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text))


def did_you_mean(word: str, choices: list[str]) -> str:
    """``"; did you mean --preset?"`` for the closest of ``choices`` to a misspelt ``word``, else ``""``."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def unknown_words(parser: argparse.ArgumentParser, command: str | None, unknown: list[str]) -> str:
    """One line naming the unrecognised arguments, with the closest flag of ``command`` for each misspelt one."""
    options: list[str] = []
    if command is not None:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
        options = [s for action in sub._actions for s in action.option_strings if s.startswith("--")]
    hints = [f"{word}{did_you_mean(word.split('=')[0], options)}" for word in unknown if word.startswith("-")]
    where = f"wm {command}" if command else "wm"
    return (f"{where}: error: unrecognized argument(s) {' '.join(unknown)}" + (f" ({'; '.join(hints)})" if any(
        "did you mean" in h for h in hints) else "") + f"; see `{where} --help`")


class UserError(Exception):
    """An error the user can fix; printed as one line, without a traceback."""


def chosen_preset(argv: list[str]) -> str | None:
    """The ``--preset`` on the command line (``--preset X`` or ``--preset=X``), if any; looked up before parsing
    so that ``--help`` can show the defaults that preset gives."""
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    pre.add_argument("--preset")
    try:
        return pre.parse_known_args(argv)[0].preset
    except argparse.ArgumentError:  # `--preset` without a name: the full parser reports it
        return None


def build_parser(only: str | None = None, preset: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only``, just that subcommand gets its options (the others import nothing).

    The options' ``--help`` shows the defaults after ``preset`` (else the module's ``DEFAULT_PRESET``) is applied.
    """
    parser = argparse.ArgumentParser(
        prog="wm",
        description="worldmodels: world models with latent imagination (World Models V+M+C and Dreamer).",
    )
    parser.add_argument("--version", action="version", version=f"wm (worldmodels) {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=command.help)  # listed in `wm --help` without importing torch & co.
            continue
        module = importlib.import_module(command.module)
        p = sub.add_parser(name, help=command.help, description=plain((module.__doc__ or command.help).strip().splitlines()[0]))
        presets = getattr(module, "PRESETS", None)
        default_preset = getattr(module, "DEFAULT_PRESET", None)
        if presets:
            p.add_argument("--preset", choices=sorted(presets), default=default_preset,
                           help=f"named size preset applied before explicit flags (default: {default_preset})")
        shown = preset if presets and preset in presets else default_preset if presets else None
        add_config_args(p, module.CONFIG, shown=preset_config(module.CONFIG, presets, shown),
                        shown_as=f"with --preset {shown}" if shown else "")
        for flag, dest in getattr(module, "CLI_ALIASES", {}).items():  # e.g. --from for a field named `source`
            p.add_argument(flag, dest=dest, default=None, help=f"same as --{dest.replace('_', '-')}")
        for flag, (dest, why) in getattr(module, "DEPRECATED_ALIASES", {}).items():  # old spellings, still accepted
            parse = next(action.type for action in p._actions if action.dest == dest)  # the field's own converter
            p.add_argument(flag, dest=dest, default=None, type=parse,
                           help=f"deprecated: {why}; use --{dest.replace('_', '-')}")
        p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Import only the module of the subcommand being run (or none for `wm --help`): keeps the CLI fast.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen is not None and chosen not in COMMANDS and not argv[0].startswith("-"):
        print(f"wm: error: unknown command {chosen!r}{did_you_mean(chosen, list(COMMANDS))}; `wm --help` lists them",
              file=sys.stderr)
        return 2
    parser = build_parser(only=chosen if chosen in COMMANDS else "", preset=chosen_preset(argv))
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        print(unknown_words(parser, args.command, unknown), file=sys.stderr)
        return 2
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.command].module)
    for flag, (dest, why) in getattr(module, "DEPRECATED_ALIASES", {}).items():
        if any(a == flag or a.startswith(flag + "=") for a in argv):
            print(f"wm {args.command}: warning: {flag} is deprecated ({why}); use --{dest.replace('_', '-')}",
                  file=sys.stderr)
    try:
        config = build_config(module.CONFIG, args, presets=getattr(module, "PRESETS", None), preset=getattr(args, "preset", None))
        if args.print_config:
            print(json.dumps(config.__dict__, indent=2, default=str))
            return 0
        result = module.run(config)
    except (ConfigError, UserError, ValueError, FileNotFoundError, PermissionError, WriteError) as error:
        # One line, no traceback: every user-facing check raises one of these with a full message.
        # WM_DEBUG=1 re-raises, for developers who want the traceback.
        if os.environ.get("WM_DEBUG"):
            raise
        print(f"wm {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"wm {args.command}: interrupted; completed work is on disk and the run resumes where it stopped", file=sys.stderr)
        return 130
    # A command reports a finding that is not an error (wm doctor: a broken env) with an exit_code in its result.
    return int(result.get("exit_code", 0)) if isinstance(result, dict) else 0


if __name__ == "__main__":
    sys.exit(main())
