"""Command-line polish (issue 29, item 5): `wm --version`, "did you mean" for misspelt commands and flags, help
texts without docstring markup or empty defaults."""

from __future__ import annotations

import pytest

from scripts.cli import COMMANDS, build_parser, did_you_mean, main, plain
from worldmodels.version import __version__


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("wm (worldmodels) ") and (__version__ in out or "not installed" in out), out


@pytest.mark.parametrize("argv, suggestion", [
    (["dremer"], "did you mean dreamer?"),
    (["dreamer", "--presett", "debug"], "did you mean --preset?"),
    (["plan", "--chekpoint", "x"], "did you mean --checkpoint?"),
    (["collect", "--episodess=3"], "did you mean --episodes?"),
])
def test_misspelt_commands_and_flags_get_one_line_with_the_closest(capsys, argv, suggestion):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and suggestion in err[0], err


def test_an_unlike_flag_gets_no_suggestion(capsys):
    assert main(["collect", "--zzzzzz"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unrecognized argument(s) --zzzzzz" in err and "did you mean" not in err


def test_did_you_mean_needs_a_close_word():
    assert did_you_mean("evalute", list(COMMANDS)) == "; did you mean evaluate?"
    assert did_you_mean("qqq", list(COMMANDS)) == ""


def test_plain_strips_sphinx_roles_and_double_backticks():
    assert plain("see :mod:`worldmodels.shipped` and ``wm serve`` or :func:`~a.b`") == \
        "see `worldmodels.shipped` and `wm serve` or `a.b`"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_has_no_markup_and_no_empty_default(command, capsys):
    with pytest.raises(SystemExit):
        build_parser(only=command).parse_args([command, "--help"])
    text = capsys.readouterr().out
    for bad in (":mod:", ":func:", ":class:", "``", "(default: )", "default: )", "(required) (default"):
        assert bad not in text, f"wm {command} --help shows {bad!r}"


def test_wm_checkpoints_is_an_aligned_table_without_torch(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    code = ("import sys; from scripts.cli import main; code = main(['checkpoints']); "
            "print('TORCH', 'torch' in sys.modules); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "TORCH False", "wm checkpoints imported torch: it only reads config.json files"
    header, rule, *rows = lines[:-1]
    assert header.split()[:4] == ["name", "family", "env", "MB"] and set(rule.replace(" ", "")) == {"-"}
    assert len(rows) >= 5  # the shipped models
    # Aligned: every column of the rule starts where the header's column starts.
    starts = [i for i, c in enumerate(rule) if c == "-" and (i == 0 or rule[i - 1] == " ")]
    for row in rows:
        assert all(i == 0 or row[i - 1] == " " for i in starts), row
