"""What every writing command does with its output path, in one place.

* :func:`check_output` refuses an existing output unless ``--overwrite`` is given, and refuses an output that
  is one of the command's inputs (same resolved path or same inode, or an input inside an output folder that
  would be replaced) even with ``--overwrite``.
* :func:`clean_stale_temporaries` removes the temporaries a killed earlier run of the *same* output left
  beside it (``.NAME.<pid>.*.tmp`` files and ``.NAME.<pid>.*.partial`` folders whose process is gone).
* :func:`check_free_space` refuses up front when the disk cannot hold what is about to be written, and
  :func:`disk_error` turns ENOSPC / EDQUOT / EROFS / EFBIG into one line naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import time
from pathlib import Path
from typing import Iterable

from sim2real.errors import Sim2RealError

#: errno values that mean "the disk cannot take this write" (reported in one line, exit code 2).
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}

#: Temporaries without a pid in their name (written by sim2real < this change) older than this are stale.
LEGACY_TMP_AGE_S = 600.0


def _same(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(child: Path, folder: Path) -> bool:
    try:
        child.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def _is_nonempty(path: Path) -> bool:
    if path.is_dir():
        return any(path.iterdir())
    return path.exists() or path.is_symlink()


def check_output(out: str | Path, inputs: Iterable[str | Path | None] = (), overwrite: bool = False,
                 folder: bool = False, flag: str = "--overwrite") -> bool:
    """Check a command's output path before any work; returns True when it exists (and may be replaced).

    Args:
        out: the output file or folder.
        inputs: paths the command reads (``None`` entries are ignored). A folder counts as an input as a whole:
            an existing output inside it is refused too (pass a run folder's files, not the folder, when writing
            into it is fine).
        overwrite: whether the user passed ``--overwrite``.
        folder: the output is a folder (an existing *empty* folder counts as absent).
        flag: the flag named in the message.

    Raises:
        Sim2RealError: the output is one of the inputs (always), an input lies inside an output folder that
            would be replaced (always), or the output exists without ``overwrite``.
    """
    out = Path(out)
    for inp in inputs:
        if inp is None:
            continue
        p = Path(inp)
        if _same(out, p):
            also = "" if str(p) == str(out) else f" ({p})"
            raise Sim2RealError(f"{out}: is also an input of this command{also}; write the output elsewhere")
        if p.is_dir() and (out.exists() or out.is_symlink()) and _inside(out, p):
            raise Sim2RealError(f"{out}: lies inside the input folder {p}; replacing it would change an input "
                                "(write the output elsewhere)")
        if folder and out.is_dir() and p.exists() and _inside(p, out) and _is_nonempty(out):
            raise Sim2RealError(f"{out}: holds the input {p}; replacing the folder would delete it "
                                "(write the output elsewhere)")
    exists = _is_nonempty(out)
    if exists and not overwrite:
        raise Sim2RealError(f"{out}: already exists (pass {flag} to replace it)")
    if exists and folder and not out.is_dir():
        raise Sim2RealError(f"{out}: exists and is not a folder")
    return exists


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def temp_prefix(path: str | Path) -> str:
    """Prefix of this process's temporaries for ``path``: ``.NAME.<pid>.`` (see :func:`clean_stale_temporaries`)."""
    return f".{Path(path).name}.{os.getpid()}."


def clean_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove temporaries of ``path`` left beside it by killed runs; returns what was removed.

    A temporary is ``.NAME.<pid>.<random><suffix>`` (file or ``.partial`` folder) in ``path``'s folder. It is
    stale when process ``pid`` no longer exists; a live run's temporaries are left alone. Older names without
    a pid are removed once they are :data:`LEGACY_TMP_AGE_S` seconds old.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    head = f".{path.name}."
    pat = re.compile(re.escape(head) + r"(?:(\d+)\.)?[^/]*\.(?:tmp|partial)$")
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for q in entries:
        m = pat.match(q.name)
        if not m:
            continue
        if m.group(1) is not None:
            if _pid_alive(int(m.group(1))):
                continue
        else:
            with contextlib.suppress(OSError):
                if time.time() - q.lstat().st_mtime < LEGACY_TMP_AGE_S:
                    continue
        with contextlib.suppress(OSError):
            if q.is_dir() and not q.is_symlink():
                shutil.rmtree(q)
            else:
                q.unlink()
            removed.append(q)
    return removed


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the file system of ``path`` (or of its nearest existing parent); None if unknown."""
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return int(shutil.disk_usage(p).free)
    except OSError:
        return None


def check_free_space(path: str | Path, needed: int, what: str = "") -> None:
    """Raise a one-line error when the disk holding ``path`` has less than ``needed`` bytes free."""
    free = free_bytes(path)
    if free is not None and needed > free:
        extra = f" ({what})" if what else ""
        raise Sim2RealError(f"{path}: needs about {human_bytes(needed)} of disk space{extra}, but only "
                            f"{human_bytes(free)} is free there; free some space or write elsewhere")


def disk_error(e: OSError, path: str | Path | None = None) -> Sim2RealError | None:
    """A one-line user error for a disk-full / read-only / quota OSError (None for other errors)."""
    if e.errno not in DISK_ERRNOS:
        return None
    where = path if path is not None else (e.filename or "output")
    reason = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
              errno.EROFS: "read-only file system",
              errno.EFBIG: "file too large for this file system or limit"}[e.errno]
    return Sim2RealError(f"{where}: cannot write ({reason}); partial output was removed, finished work is kept "
                         "(free space, then run again; --resume where the command has it)")


def replace_folder(tmp: Path, out: Path) -> None:
    """Move a finished folder ``tmp`` to ``out``, replacing an existing ``out`` (kept until ``tmp`` is in place)."""
    old = None
    if out.exists():
        old = out.with_name(f"{temp_prefix(out)}old.partial")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
