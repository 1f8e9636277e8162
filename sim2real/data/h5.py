"""Read, write and validate sim2real HDF5 files (the contract is :mod:`sim2real.data.schema`).

Reading validates: a file that breaks the contract raises :class:`~sim2real.errors.Sim2RealError`
naming the file and what was expected. Writing is atomic: the file appears complete or not at all.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from sim2real.data import schema
from sim2real.errors import Sim2RealError


@dataclasses.dataclass
class H5Data:
    """The contents of a sim2real HDF5 file, as numpy arrays (absent keys are ``None``).

    Shapes: ``rgb (N,H,W,3) uint8``, ``depth (N,H,W) float32 m``, ``mask (N,H,W) bool``, ``label (N,) int64``,
    ``quat (N,4) float32 wxyz``, ``trans (N,3) float32 m``, ``K (3,3)``, ``class_names [C]``,
    ``model_points (C,P,3) m``, ``diameters (C,) m``, ``extents (C,3) m``, ``symmetries [C]`` (per class a
    :class:`~sim2real.symmetry.Symmetry` or None = not symmetric; the whole field None = unknown, as in files
    without the ``symmetries`` dataset).
    """

    path: str
    rgb: np.ndarray
    depth: np.ndarray | None = None
    mask: np.ndarray | None = None
    label: np.ndarray | None = None
    quat: np.ndarray | None = None
    trans: np.ndarray | None = None
    K: np.ndarray | None = None
    class_names: list[str] | None = None
    model_points: np.ndarray | None = None
    diameters: np.ndarray | None = None
    extents: np.ndarray | None = None
    symmetries: list | None = None
    attrs: dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names is not None else 0

    @property
    def config(self) -> dict:
        """The resolved config that made the file (parsed from the ``config`` attribute)."""
        try:
            return json.loads(self.attrs.get("config", "{}"))
        except (TypeError, ValueError):
            return {}

    def subset(self, index: np.ndarray) -> "H5Data":
        """A new H5Data with the per-sample arrays indexed by ``index``; per-class data shared."""
        kw = {}
        for key in schema.PER_SAMPLE:
            arr = getattr(self, key)
            kw[key] = None if arr is None else arr[index]
        return dataclasses.replace(self, **kw)

    def require(self, *keys: str, why: str = "") -> None:
        """Raise a user error unless every key is present."""
        missing = [k for k in keys if getattr(self, k) is None]
        if missing:
            extra = f" ({why})" if why else ""
            raise Sim2RealError(f"{self.path}: has no {', '.join(repr(k) for k in missing)} dataset{extra}")


def _open(path: str | Path, mode: str = "r"):
    import h5py

    path = Path(path)
    if not path.exists():
        raise Sim2RealError(f"{path}: file not found (expected a sim2real HDF5 file)")
    if path.is_dir():
        raise Sim2RealError(f"{path}: is a folder (expected a sim2real HDF5 file)")
    try:
        return h5py.File(path, mode)
    except OSError:
        raise Sim2RealError(f"{path}: not a readable HDF5 file (corrupt or another format)") from None


def _decode_names(arr: Any) -> list[str]:
    return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in np.asarray(arr).tolist()]


def _decode_symmetries(raw: Any, path: Path) -> list:
    """The ``symmetries`` dataset (a JSON string) -> per-class list of Symmetry | None; one-line errors."""
    from sim2real.symmetry import symmetries_from_json

    text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    try:
        items = json.loads(text)
    except ValueError:
        raise Sim2RealError(f"{path}: 'symmetries' is not valid JSON (expected a list, one entry per class)") from None
    return symmetries_from_json(items, f"{path}: 'symmetries'")


def _encode_symmetries(symmetries: list) -> str:
    from sim2real.symmetry import Symmetry, symmetries_to_json

    bad = [i for i, s in enumerate(symmetries) if s is not None and not isinstance(s, Symmetry)]
    if bad:
        raise ValueError(f"write: symmetries[{bad[0]}] must be a sim2real.symmetry.Symmetry or None")
    return json.dumps(symmetries_to_json(symmetries))


def read_attrs(path: str | Path) -> dict:
    """File attributes only (cheap)."""
    with _open(path) as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


def read(path: str | Path, keys: Iterable[str] | None = None, validate: bool = True) -> H5Data:
    """Load a sim2real HDF5 file into memory, validating it against the schema.

    Args:
        path: the file.
        keys: per-sample keys to load (default: all present). ``rgb`` and the per-class data are always loaded.
        validate: check the contract (shapes, dtypes, unit quaternions, labels in range, mask vs depth).

    Raises:
        Sim2RealError: missing, unreadable or non-conforming file.
    """
    path = Path(path)
    with _open(path) as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        present = set(f.keys())
        if "rgb" not in present:
            raise Sim2RealError(f"{path}: has no 'rgb' dataset (expected a sim2real HDF5 file, schema {schema.SCHEMA_VERSION})")
        wanted = set(schema.PER_SAMPLE) if keys is None else set(keys) | {"rgb"}
        kw: dict[str, Any] = {}
        try:
            for key in schema.PER_SAMPLE:
                if key in present and key in wanted:
                    kw[key] = f[key][()]
            for key in ("K", "model_points", "diameters", "extents"):
                if key in present:
                    kw[key] = f[key][()]
            if "class_names" in present:
                kw["class_names"] = _decode_names(f["class_names"][()])
            if "symmetries" in present:
                kw["symmetries"] = _decode_symmetries(f["symmetries"][()], path)
        except OSError:
            raise Sim2RealError(f"{path}: HDF5 data cannot be read (file truncated or corrupt)") from None
    data = H5Data(path=str(path), attrs=attrs, **kw)
    if validate:
        validate_data(data)
    return data


def validate_data(d: H5Data) -> None:
    """Check an :class:`H5Data` against the contract; raise a one-line :class:`Sim2RealError` on the first problem."""
    p = d.path
    v = d.attrs.get("schema_version")
    if v is None:
        raise Sim2RealError(f"{p}: no 'schema_version' attribute (expected a sim2real HDF5 file, schema {schema.SCHEMA_VERSION})")
    try:
        file_major = schema.major(v)
    except ValueError:
        raise Sim2RealError(f"{p}: malformed schema_version {v!r}") from None
    if file_major != schema.major(schema.SCHEMA_VERSION):
        raise Sim2RealError(f"{p}: schema version {v} is not readable by this sim2real (expects {schema.SCHEMA_VERSION})")
    dom = d.attrs.get("domain")
    if dom not in schema.DOMAINS:
        raise Sim2RealError(f"{p}: attribute domain={dom!r}, expected one of {', '.join(schema.DOMAINS)}")
    rgb = d.rgb
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise Sim2RealError(f"{p}: 'rgb' must be uint8 (N, H, W, 3), got {rgb.dtype} {rgb.shape}")
    n, h, w = rgb.shape[:3]
    if n == 0:
        raise Sim2RealError(f"{p}: contains no samples")
    for key, (_, dtype) in schema.PER_SAMPLE.items():
        arr = getattr(d, key)
        if arr is None or key == "rgb":
            continue
        exp = schema.expected_shape(key, n, h, w)
        if arr.shape != exp:
            raise Sim2RealError(f"{p}: '{key}' has shape {arr.shape}, expected {exp}")
        if key == "label":
            if not np.issubdtype(arr.dtype, np.integer):
                raise Sim2RealError(f"{p}: 'label' must be integer, got {arr.dtype}")
        elif arr.dtype != dtype:
            raise Sim2RealError(f"{p}: '{key}' must be {np.dtype(dtype).name}, got {arr.dtype}")
    if d.label is not None:
        if d.class_names is None:
            raise Sim2RealError(f"{p}: has 'label' but no 'class_names'")
        c = len(d.class_names)
        if d.label.min() < 0 or d.label.max() >= c:
            raise Sim2RealError(f"{p}: labels must lie in [0, {c}), found {int(d.label.min())}..{int(d.label.max())}")
    if d.quat is not None:
        if not np.all(np.isfinite(d.quat)):
            raise Sim2RealError(f"{p}: 'quat' has non-finite values")
        norms = np.linalg.norm(d.quat.astype(np.float64), axis=1)
        bad = np.abs(norms - 1) > schema.QUAT_NORM_TOL
        if bad.any():
            raise Sim2RealError(f"{p}: 'quat' must be unit quaternions; sample {int(np.argmax(bad))} has norm {norms[bad][0]:.4f}")
        if (d.quat[:, 0] < -1e-6).any():
            raise Sim2RealError(f"{p}: 'quat' must have w >= 0 (canonical); sample {int(np.argmax(d.quat[:, 0] < -1e-6))} has w < 0")
    if d.trans is not None:
        if not np.all(np.isfinite(d.trans)):
            raise Sim2RealError(f"{p}: 'trans' has non-finite values")
        behind = d.trans[:, 2] <= 0
        if behind.any():
            i = int(np.argmax(behind))
            raise Sim2RealError(f"{p}: 'trans' must put the object in front of the camera (z > 0 m, OpenCV); "
                                f"sample {i} has z = {float(d.trans[i, 2])}")
    if d.depth is not None:
        if not np.all(np.isfinite(d.depth)) or (d.depth < 0).any():
            raise Sim2RealError(f"{p}: 'depth' must be finite and >= 0 (metres, 0 = background)")
    if d.mask is not None and d.depth is not None:
        mism = d.mask != (d.depth > 0)
        if mism.any():
            i = int(np.argmax(mism.reshape(n, -1).any(axis=1)))
            raise Sim2RealError(f"{p}: 'mask' disagrees with depth > 0 in sample {i} (mask must be the z-buffer foreground)")
    if d.K is not None:
        if d.K.shape != (3, 3):
            raise Sim2RealError(f"{p}: 'K' has shape {d.K.shape}, expected (3, 3)")
        if not np.all(np.isfinite(d.K)) or not (d.K[0, 0] > 0 and d.K[1, 1] > 0):
            raise Sim2RealError(f"{p}: 'K' must be finite with fx, fy > 0 (OpenCV intrinsics), got {d.K.reshape(9).tolist()}")
    for key, low in (("model_points", None), ("diameters", "positive"), ("extents", "non-negative")):
        arr = getattr(d, key)
        if arr is None:
            continue
        if not np.all(np.isfinite(arr)):
            raise Sim2RealError(f"{p}: '{key}' has non-finite values (NaN or infinity)")
        if low == "positive" and (arr <= 0).any():
            raise Sim2RealError(f"{p}: '{key}' must be positive (metres), got {float(arr.min())}")
        if low == "non-negative" and (arr < 0).any():
            raise Sim2RealError(f"{p}: '{key}' must be >= 0 (metres), got {float(arr.min())}")
    if d.class_names is not None:
        c = len(d.class_names)
        if len(set(d.class_names)) != c:
            raise Sim2RealError(f"{p}: 'class_names' has duplicates")
        if d.model_points is not None and (d.model_points.ndim != 3 or d.model_points.shape[0] != c or d.model_points.shape[2] != 3):
            raise Sim2RealError(f"{p}: 'model_points' has shape {d.model_points.shape}, expected ({c}, P, 3)")
        if d.diameters is not None and d.diameters.shape != (c,):
            raise Sim2RealError(f"{p}: 'diameters' has shape {d.diameters.shape}, expected ({c},)")
        if d.extents is not None and d.extents.shape != (c, 3):
            raise Sim2RealError(f"{p}: 'extents' has shape {d.extents.shape}, expected ({c}, 3)")
    if d.symmetries is not None:
        if d.class_names is None:
            raise Sim2RealError(f"{p}: has 'symmetries' but no 'class_names'")
        if len(d.symmetries) != len(d.class_names):
            raise Sim2RealError(f"{p}: 'symmetries' has {len(d.symmetries)} entries, expected one per class "
                                f"({len(d.class_names)})")


def make_attrs(domain: str, config: Any, seed: int, **extra: Any) -> dict:
    """The file attributes every writer records: schema and package version, config, seed, domain, time."""
    from sim2real import __version__
    from sim2real.config import to_json

    if domain not in schema.DOMAINS:
        raise ValueError(f"domain must be one of {schema.DOMAINS}, got {domain!r}")
    cfg = config if isinstance(config, str) else (json.dumps(config, sort_keys=True) if isinstance(config, dict) else to_json(config))
    attrs = {
        "schema_version": schema.SCHEMA_VERSION,
        "sim2real_version": __version__,
        "domain": domain,
        "seed": int(seed),
        "config": cfg,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    for k, v in extra.items():
        attrs[k] = v if isinstance(v, (str, int, float)) else json.dumps(v, sort_keys=True)
    return attrs


def write(path: str | Path, arrays: dict[str, np.ndarray], attrs: dict, class_names: list[str] | None = None,
          compression: str | None = "lzf", extra: dict[str, np.ndarray] | None = None,
          symmetries: list | None = None) -> Path:
    """Write a complete sim2real HDF5 file atomically (temp file, then rename).

    Args:
        path: output file.
        arrays: per-sample arrays (``rgb`` required) plus optional ``K``, ``model_points``, ``diameters``, ``extents``.
            Dtypes are cast to the schema's; quaternions are canonicalised (unit, w >= 0).
        attrs: from :func:`make_attrs`.
        class_names: class id -> name (required when ``label`` is given).
        compression: ``"lzf"`` (fast, default), ``"gzip"`` or ``None`` for the image-like datasets.
        extra: extension datasets written as given, outside the schema (e.g. ``K_per_sample``).
        symmetries: per class a :class:`~sim2real.symmetry.Symmetry` or None (not symmetric), stored as the
            ``symmetries`` JSON dataset; None (default) = unknown, nothing stored. May also be given as
            ``arrays["symmetries"]`` (so loops that copy per-class data by key carry it).

    The data are validated against the schema before writing, and the written structure is checked before the
    file is moved into place. The file is built in memory (HDF5's core driver) and written to disk with plain
    writes: a full disk is then an ordinary ``OSError`` naming the file (HDF5 itself crashes on ENOSPC), and
    there is a free-space check before anything is written.
    """
    import h5py

    from sim2real.conventions import canonical_quat
    from sim2real.utils import atomic_write_bytes

    arrays = dict(arrays)
    if "symmetries" in arrays:
        from_arrays = arrays.pop("symmetries")
        symmetries = from_arrays if symmetries is None else symmetries
    unknown = set(arrays) - set(schema.ALL_KEYS)
    if unknown:
        raise ValueError(f"write: unknown dataset keys {sorted(unknown)}")
    if "rgb" not in arrays:
        raise ValueError("write: 'rgb' is required")
    path = Path(path)
    cast: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        if value is None:
            continue
        arr = np.asarray(value)
        if key in schema.PER_SAMPLE:
            if key == "quat" and len(arr):
                arr = canonical_quat(arr)
            cast[key] = np.ascontiguousarray(arr, dtype=schema.PER_SAMPLE[key][1])
        else:
            cast[key] = np.asarray(arr, dtype=np.float32)
    # Validate in memory first (the same checks as read()): a bad file is never written, and the file is not
    # read back in full afterwards (that doubled the cost of writing a large render).
    sym_json = None if symmetries is None else _encode_symmetries(list(symmetries))
    validate_data(H5Data(path=str(path), attrs=dict(attrs), class_names=None if class_names is None else list(class_names),
                         symmetries=None if symmetries is None else list(symmetries), **cast))

    with h5py.File(f"{path.name}.in-memory", "w", driver="core", backing_store=False, block_size=1 << 22) as f:
        for key, arr in cast.items():
            big = key in schema.PER_SAMPLE and arr.ndim >= 3 and len(arr)
            f.create_dataset(key, data=arr, chunks=(1,) + arr.shape[1:] if big else None,
                             compression=compression if big else None)
        for key, arr in (extra or {}).items():
            f.create_dataset(key, data=np.asarray(arr))
        if class_names is not None:
            f.create_dataset("class_names", data=np.array(list(class_names), dtype=h5py.string_dtype()))
        if sym_json is not None:
            f.create_dataset("symmetries", data=sym_json, dtype=h5py.string_dtype())
        for k, v in attrs.items():
            f.attrs[k] = v
        f.flush()
        image = f.id.get_file_image()
    # structure re-read from disk before the file becomes visible
    atomic_write_bytes(path, image, suffix=".h5.tmp", what="the HDF5 file", verify=lambda tmp: _check_written(tmp, cast))
    return path


def _check_written(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Re-open a just-written file and compare every dataset's shape and dtype with what was meant (metadata only)."""
    with _open(path) as f:
        for key, arr in arrays.items():
            ds = f.get(key)
            if ds is None or ds.shape != arr.shape or ds.dtype != arr.dtype:
                got = "missing" if ds is None else f"{ds.shape} {ds.dtype}"
                raise OSError(f"{path}: dataset {key!r} written as {got}, expected {arr.shape} {arr.dtype}")
