"""Layers that only point down: the import-linter contracts hold, deferred project imports say why, and
loading a model needs neither Lightning nor the repository as the working directory."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("worldmodels", "trainers", "scripts")


def test_import_linter_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        pytest.fail("lint-imports is not installed; `pip install -e .[test]` installs import-linter")
    result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def function_body_project_imports() -> list[tuple[Path, int, bool]]:
    """``(file, line, has a comment on that line or the one before)`` per project import inside a function."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text()
            lines = source.splitlines()
            for node in ast.walk(ast.parse(source)):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for inner in ast.walk(node):
                    names = ([alias.name for alias in inner.names] if isinstance(inner, ast.Import) else
                             [inner.module or ""] if isinstance(inner, ast.ImportFrom) else [])
                    if any(name.split(".")[0] in PACKAGES for name in names):
                        here, before = lines[inner.lineno - 1], lines[inner.lineno - 2] if inner.lineno > 1 else ""
                        found.append((path.relative_to(ROOT), inner.lineno, "#" in here or before.strip().startswith("#")))
    return found


def test_every_deferred_project_import_says_why():
    found = function_body_project_imports()
    print(f"function-body imports of project modules: {len(found)}")
    silent = [f"{path}:{line}" for path, line, commented in found if not commented]
    assert not silent, f"project imports inside functions without a comment saying why: {silent}"


def test_loading_a_shipped_model_imports_no_lightning_from_any_directory(tmp_path):
    code = ("import sys, torch, worldmodels\n"
            "model = worldmodels.load('pong-dreamer-tiny')\n"
            "action, _ = model.policy().act(torch.zeros(1, *model.obs_shape, dtype=torch.uint8), torch.ones(1, dtype=torch.bool), None)\n"
            "assert action.shape == (1, model.action_spec.dim), action.shape\n"
            "print('lightning' in sys.modules, 'trainers' in sys.modules, 'scripts' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "False"], result.stdout


def test_import_worldmodels_stays_light():
    result = subprocess.run([sys.executable, "-c", "import sys, worldmodels; print('torch' in sys.modules)"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stdout + result.stderr


def command_imports() -> list[str]:
    """``"scripts/a.py -> scripts.b"`` for every import of one command module by another (``scripts/cli.py``, the
    entry point that dispatches to every command, excepted)."""
    found = []
    for path in sorted((ROOT / "scripts").glob("*.py")):
        if path.name in ("cli.py", "__init__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [f"{node.module}.{alias.name}" for alias in node.names] if isinstance(node, ast.ImportFrom)
                     and node.module else [])
            found += [f"scripts/{path.name} -> {name}" for name in names if name.split(".")[0] == "scripts"]
    return found


def test_commands_never_import_commands():
    # What two commands share lives a layer below (worldmodels.heldout, worldmodels.model_card, trainers.runs.fidelity,
    # worldmodels.serving.tokens): a command that imports another runs that command's flags and side effects.
    found = command_imports()
    assert not found, f"commands importing commands: {found}"
