"""The project's user-facing exception.

Errors a user can cause (bad path, wrong shape, unknown class, corrupt file, invalid config value)
raise :class:`Sim2RealError` with a message that names the file and what was expected.
The CLI prints it on one line and exits with code 2; no traceback.
"""

from __future__ import annotations


class Sim2RealError(ValueError):
    """A problem with the user's input, reported in one line by the CLI (exit code 2)."""


def fail(path: object, expected: str) -> Sim2RealError:
    """Build the standard message ``"<path>: <expected>"``.

    Use as ``raise fail(path, "expected an HDF5 file with an 'rgb' dataset")``.
    """
    return Sim2RealError(f"{path}: {expected}")
