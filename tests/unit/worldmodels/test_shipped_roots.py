"""Issue 14 item 1: a shipped NAME resolves from $WM_CHECKPOINTS first, then the source tree, then a wheel's
installed copy; pyproject ships every checkpoints/NAME as data files. (The real wheel install is checked by hand,
README.md, "Shipped model names work from any install": building one takes longer than a unit test should.)"""

from __future__ import annotations

import os
import shutil
import tomllib

import pytest

from worldmodels import shipped
from worldmodels.registry import resolve
from worldmodels.shipped import list_checkpoints

NAME = "pong-worldmodels-tiny"


def copy_shipped(root, name=NAME):
    shutil.copytree(shipped.SOURCE / NAME, root / name)
    return root / name


def test_wm_checkpoints_comes_first_and_may_list_several(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    copy_shipped(second, "mine")
    shadow = copy_shipped(first)  # the same NAME as a shipped model: $WM_CHECKPOINTS wins
    monkeypatch.setenv(shipped.ENV_VAR, os.pathsep.join([str(first), str(second)]))
    monkeypatch.chdir(tmp_path)  # from any directory (in the repo root, checkpoints/NAME is an existing path)
    assert resolve(NAME) == shadow and resolve("checkpoints/" + NAME) == shadow
    assert resolve("mine") == second / "mine"
    assert {row["name"] for row in list_checkpoints()} >= {NAME, "mine"}  # `wm checkpoints` lists them all


def test_source_tree_then_installed_copy(tmp_path, monkeypatch):
    monkeypatch.delenv(shipped.ENV_VAR, raising=False)
    assert resolve(NAME) == shipped.SOURCE / NAME  # this checkout
    installed = tmp_path / "share" / "worldmodels" / "checkpoints"
    copy_shipped(installed)
    monkeypatch.setattr(shipped, "SOURCE", tmp_path / "no-source-tree")  # as in a wheel install
    monkeypatch.setattr(shipped, "installed_roots", lambda: [installed])
    assert resolve(NAME) == installed / NAME
    assert shipped.is_shipped(installed / NAME) and not shipped.is_shipped(tmp_path)


@pytest.mark.parametrize("name", ["../checkpoints/" + NAME, "no-such-model"])
def test_only_plain_names_of_existing_models_resolve(name, monkeypatch):
    monkeypatch.delenv(shipped.ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match="no shipped model of that name in .*WM_CHECKPOINTS=DIR"):
        resolve(name)


def test_pyproject_ships_every_checkpoint_as_data_files():
    config = tomllib.loads((shipped.SOURCE.parent / "pyproject.toml").read_text())
    data_files = config["tool"]["setuptools"]["data-files"]
    names = sorted(p.name for p in shipped.SOURCE.iterdir() if (p / "config.json").is_file())
    assert data_files == {"/".join([*shipped.DATA_SUBDIR, n]): [f"checkpoints/{n}/*"] for n in names}
