"""Small shared helpers: atomic writes, progress bars, version records."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

from sim2real.errors import Sim2RealError

T = TypeVar("T")


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed; after a kill it is left as ``.NAME.<pid>.XXXX.tmp``, and the
    next write of the same ``path`` removes it. ``path`` keeps its previous content: a half-written file never
    looks valid.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise Sim2RealError(f"{path}: the output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise Sim2RealError(f"{path}: the output folder {parent} is not writable")
    from sim2real.outputs import clean_stale_temporaries, temp_prefix

    clean_stale_temporaries(path)  # what a killed earlier write of this same path left behind
    # the pid in the name tells a later run whether the writer is still alive (sim2real.outputs)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=suffix or ".tmp", dir=parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files: give the result the permissions of a normal new file
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes | memoryview, suffix: str | None = None, what: str = "",
                       verify=None) -> None:
    """Write bytes to ``path`` atomically (free-space check, temp file + fsync + rename).

    Args:
        suffix: suffix of the temporary file (e.g. ``".h5.tmp"``).
        what: what is written, for the out-of-space message (``"the checkpoint"``).
        verify: optional ``verify(tmp_path)`` run on the written temporary file before it replaces ``path``.

    An ``OSError`` while writing (disk full, read-only...) is re-raised naming ``path``, not the temporary file.
    """
    from sim2real.outputs import check_free_space

    check_free_space(path, len(data), what)
    with atomic_path(path, suffix=suffix) as tmp:
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(path)) from None
        if verify is not None:
            verify(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def progress(iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "", unit: str = "it",
             initial: int = 0, disable: bool | None = None):
    """A tqdm progress bar (rate and ETA) on stderr; quiet when stderr is not a terminal unless forced.

    Set ``SIM2REAL_PROGRESS=1`` to force it on (e.g. in logs), ``0`` to turn it off. On a terminal the bar is
    transient (cleared when it closes): commands print their own summary line, and an error line then comes
    alone, never after a stale bar.
    """
    from tqdm.auto import tqdm

    env = os.environ.get("SIM2REAL_PROGRESS")
    if disable is None:
        disable = (env == "0") if env is not None else not _stderr_is_tty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable,
                dynamic_ncols=True, mininterval=0.5, smoothing=0.1, file=sys.stderr, leave=env == "1")


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def versions() -> dict:
    """Versions recorded into every artifact."""
    from sim2real import __version__

    out = {"sim2real": __version__, "python": platform.python_version()}
    for mod in ("numpy", "h5py", "torch", "kornia", "trimesh", "pyrender"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", "unknown")
    return out
