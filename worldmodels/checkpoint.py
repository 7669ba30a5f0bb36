"""Checkpoints that users exchange: safetensors weights + a JSON config. Loading never unpickles.

A pretrained directory holds exactly two files::

    DIR/model.safetensors   every tensor, keyed "<component>.<parameter name>"
    DIR/config.json         {"format", "family", "library_version", "components", "sha256", ...}

``sha256`` maps ``model.safetensors`` to its digest. Loading verifies it and refuses NaN / inf weights, and saving
refuses them too. A digest that is missing, null, renamed or not 64 hex digits would switch the check off for
anyone who can edit ``config.json``, so such a checkpoint loads only when the caller says so
(``allow_unverified=True``, ``--allow-unverified``; :func:`allowing_unverified` for a whole command), with one
warning line; a digest that does not match is always refused.

``save_pretrained`` writes both through temp files + ``os.replace`` so a kill never
leaves a half-written checkpoint. ``load_pretrained`` parses only the safetensors
header/byte ranges and JSON: no code in the files can run. Every failure (missing
file, tampered or truncated bytes, a pickle payload, a wrong shape) is a
:class:`CheckpointError` with a one-line message.

Lightning ``.ckpt`` files are for exact resume only and are read by
:func:`load_lightning_checkpoint` with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from worldmodels.config import arg, writing
from worldmodels.finite import NonFiniteError
from worldmodels.version import __version__

FORMAT = "worldmodels-pretrained/1"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


SHA256_KEY = "sha256"  # config.json: {file name: hex digest}; without one a checkpoint loads only when allowed
HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
UNVERIFIED_FLAG = "--allow-unverified"
# Set by allowing_unverified() for a whole command: its loaders are many and deep (transfer, read_layout, ...).
_ALLOW_UNVERIFIED: contextvars.ContextVar[bool] = contextvars.ContextVar("allow_unverified", default=False)
_WARNED: set[Path] = set()  # directories already announced as unverified: one line each per process


def allow_unverified_arg() -> Any:
    """The one ``--allow-unverified`` field every command that loads a model declares."""
    return arg(False, "load a model whose config.json records no SHA-256 of model.safetensors (a warning says so); "
                      "a digest that does not match is always refused")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message says which file and what is wrong."""


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def allowing_unverified(allow: bool = True) -> Iterator[None]:
    """Within it, every :func:`read_tensors` loads checkpoints without a digest (``allow=False`` changes nothing)."""
    token = _ALLOW_UNVERIFIED.set(allow or _ALLOW_UNVERIFIED.get())
    try:
        yield
    finally:
        _ALLOW_UNVERIFIED.reset(token)


def recorded_sha256(config: Mapping[str, Any]) -> tuple[str | None, str]:
    """``(digest, "")`` of the weights as ``config.json`` records it, else ``(None, what is wrong with the record)``."""
    if SHA256_KEY not in config:
        return None, f"has no {SHA256_KEY!r} key"
    recorded = config[SHA256_KEY]
    if not isinstance(recorded, dict):
        return None, f"{SHA256_KEY} is {recorded!r}, not {{{WEIGHTS_NAME!r}: '<64 hex digits>'}}"
    digest = recorded.get(WEIGHTS_NAME)
    if not isinstance(digest, str) or not HEX_DIGEST.fullmatch(digest):
        return None, f"{SHA256_KEY}[{WEIGHTS_NAME!r}] is {digest!r}, not 64 hex digits"
    return digest.lower(), ""


def _verify(directory: Path, path: Path, allow_unverified: bool) -> None:
    """Refuse weights whose digest differs; without a digest, refuse unless allowed, and warn once when allowed."""
    expected, problem = recorded_sha256(read_config(directory))
    if expected is None:
        if not (allow_unverified or _ALLOW_UNVERIFIED.get()):
            raise CheckpointError(f"{directory / CONFIG_NAME}: {problem}, so {WEIGHTS_NAME} cannot be verified and a "
                                  f"changed file would load; re-export or re-download it, or pass {UNVERIFIED_FLAG} "
                                  "(allow_unverified=True) to load it anyway")
        if directory.resolve() not in _WARNED:
            _WARNED.add(directory.resolve())
            print(f"warning: loading {directory} without a digest ({UNVERIFIED_FLAG})", file=sys.stderr)
        return
    if file_sha256(path) != expected:
        raise CheckpointError(f"{path}: SHA-256 differs from the one in {CONFIG_NAME}; the file is corrupt or was changed "
                              "after it was written (re-export or re-download it)")


def save_safetensors(tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str]) -> None:
    """``safetensors.torch.save_file`` to ``path`` (a temp file the caller renames) with the file mode a plain
    ``open()`` gives (0644 under umask 022): safetensors writes through its own temp file, 0600 whatever the umask.
    Nothing is left at ``path`` when the write fails."""
    path = Path(path)
    try:
        with open(path, "w"):  # the umask's mode, read back without changing the process umask (threads)
            pass
        mode = path.stat().st_mode & 0o777
        save_file(dict(tensors), str(path), metadata=dict(metadata))
        os.chmod(path, mode)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@dataclass
class LoadReport:
    """What :func:`load_into` did: keys loaded, and keys left at their fresh initialisation."""

    loaded: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)


def save_pretrained(directory: str | Path, components: Mapping[str, nn.Module], config: Mapping[str, Any]) -> Path:
    """Write ``components`` (name -> module) and ``config`` to ``directory`` atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in components.items():
        for key, value in module.state_dict().items():
            # safetensors refuses shared / non-contiguous storage; clone makes each tensor its own.
            tensors[f"{name}.{key}"] = value.detach().to("cpu").contiguous().clone()
    bad = next((key for key, value in tensors.items() if value.is_floating_point() and not torch.isfinite(value).all()), None)
    if bad is not None:  # a diverged model must never become a checkpoint that looks like a result
        raise NonFiniteError(f"{directory}: refusing to write a model with non-finite weights ({bad} holds NaN or inf)")
    tmp_weights = directory / f".{WEIGHTS_NAME}.tmp"
    tmp_config = directory / f".{CONFIG_NAME}.tmp"
    with writing(directory / WEIGHTS_NAME):  # a full disk: one line naming the file
        save_safetensors(tensors, tmp_weights, {"format": FORMAT})
    payload = {
        "format": FORMAT,
        "library_version": __version__,
        "components": sorted(components),
        **config,
        SHA256_KEY: {WEIGHTS_NAME: file_sha256(tmp_weights)},  # verified by read_tensors: a flipped bit is refused
    }
    with writing(directory / CONFIG_NAME):
        tmp_config.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
        for tmp in (tmp_weights, tmp_config):
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp_weights, directory / WEIGHTS_NAME)
        os.replace(tmp_config, directory / CONFIG_NAME)
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    """The JSON config of a pretrained directory, validated for format."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a pretrained directory holds {WEIGHTS_NAME} and {CONFIG_NAME}")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error.msg if hasattr(error, 'msg') else error})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format is {config.get('format') if isinstance(config, dict) else None!r}, expected {FORMAT!r}")
    return config


def read_tensors(directory: str | Path, *, allow_unverified: bool = False) -> dict[str, dict[str, torch.Tensor]]:
    """The weights of a pretrained directory, grouped by component: ``{component: state_dict}``, verified against
    the digest in its ``config.json`` (``allow_unverified``: load one without a digest, see the module doc)."""
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a pretrained directory holds {WEIGHTS_NAME} and {CONFIG_NAME}")
    _verify(Path(directory), path, allow_unverified)
    try:
        flat = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{path}: not a valid safetensors file ({first_line}); it may be truncated, tampered with, or a pickle "
            f"(pickled checkpoints are refused: weights must be safetensors)"
        ) from None
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{path}: tensor {key} holds NaN or inf; refusing a diverged model")
        component, _, name = key.partition(".")
        grouped.setdefault(component, {})[name] = value
    return grouped


def load_into(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    component: str,
    reinit_prefixes: tuple[str, ...] = (),
    check_only: bool = False,
) -> LoadReport:
    """Copy ``state`` into ``module``; keys under ``reinit_prefixes`` whose shape differs keep their fresh init.

    Any other missing key, unexpected key or shape mismatch is a one-line :class:`CheckpointError`.
    ``check_only``: compare only, copy nothing (``module`` may live on the meta device).
    """
    report = LoadReport()
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if unexpected or [k for k in missing if not k.startswith(reinit_prefixes)]:
        raise CheckpointError(
            f"{component}: checkpoint does not match the model (missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}); was it saved by another model class?"
        )
    to_load = {}
    for key in [k for k in own if k in state]:  # the model's own order: first layer first
        value = state[key]
        if own[key].shape != value.shape:
            if key.startswith(reinit_prefixes):
                report.reinitialised.append(key)
                continue
            raise CheckpointError(
                f"{component}.{key}: shape {tuple(value.shape)} in the checkpoint, but the model expects "
                f"{tuple(own[key].shape)}" + ("" if check_only else "; build the model with the checkpoint's config.json sizes")
            )
        to_load[key] = value
        report.loaded.append(key)
    report.reinitialised += [k for k in missing if k.startswith(reinit_prefixes)]
    if not check_only:
        module.load_state_dict(to_load, strict=False)
    return report


def load_lightning_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a Lightning ``.ckpt`` for exact resume with ``weights_only=True`` (no arbitrary code)."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as error:  # noqa: BLE001 - torch raises many types for bad files; all mean "refused"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: refused to load ({first_line[:200]}); only plain tensors and containers are accepted") from None
