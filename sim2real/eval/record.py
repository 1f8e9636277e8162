"""The typed ``metrics.json`` record that ``sim2real evaluate`` writes (layout: docs/evaluation.md, "metrics.json").

:class:`ReportRecord` is the whole file: the test set, one :class:`ModelRecord` per model (in command-line order),
the chance baseline, the :class:`GapClosedRecord` section, the memorisation summary, warnings, notes and figures.
``metrics_version`` is the schema version (it changes when the layout does); :func:`read` accepts only the
versions it knows and checks every key it types, so a bad file is one :class:`~sim2real.errors.Sim2RealError`
line naming it.

``to_dict`` gives back exactly what ``from_dict`` read, key order included (the order is part of the documented
layout): keys that have no typed field here stay in ``extra``, at their place. Angles in degrees, shares in [0, 1],
NaN as ``None`` (``null``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from sim2real.errors import Sim2RealError
from sim2real.eval.report import METRICS_VERSION

#: The ``metrics_version`` values this module reads.
SUPPORTED_VERSIONS = (METRICS_VERSION,)

_TOP_KEYS = ("metrics_version", "created", "versions", "test_set", "thresholds_deg", "models", "chance", "gap_closed",
             "memorisation", "warnings", "notes", "figures")


def _number(v: Any, where: str) -> float | None:
    """A JSON number or null (NaN is written as null), else a one-line error. Kept as written (an int stays one)."""
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise Sim2RealError(f"{where}: expected a number or null, got {type(v).__name__} {v!r}")
    return v


def _string(v: Any, where: str, optional: bool = False) -> str | None:
    if v is None and optional:
        return None
    if not isinstance(v, str):
        raise Sim2RealError(f"{where}: expected a string, got {type(v).__name__} {v!r}")
    return v


def _mapping(v: Any, where: str, optional: bool = False) -> dict | None:
    if v is None and optional:
        return None
    if not isinstance(v, dict):
        raise Sim2RealError(f"{where}: expected an object, got {type(v).__name__}")
    return v


def _strings(v: Any, where: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise Sim2RealError(f"{where}: expected a list of strings")
    return list(v)


@dataclasses.dataclass
class ModelRecord:
    """One model's entry in ``metrics.json``: ``models[i]``."""

    name: str
    """The name shown in the report (``NAME=PATH``, else the run's)."""
    path: str
    """The run folder or checkpoint evaluated."""
    kind: str
    """``pose`` (a train-pose run) or ``pixelda`` (an adapt run's task network)."""
    role: str
    """``source-only``, ``adapted``, ``pixelda``, ``semi-supervised`` or ``target-only``."""
    accuracy: float | None
    """Share of test images with the right class, in [0, 1]."""
    mean_angle_deg: float | None = None
    """Mean rotation error over all test images, degrees (None: absent without poses, or NaN)."""
    median_angle_deg: float | None = None
    mean_angle_sym_deg: float | None = None
    """Symmetry-aware mean rotation error, degrees."""
    median_angle_sym_deg: float | None = None
    checkpoint: str | None = None
    """The checkpoint file used."""
    step: int | None = None
    """Its training step."""
    warnings: list[str] = dataclasses.field(default_factory=list)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Every other key as written (run facts, ``confusion``, ``per_class``, ``acc_at_deg``, ``rotation_verdict``...)."""
    keys: tuple[str, ...] = dataclasses.field(default=(), compare=False, repr=False)
    """The keys in file order (empty: typed fields first, then ``extra``)."""

    _TYPED = ("name", "path", "kind", "role", "accuracy", "mean_angle_deg", "median_angle_deg", "mean_angle_sym_deg",
              "median_angle_sym_deg", "checkpoint", "step", "warnings")
    _OPTIONAL = ("mean_angle_deg", "median_angle_deg", "mean_angle_sym_deg", "median_angle_sym_deg", "checkpoint", "step")

    @property
    def has_pose(self) -> bool:
        """Whether rotation metrics were computed (the test set and the model have poses)."""
        return bool(self.extra.get("has_pose", self.mean_angle_deg is not None))

    @property
    def symmetry_known(self) -> bool:
        """Whether the test set carried symmetry annotations (else the ``*_sym`` errors equal the plain ones)."""
        return bool(self.extra.get("symmetry_known"))

    @classmethod
    def from_dict(cls, d: Any, where: str = "models[]") -> ModelRecord:
        d = _mapping(d, where)
        for k in ("name", "path", "kind", "role", "accuracy"):
            if k not in d:
                raise Sim2RealError(f"{where}: missing key '{k}'")
        step = d.get("step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise Sim2RealError(f"{where}.step: expected an integer or null, got {step!r}")
        return cls(name=_string(d["name"], f"{where}.name"), path=_string(d["path"], f"{where}.path"),
                   kind=_string(d["kind"], f"{where}.kind"), role=_string(d["role"], f"{where}.role"),
                   accuracy=_number(d["accuracy"], f"{where}.accuracy"),
                   mean_angle_deg=_number(d.get("mean_angle_deg"), f"{where}.mean_angle_deg"),
                   median_angle_deg=_number(d.get("median_angle_deg"), f"{where}.median_angle_deg"),
                   mean_angle_sym_deg=_number(d.get("mean_angle_sym_deg"), f"{where}.mean_angle_sym_deg"),
                   median_angle_sym_deg=_number(d.get("median_angle_sym_deg"), f"{where}.median_angle_sym_deg"),
                   checkpoint=_string(d.get("checkpoint"), f"{where}.checkpoint", optional=True), step=step,
                   warnings=_strings(d.get("warnings", []), f"{where}.warnings"),
                   extra={k: v for k, v in d.items() if k not in cls._TYPED}, keys=tuple(d))

    def to_dict(self) -> dict[str, Any]:
        typed = {k: getattr(self, k) for k in self._TYPED}
        typed["warnings"] = list(self.warnings)
        order = list(self.keys) or [*self._TYPED, *self.extra]
        out: dict[str, Any] = {}
        for k in [*order, *self._TYPED, *self.extra]:
            if k in out:
                continue
            if k in typed:
                # an optional metric nobody wrote stays absent (angle keys exist only with has_pose)
                if k in self._OPTIONAL and typed[k] is None and k not in self.keys:
                    continue
                out[k] = typed[k]
            elif k in self.extra:
                out[k] = self.extra[k]
        return out


@dataclasses.dataclass
class GapClosedRecord:
    """``gap_closed``: the share of the source-only -> target-only gap each model closes, per metric."""

    source_only: str
    """The baseline model's name."""
    target_only: str
    """The upper bound's name."""
    noise_z: float
    """A gap within ``noise_z`` standard errors is noise (its shares are null)."""
    significance: dict[str, Any]
    """Per metric: the noise test (``{test, gap, se, threshold, significant, reason}``) or null."""
    reasons: dict[str, str | None]
    """Per metric: why every share is null, or null where shares are given."""
    models: dict[str, dict[str, float | None]]
    """``{model name: {metric: share (1.0 = 100 %) or None}}``."""

    def share(self, model: str, metric: str = "accuracy") -> float | None:
        """The share of the gap ``model`` closes on ``metric`` (None: undefined, within noise, or no such model)."""
        return (self.models.get(model) or {}).get(metric)

    @classmethod
    def from_dict(cls, d: Any, where: str = "gap_closed") -> GapClosedRecord:
        d = _mapping(d, where)
        for k in ("source_only", "target_only", "noise_z", "significance", "reasons", "models"):
            if k not in d:
                raise Sim2RealError(f"{where}: missing key '{k}'")
        models = _mapping(d["models"], f"{where}.models")
        shares = {}
        for name, row in models.items():
            row = _mapping(row, f"{where}.models.{name}")
            shares[name] = {k: _number(v, f"{where}.models.{name}.{k}") for k, v in row.items()}
        return cls(source_only=_string(d["source_only"], f"{where}.source_only"),
                   target_only=_string(d["target_only"], f"{where}.target_only"),
                   noise_z=_number(d["noise_z"], f"{where}.noise_z"),
                   significance=_mapping(d["significance"], f"{where}.significance"),
                   reasons=_mapping(d["reasons"], f"{where}.reasons"), models=shares)

    def to_dict(self) -> dict[str, Any]:
        return {"source_only": self.source_only, "target_only": self.target_only, "noise_z": self.noise_z,
                "significance": self.significance, "reasons": self.reasons,
                "models": {n: dict(row) for n, row in self.models.items()}}


@dataclasses.dataclass
class ReportRecord:
    """The whole ``metrics.json``; the fields in file order (every one always written, null where it does not apply)."""

    metrics_version: int
    """The schema version (:data:`SUPPORTED_VERSIONS`)."""
    created: str
    """UTC time of writing, ISO 8601."""
    versions: dict[str, Any]
    """Package versions (sim2real, torch, numpy, ...)."""
    test_set: dict[str, Any] | None
    """``path``, ``n``, ``domain``, ``class_names``, ``image_size``, ``has_pose``, ``has_add`` (None: no models)."""
    thresholds_deg: list[float]
    """The X of acc@X degrees."""
    models: list[ModelRecord]
    chance: dict[str, Any] | None
    """The constant-rotation baseline (None without poses)."""
    gap_closed: GapClosedRecord | None
    """None without a source-only and a target-only model."""
    memorisation: dict[str, Any] | None
    warnings: list[str]
    notes: list[str]
    figures: list[str]
    """PNG file names under ``figures/``."""

    def model(self, name: str) -> ModelRecord:
        hit = [m for m in self.models if m.name == name]
        if not hit:
            raise Sim2RealError(f"metrics: no model named {name!r} (models: {', '.join(m.name for m in self.models)})")
        return hit[0]

    @classmethod
    def from_dict(cls, d: Any) -> ReportRecord:
        """Check and type a ``metrics.json`` mapping; a problem is a :class:`Sim2RealError` naming the key."""
        d = _mapping(d, "top level")
        version = d.get("metrics_version")
        if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
            raise Sim2RealError(f"metrics_version {version!r}: expected one of {', '.join(map(str, SUPPORTED_VERSIONS))}")
        missing = [k for k in _TOP_KEYS if k not in d]
        if missing:
            raise Sim2RealError(f"missing key '{missing[0]}'")
        unknown = [k for k in d if k not in _TOP_KEYS]
        if unknown:
            raise Sim2RealError(f"unknown key '{unknown[0]}'")
        if not isinstance(d["models"], list):
            raise Sim2RealError(f"models: expected a list, got {type(d['models']).__name__}")
        thresholds = d["thresholds_deg"]
        if not isinstance(thresholds, list):
            raise Sim2RealError("thresholds_deg: expected a list of numbers")
        return cls(metrics_version=version, created=_string(d["created"], "created"),
                   versions=_mapping(d["versions"], "versions"), test_set=_mapping(d["test_set"], "test_set", optional=True),
                   thresholds_deg=[_number(t, "thresholds_deg[]") for t in thresholds],
                   models=[ModelRecord.from_dict(m, f"models[{i}]") for i, m in enumerate(d["models"])],
                   chance=_mapping(d["chance"], "chance", optional=True),
                   gap_closed=None if d["gap_closed"] is None else GapClosedRecord.from_dict(d["gap_closed"]),
                   memorisation=_mapping(d["memorisation"], "memorisation", optional=True),
                   warnings=_strings(d["warnings"], "warnings"), notes=_strings(d["notes"], "notes"),
                   figures=_strings(d["figures"], "figures"))

    def to_dict(self) -> dict[str, Any]:
        return {"metrics_version": self.metrics_version, "created": self.created, "versions": self.versions,
                "test_set": self.test_set, "thresholds_deg": list(self.thresholds_deg),
                "models": [m.to_dict() for m in self.models], "chance": self.chance,
                "gap_closed": None if self.gap_closed is None else self.gap_closed.to_dict(),
                "memorisation": self.memorisation, "warnings": list(self.warnings), "notes": list(self.notes),
                "figures": list(self.figures)}

    def write(self, path: str | Path) -> Path:
        """Write the record as strict JSON (NaN as null), atomically: a reader never sees half a file."""
        from sim2real.utils import atomic_write_text

        path = Path(path)
        atomic_write_text(path, json.dumps(_finite(self.to_dict()), indent=2, allow_nan=False))
        return path


def _finite(obj: Any) -> Any:
    """NaN / inf -> None, recursively (``write`` must give valid JSON for any reader)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def read(path: str | Path) -> ReportRecord:
    """Read and check ``metrics.json``.

    Raises:
        Sim2RealError: ``"<path>: ..."`` in one line: unreadable, not JSON, an unknown ``metrics_version``, a
            missing key or a value of the wrong type.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise Sim2RealError(f"{path}: cannot read metrics.json ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise Sim2RealError(f"{path}: not a metrics.json file (not UTF-8 text)") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise Sim2RealError(f"{path}: not a metrics.json file (invalid JSON: {e})") from None
    try:
        return ReportRecord.from_dict(data)
    except Sim2RealError as e:
        raise Sim2RealError(f"{path}: not a valid metrics.json: {e}") from None
