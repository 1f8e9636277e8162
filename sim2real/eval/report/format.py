"""Cell formatting for the report: shares, degrees, missing values, JSON-safe values, file-name slugs."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np


def valid(v: Any) -> bool:
    """A value to show: not None and, for floats, finite."""
    return v is not None and not (isinstance(v, float) and not math.isfinite(v))


def pct(v: Any, digits: int = 1) -> str:
    """0.987 -> '98.7%'; missing -> '–'."""
    if not valid(v):
        return "–"
    text = f"{100 * v:.{digits}f}"
    return ("0" if float(text) == 0 else text) + "%"  # no "-0%"


def deg(v: Any) -> str:
    """12.34 -> '12.3°'; missing -> '–'."""
    return f"{v:.1f}°" if valid(v) else "–"


def json_safe(obj: Any) -> Any:
    """NaN/inf -> None, numpy -> python, recursively (valid JSON for any reader)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def slug(name: str) -> str:
    """A model name as a file-name part (figures)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def lookup(m: dict | None, key: str):
    """``m[key]``, or ``m[a][b]`` for ``key = "a.b"``; None where missing."""
    if m is None:
        return None
    if "." in key:
        a, b = key.split(".", 1)
        return (m.get(a) or {}).get(b)
    return m.get(key)
