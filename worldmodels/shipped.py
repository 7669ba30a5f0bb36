"""Where a shipped model NAME (``worldmodels.load("takecover-worldmodels-cpu")``, ``--checkpoint NAME``) is found.

The directories searched, first match wins (:func:`shipped_roots`)::

    $WM_CHECKPOINTS                        one or more directories (os.pathsep-separated): your own models,
                                           or the shipped ones copied anywhere
    checkpoints/ next to the package       a source checkout, or an editable install of one
    share/worldmodels/checkpoints/         a wheel install: pyproject's data-files, under the install
                                           scheme's data directory (a venv's or the system prefix, the user
                                           base for --user) or next to the package (pip install --target)

The source tree comes before the installed copy because an editable install copies the data files too, and
``wm export`` / ``wm remeasure`` write to the source tree: the copy in the venv would be stale. Nothing here
runs at import time; the directories are looked up when a name is resolved.
"""

from __future__ import annotations

import json
import os
import sysconfig
from pathlib import Path

ENV_VAR = "WM_CHECKPOINTS"
PACKAGE = Path(__file__).resolve().parent
SOURCE = PACKAGE.parent / "checkpoints"  # the source tree's checkpoints/ (absent in a wheel install)
DATA_SUBDIR = ("share", "worldmodels", "checkpoints")  # where pyproject's [tool.setuptools.data-files] put them


def installed_roots() -> list[Path]:
    """Where a wheel install puts ``share/worldmodels/checkpoints``: the data directory of the default and the
    user install schemes, and next to the package (``pip install --target DIR`` puts ``share/`` in DIR)."""
    bases = [sysconfig.get_path("data"), sysconfig.get_path("data", sysconfig.get_preferred_scheme("user")),
             str(PACKAGE.parent)]
    return [Path(base).joinpath(*DATA_SUBDIR) for base in bases]


def shipped_roots() -> list[Path]:
    """Every directory searched for a shipped NAME, in order (existing or not, duplicates dropped)."""
    given = [Path(part).expanduser() for part in os.environ.get(ENV_VAR, "").split(os.pathsep) if part]
    roots: list[Path] = []
    for root in [*given, SOURCE, *installed_roots()]:
        if root not in roots:
            roots.append(root)
    return roots


def find_shipped(name: str) -> Path | None:
    """``ROOT/NAME`` of the first root holding ``NAME/config.json`` (``checkpoints/NAME`` reads as NAME), else None."""
    name = name.removeprefix("checkpoints/")
    if not name or Path(name).name != name:  # a plain name only: "a/b" or ".." never leaves a root
        return None
    for root in shipped_roots():
        if (root / name / "config.json").is_file():
            return root / name
    return None


def shipped_names() -> list[str]:
    """Every NAME found under the roots (sorted), for error messages and ``wm checkpoints``."""
    return sorted({p.name for root in shipped_roots() if root.is_dir() for p in root.iterdir()
                   if (p / "config.json").is_file()})


def is_shipped(path: Path) -> bool:
    """Whether ``path`` lies inside a shipped root: outputs about it go to the working directory, not next to it."""
    resolved = Path(path).resolve()
    return any(root.resolve() in resolved.parents for root in shipped_roots())


def list_checkpoints(root: str | Path | None = None) -> list[dict]:
    """One row per pretrained directory under ``root`` (None: every shipped NAME, as ``resolve`` finds it): name,
    family, env, size, metrics, card path; ``{"name", "error"}`` for an unreadable ``config.json``.

    Reads the JSON only (no torch, no weights), so ``wm checkpoints`` lists models in well under a second.
    """
    if root is None:
        directories = [d for d in (find_shipped(name) for name in shipped_names()) if d is not None]
    else:
        directories = sorted(Path(root).iterdir()) if Path(root).is_dir() else []
    rows = []
    for directory in directories:
        if not (directory / "config.json").is_file():
            continue
        try:
            config = json.loads((directory / "config.json").read_text())
            if not isinstance(config, dict):
                raise ValueError("config.json is not a JSON object")
        except (OSError, ValueError) as error:
            rows.append({"name": directory.name, "error": f"{directory / 'config.json'}: {error}"})
            continue
        size_mb = sum(p.stat().st_size for p in directory.iterdir() if p.is_file()) / 2**20
        rows.append({"name": directory.name, "path": str(directory), "family": config.get("family"),
                     "env_id": config.get("env_id"), "steps": config.get("training_steps"),
                     "size_mb": round(size_mb, 2), "metrics": config.get("metrics", {}),
                     "card": str(directory / "README.md") if (directory / "README.md").is_file() else None})
    return rows
