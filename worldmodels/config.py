"""Typed dataclass configs, presets, and the CLI generated from them.

Every config is a ``@dataclass`` whose fields are declared with :func:`arg`, which
carries a one-line help string. :func:`add_config_args` turns a config class into
argparse options (``--field-name``), and :func:`build_config` turns parsed
arguments back into a config instance:

    defaults  ->  preset overrides (flat dict)  ->  explicit command-line flags  ->  range checks

Each field's valid range is declared once, in its ``arg(...)`` (``minimum``, ``maximum``, ``above``, or a
cross-field ``check``), and :func:`check_config` enforces it for every command.

Presets are flat, named dicts of field overrides; no preset inherits from another.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import math
import os
import secrets
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

C = TypeVar("C")


class ConfigError(ValueError):
    """A config value that cannot be right; the message names the field and what would be."""


def arg(default: Any, help: str, *, choices: tuple | None = None,  # noqa: A002 - argparse name
        minimum: float | None = None, maximum: float | None = None, above: float | None = None,
        check: Callable[[Any], str | None] | None = None) -> Any:
    """Declare a config field with its one-line help text (shown by ``--help``) and its valid range.

    ``minimum`` / ``maximum`` are inclusive bounds, ``above`` an exclusive lower bound; ``None`` values
    (optional fields left unset) are not checked. ``check(config)`` returns a message (``"must be <= --steps"``)
    when the field is wrong given the other fields, else ``None``. :func:`check_config` applies them all.
    """
    metadata = {"help": help, "choices": choices, "minimum": minimum, "maximum": maximum, "above": above,
                "check": check}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


MAX_THREADS = 4096  # far above any CPU this runs on; a larger count is a typo


def threads_problem(value: Any, *, empty_ok: bool = False) -> str | None:
    """What is wrong with a ``--threads`` value, or ``None``: ``auto``, or an integer from 0 to :data:`MAX_THREADS`
    (``empty_ok``: also ``""``, "the preset's")."""
    text = str(value).strip()
    if text == "auto" or (empty_ok and text == "") or (text.isdigit() and int(text) <= MAX_THREADS):
        return None
    return f"must be 'auto' or an integer from 0 to {MAX_THREADS}" + (" (or empty: the preset's)" if empty_ok else "")


def threads_arg(default: str = "0", note: str = "", *, empty_ok: bool = False) -> Any:
    """The one ``--threads`` field: a string, ``auto`` (the fastest count, measured at start-up:
    :func:`worldmodels.profiling.auto_threads`), ``0`` (torch's default) or ``n``; checked when the config is built."""
    help_text = "torch CPU threads: 'auto' (the fastest count, measured), 0 (torch's default) or n" + (
        f"; {note}" if note else "")
    return arg(default, help_text, check=lambda c: threads_problem(c.threads, empty_ok=empty_ok))


def _field_type(cls: type, field: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[field.name]


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


def _converter(tp: Any):
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:  # Optional[X] / X | None
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        base = _converter(inner[0])
        return lambda text: None if text.lower() in {"none", "null", ""} else base(text)
    if tp is bool:
        return _parse_bool
    if tp in (int, float, str):
        return tp
    if origin in (list, tuple):
        item = typing.get_args(tp)[0] if typing.get_args(tp) else str
        conv = _converter(item)
        return lambda text: [conv(part) for part in text.split(",") if part]
    return str


def add_config_args(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = (),
                    shown: Any = None, shown_as: str = "") -> None:
    """Add one ``--option`` per dataclass field; defaults stay ``None`` so explicit flags are detectable.

    ``shown``: a ``cls`` instance whose values ``--help`` lists as the defaults (the config after the preset,
    see :func:`preset_config`), ``shown_as`` naming where they come from; else the field defaults.
    """
    group = parser.add_argument_group(f"{cls.__name__} options" + (f" (defaults {shown_as})" if shown_as else ""))
    shown = cls() if shown is None else shown
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        tp = _field_type(cls, field)
        default = getattr(shown, field.name)
        help_text = field.metadata.get("help", "")
        group.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=field.name,
            type=_converter(tp),
            default=None,
            choices=field.metadata.get("choices"),
            metavar=(tp.__name__.upper() if isinstance(tp, type) else "VALUE"),
            help=help_text + _default_help(default, field.metadata),
            **({"nargs": "?", "const": True} if tp is bool else {}),  # a bare `--flag` means `--flag true`
        )


def apply_overrides(config: C, overrides: Mapping[str, Any], *, source: str) -> C:
    """Return a copy of ``config`` with ``overrides`` applied; unknown keys are a one-line error."""
    names = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {unknown} for {type(config).__name__}; known: {sorted(names)}")
    return dataclasses.replace(config, **overrides)  # type: ignore[type-var]


def preset_config(cls: type[C], presets: Mapping[str, Mapping[str, Any]] | None, preset: str | None) -> C:
    """defaults -> preset: the config every flag then overrides (``--help`` shows its values)."""
    config = cls()
    if preset is not None:
        if presets is None or preset not in presets:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(presets or {})}")
        config = apply_overrides(config, presets[preset], source=f"preset {preset!r}")
    return config


def build_config(
    cls: type[C],
    namespace: argparse.Namespace | Mapping[str, Any] | None = None,
    *,
    presets: Mapping[str, Mapping[str, Any]] | None = None,
    preset: str | None = None,
) -> C:
    """defaults -> preset -> explicit flags (those not ``None`` in ``namespace``)."""
    config = preset_config(cls, presets, preset)
    values = vars(namespace) if isinstance(namespace, argparse.Namespace) else dict(namespace or {})
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    explicit = {k: v for k, v in values.items() if k in names and v is not None}
    config = apply_overrides(config, explicit, source="command line")
    check_config(config)
    return config


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default_help(default: Any, meta: Mapping[str, Any]) -> str:
    """`` (default: 8; >= 1)`` for ``--help``; an empty default shows as nothing (the help text says what empty means)."""
    bounds = _range_help(meta).removeprefix("; ")
    parts = ([] if default in ("", None) else [f"default: {default}"]) + ([bounds] if bounds else [])
    return f" ({'; '.join(parts)})" if parts else ""


def _range_help(meta: Mapping[str, Any]) -> str:
    """``; >= 1`` / ``; > 0, <= 1`` for ``--help``: the declared bounds of a field."""
    bounds = [f"{word} {meta[key]}" for key, word in (("minimum", ">="), ("above", ">"), ("maximum", "<="))
              if meta.get(key) is not None]
    return f"; {', '.join(bounds)}" if bounds else ""


def _range_words(value: Any, bound: float, word: str) -> str:
    """``a positive integer`` / ``a non-negative integer`` for the common integer bounds, else ``a number >= 2``."""
    if isinstance(value, int) and word == ">=" and bound in (0, 1):
        return "a positive integer" if bound == 1 else "a non-negative integer"
    return f"a number {word} {bound}"


def check_config(config: Any) -> None:
    """One-line :class:`ConfigError` for the first field outside its declared range (see :func:`arg`).

    Every command's config passes here (:func:`build_config`), so a count of 0 or a negative temperature is
    refused before anything is collected, trained or written.
    """
    for field in dataclasses.fields(config):
        value, meta = getattr(config, field.name), field.metadata
        if value is None:
            continue
        choices = meta.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"{_flag(field.name)} must be one of {list(choices)}, got {value!r}")
        # nan compares False with every bound and inf passes a minimum: `--lr inf` trained a NaN model to the end
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{_flag(field.name)} must be a finite number, got {value!r}")
        bounds = [(meta.get("minimum"), lambda v, b: v >= b, ">="), (meta.get("above"), lambda v, b: v > b, ">"),
                  (meta.get("maximum"), lambda v, b: v <= b, "<=")]
        for bound, holds, word in bounds:
            if bound is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not holds(value, bound):
                raise ConfigError(f"{_flag(field.name)} must be {_range_words(value, bound, word)}, got {value!r}")
    for field in dataclasses.fields(config):  # cross-field checks see a config whose single fields are all valid
        check = field.metadata.get("check")
        message = check(config) if check is not None and getattr(config, field.name) is not None else None
        if message:
            raise ConfigError(f"{_flag(field.name)} {getattr(config, field.name)!r} {message}")


def directory_problem(value: str) -> str | None:
    """For ``arg(check=...)`` of a directory field: what is wrong when a file stands at the path or above it, else ``None``."""
    for path in (Path(value), *Path(value).parents):
        if path.exists():
            return None if path.is_dir() else f"cannot be a directory: {str(path)!r} is a file"
    return None


def file_problem(value: str) -> str | None:
    """For ``arg(check=...)`` of an output file: what is wrong when a directory stands at the path or a file above it."""
    path = Path(value)
    if path.is_dir():
        return "is a directory; give a file path (e.g. DIR/record.json)"
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else f"cannot be written: {str(parent)!r} is a file, not a directory"
    return None


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a (possibly nested) dataclass config."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
    """Inverse of :func:`to_dict` for flat configs; ignores keys the class no longer has."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in values.items() if k in names})


# Settings a rerun into the same run directory may change: where and how fast it runs and how often it logs or
# checkpoints, never what it computes (a resume is exact, and the dream summaries draw from their own RNG).
# Everything else (sizes, seeds, steps, data, the evaluation's episodes) would mix two runs in one directory.
RERUN_MAY_DIFFER = frozenset({"run_dir", "device", "accelerator", "threads", "log_every", "checkpoint_every",
                              "dream_every", "replay_frames"})  # replay_frames: where frames live, same bytes


def check_same_settings(run_dir: str | Path, config: Any, *, ignore: frozenset[str] = RERUN_MAY_DIFFER,
                        may_grow: frozenset[str] = frozenset()) -> set[str]:
    """Refuse, in one line naming the keys, a rerun whose settings differ from ``RUN_DIR/config.json``'s.

    A key missing from the saved file (a field added since it was written) is compared with the field's default,
    the behaviour of the code that wrote the file; keys in ``ignore`` are not compared.
    Keys in ``may_grow`` (training budgets) may increase, to train a run on; returns those that did.
    No ``config.json`` (a new run directory) passes.
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return set()
    saved = read_json(path, what="the run's settings")
    current = to_dict(config)
    saved = {**{key: value for key, value in _defaults(config).items() if key not in saved}, **saved}
    common = saved.keys() & current.keys()
    grown = {key for key in common & may_grow if _grew(saved[key], current[key])}
    differ = sorted(key for key in common if key not in ignore and key not in grown and saved[key] != current[key])
    if differ:
        changes = ", ".join(f"{_flag(key)} {saved[key]!r} -> {current[key]!r}" for key in differ)
        raise ConfigError(f"{path} holds other settings than this run's ({changes}); rerun with those to resume, "
                          f"or choose another --run-dir (only {', '.join(sorted(_flag(k) for k in ignore))} may differ"
                          + (f"; {', '.join(sorted(_flag(k) for k in may_grow))} may grow" if may_grow else "") + ")")
    return grown


def _defaults(config: Any) -> dict[str, Any]:
    """The default of each field of a config dataclass that has one (as :func:`to_dict` would write it)."""
    out = {}
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        if dataclasses.is_dataclass(out.get(f.name)):
            out[f.name] = dataclasses.asdict(out[f.name])
    return json.loads(json.dumps(out, default=str))


def _grew(before: Any, after: Any) -> bool:
    return isinstance(before, (int, float)) and isinstance(after, (int, float)) and after > before


_REQUIRED = object()


def read_json(path: str | Path, *, what: str = "settings", default: Any = _REQUIRED) -> dict[str, Any]:
    """The JSON object in ``path`` (``default`` when the file is missing and one is given).

    A missing (without ``default``), unreadable or malformed file, or JSON that is not an object, is a one-line
    error naming the file: the project's ``config.json``, ``store.json`` and ``eval.json`` are all objects.
    """
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        if default is not _REQUIRED:
            return default
        raise FileNotFoundError(f"{path}: no such file (expected {what})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read {what}: {error}") from None
    except ValueError as error:
        raise ConfigError(f"{path}: not valid JSON ({error}); restore the file or rerun what wrote it") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: holds a JSON {type(values).__name__}, not an object ({what}); restore the file "
                          "or rerun what wrote it")
    return values


class WriteError(OSError):
    """A write the user can fix (a full disk, a file where a directory belongs): one line naming the path."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Around a write of ``path``: a full disk or a file in the way becomes a one-line :class:`WriteError`.

    Every atomic writer (JSON, ``.npy``, safetensors, Lightning checkpoints) runs inside one, so ENOSPC from
    numpy or torch reads the same everywhere instead of a traceback from deep inside the library.
    """
    try:
        yield
    except WriteError:
        raise
    except OSError as error:
        if error.errno in DISK_FULL:
            raise WriteError(f"disk full writing {path}: free space or choose another --run-dir / --out") from None
        if error.errno in (errno.ENOTDIR, errno.EISDIR):
            raise WriteError(f"cannot write {path}: {os.strerror(error.errno).lower()}; give a file path whose "
                             "folders are directories") from None
        raise


def save_json_atomic(path: str | Path, payload: Any) -> None:
    """Write JSON via a temp file + rename so a kill never leaves a half-written file.

    The temp name is unique per writer (``.NAME.<random>.tmp``): two writers never share one, so neither
    can rename the other's half-written file or fail on its vanished temp file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with writing(path):
            with open(tmp, "x") as handle:  # "x": never someone else's file; mode from the umask, as a plain write
                handle.write(json.dumps(payload, indent=2, sort_keys=True, default=str))
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # a file in the way of the temp name leaves nothing to remove
            tmp.unlink(missing_ok=True)


def given(**values: Any) -> dict[str, Any]:
    """Only the values that were set (not ``None``), so that defaults downstream apply to the others."""
    return {key: value for key, value in values.items() if value is not None}
