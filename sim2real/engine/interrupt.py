"""Ctrl-C / SIGTERM during training: finish the step in flight, write a consistent checkpoint, then stop."""

from __future__ import annotations

from typing import Any


class DeferInterrupt:
    """Turn the first Ctrl-C / SIGTERM into a flag checked between steps, so the step in flight completes
    and a consistent checkpoint is written; a second Ctrl-C interrupts at once. Signal handlers are only
    installed in the main thread (elsewhere the flag simply never rises)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "DeferInterrupt":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
