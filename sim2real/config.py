"""Typed configs: dataclasses loaded from YAML, with ``--set key=value`` overrides.

Each stage defines its own config dataclass (``RenderConfig`` in :mod:`sim2real.render.config`, the adapt
and pose configs beside their trainers) and loads it with :func:`load_config`. Unknown keys and values
of the wrong type are user errors (:class:`~sim2real.errors.Sim2RealError`) naming the file and the key.
A dataclass may define ``validate(self)`` to check value ranges; it is called after loading, nested
sections first.

Named configs shipped with the package live in ``sim2real/configs/NAME.yaml``; ``--config NAME`` finds them.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from sim2real.errors import Sim2RealError

T = TypeVar("T")

CONFIG_DIR = Path(__file__).parent / "configs"


def named_configs() -> list[str]:
    """Names of the configs shipped in ``sim2real/configs``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config file path, or the shipped config of that name (``pixelda-linemod``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    raise Sim2RealError(
        f"{name_or_path}: no such config file, and no shipped config of that name (shipped: {', '.join(named_configs())})"
    )


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing, unreadable or non-mapping file is a one-line user error."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise Sim2RealError(f"{path}: file not found (expected a YAML config)") from None
    except OSError as e:
        raise Sim2RealError(f"{path}: cannot read ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise Sim2RealError(f"{path}: invalid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise Sim2RealError(f"{path}: expected a YAML mapping of config keys, got {type(data).__name__}")
    return data


def check_range(name: str, r: tuple[float, float], lo: float | None = None, hi: float | None = None) -> None:
    """Validate a ``[low, high]`` config range (optionally within ``[lo, hi]``); one-line error naming the key."""
    if r[0] > r[1]:
        raise Sim2RealError(f"{name}: range {list(r)} must be [low, high] with low <= high")
    if lo is not None and r[0] < lo:
        raise Sim2RealError(f"{name}: {r[0]} is below the minimum {lo}")
    if hi is not None and r[1] > hi:
        raise Sim2RealError(f"{name}: {r[1]} is above the maximum {hi}")


def parse_overrides(sets: list[str] | None) -> dict:
    """``["a.b=3", "c=[1, 2]"]`` -> nested dict; values parsed as YAML scalars/lists."""
    out: dict = {}
    for item in sets or []:
        if "=" not in item:
            raise Sim2RealError(f"--set {item}: expected key=value (e.g. --set n_samples=100)")
        key, _, raw = item.partition("=")
        key = key.strip()
        if not key:
            raise Sim2RealError(f"--set {item}: empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise Sim2RealError(f"--set {item}: '{part}' is set both as a value and as a section")
        node[parts[-1]] = value
    return out


def deep_merge(base: dict, override: dict) -> dict:
    """Recursively merge ``override`` into a copy of ``base``."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _type_name(tp: Any) -> str:
    """A config type in words, for error messages: ``int | tuple[int, int]`` -> "an integer or a list of 2 integers"."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        words = [_type_name(a) for a in get_args(tp) if a is not type(None)]
        if type(None) in get_args(tp):
            words.append("null")
        return " or ".join(dict.fromkeys(words))
    if origin is Literal:
        return "one of " + ", ".join(map(repr, get_args(tp)))
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        if origin is tuple and args and Ellipsis not in get_args(tp):
            if len(set(args)) == 1:
                return f"a list of {len(args)} {_plural(args[0])}"
            return f"a list [{', '.join(_type_name(a) for a in args)}]"
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a section (mapping)"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", None) or str(tp).replace("typing.", ""))


def _plural(tp: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(tp, f"values ({_type_name(tp)})")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except Sim2RealError as e:
                errors.append(str(e))
        raise Sim2RealError(errors[0] if len(errors) == 1 else f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise Sim2RealError(f"{where}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise Sim2RealError(f"{where}: expected a section (mapping), got {value!r}")
        return _from_dict(tp, value, where)
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise Sim2RealError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise Sim2RealError(f"{where}: expected a list of {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        elem = args[0] if args else Any
        items = [_coerce(v, elem, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise Sim2RealError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise Sim2RealError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise Sim2RealError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Sim2RealError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise Sim2RealError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _from_dict(cls: type[T], data: dict, where: str) -> T:
    migrate = getattr(cls, "migrate_legacy", None)  # a config whose keys moved reads its older files
    if callable(migrate):
        data = migrate(data)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise Sim2RealError(
            f"{where}: unknown config key '{unknown[0]}' (known keys: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{where}.{name}" if where else name)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except Sim2RealError as e:
            raise Sim2RealError(f"{where}: {e}" if where and not str(e).startswith(where) else str(e)) from None
    return obj


def from_dict(cls: type[T], data: dict, source: str = "config") -> T:
    """Build a config dataclass from a mapping; ``source`` names the file for error messages."""
    return _from_dict(cls, data, source)


def to_dict(cfg: Any) -> dict:
    """A config dataclass as plain (JSON/YAML-serialisable) data."""
    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return conv(cfg)


def to_json(cfg: Any) -> str:
    """Canonical JSON of a config (sorted keys): what files record and what hashes are taken of."""
    return json.dumps(to_dict(cfg), sort_keys=True)


def load_config(cls: type[T], path: str | Path | None = None, sets: list[str] | None = None,
                defaults: Any = None) -> T:
    """Load ``cls`` from a YAML file (or a shipped config name), then apply ``--set`` overrides.

    Args:
        cls: the config dataclass.
        path: YAML file or shipped config name; ``None`` uses the dataclass defaults (or ``defaults``).
        sets: ``["key=value", "section.key=value"]`` overrides, applied after the file.
        defaults: values under the file, for configs whose defaults differ from the dataclass's own (e.g.
            ``make-target``'s stand-in render section): a mapping, a config dataclass instance, or a YAML file /
            shipped config name. The file is deep-merged over them (a partial section keeps the defaults' other
            keys), then ``sets`` over that. ``None``: nothing under the file.
    """
    migrate = getattr(cls, "migrate_legacy", None) or (lambda d: d)  # each part on its own, before merging
    data: dict = migrate(_defaults_data(defaults))
    source = "defaults"
    if path is not None:
        p = resolve_config_path(path)
        data = deep_merge(data, migrate(read_yaml(p)))
        source = str(p)
    over = migrate(parse_overrides(sets))
    if over:
        data = deep_merge(data, over)
        source = f"{source} + --set" if path is not None else "--set"
    return from_dict(cls, data, source)


def _defaults_data(defaults: Any) -> dict:
    """The ``defaults=`` of :func:`load_config` as a plain mapping."""
    if defaults is None:
        return {}
    if dataclasses.is_dataclass(defaults) and not isinstance(defaults, type):
        return to_dict(defaults)
    if isinstance(defaults, dict):
        return to_dict(defaults)
    if isinstance(defaults, (str, Path)):
        return read_yaml(resolve_config_path(defaults))
    raise TypeError(f"load_config: defaults must be a mapping, a config dataclass instance or a config name/path, "
                    f"got {type(defaults).__name__}")


def dump_yaml(cfg: Any, path: str | Path) -> None:
    """Write a config as YAML (atomically)."""
    from sim2real.utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
