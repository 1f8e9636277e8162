"""The ``sim2real`` command line: thin. Parse, call the library, print one-line errors.

The commands are listed once, in :mod:`sim2real.commands.registry` (shared with the pipeline). Each lives in
``sim2real/commands/<name>.py`` with ``add_arguments(parser)``, an ``Options`` dataclass, ``options(args)``,
``execute(opts)`` and ``report(opts, result)``; only the chosen one is imported (so ``sim2real render`` never
imports torch). User errors (:class:`~sim2real.errors.Sim2RealError`) and I/O errors (``OSError``: disk full,
read-only file system, quota, permissions) print ``sim2real <cmd>: error: <message>`` on one line and exit with
code 2, without a traceback; an interrupt prints one line and exits with 130 (:func:`call`, which pipeline stages
go through too).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from typing import Any, Callable

from sim2real.commands.registry import COMMANDS, Command


def _available() -> dict[str, Command]:
    return {name: c for name, c in COMMANDS.items() if importlib.util.find_spec(c.module) is not None}


class _RaisingParser(argparse.ArgumentParser):
    """An argument parser whose errors raise :class:`~sim2real.errors.Sim2RealError` (no usage dump, no exit)."""

    def error(self, message: str):  # type: ignore[override]
        from sim2real.errors import Sim2RealError

        raise Sim2RealError(message)


def build_parser(only: str | None = None, parser_class: type = argparse.ArgumentParser) -> argparse.ArgumentParser:
    from sim2real import __version__

    parser = parser_class(prog="sim2real", description="CAD models to a pose estimator that works on real images.")
    parser.add_argument("--version", action="version", version=f"sim2real {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, c in _available().items():
        p = sub.add_parser(name, help=c.help, description=c.help)
        if name == only:
            c.load().add_arguments(p)
    return parser


def check_args(argv: list[str]) -> argparse.Namespace:
    """Parse a ``sim2real`` command line as :func:`main` would, without running it.

    Raises:
        Sim2RealError: the argparse message (``unrecognized arguments: --foo``, ``argument --steps: invalid int
            value``), in one line, instead of a usage dump and an exit.
    """
    from sim2real.errors import Sim2RealError

    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in COMMANDS else None, parser_class=_RaisingParser)
    try:
        return parser.parse_args(argv)
    except SystemExit:  # --help / --version
        raise Sim2RealError(f"{' '.join(argv[:1])}: --help and --version do not belong in a command line to run") from None


def call(command: str, fn: Callable[[], Any]) -> int:
    """Run ``fn()`` as command ``command`` would run: its int result is the exit code (None: 0).

    :class:`~sim2real.errors.Sim2RealError` and ``OSError`` print ``sim2real <command>: error: <message>`` on one
    line to stderr and give 2; ``KeyboardInterrupt`` prints one line and gives 130. No traceback.
    """
    from sim2real.errors import Sim2RealError

    try:
        return int(fn() or 0)
    except Sim2RealError as e:
        print(f"sim2real {command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sim2real {command}: interrupted; finished work is kept (rerun with --resume to continue)", file=sys.stderr)
        return 130
    except OSError as e:  # disk full, read-only, quota, permissions: one line naming the path, like user errors
        from sim2real.outputs import disk_error

        err = disk_error(e)
        if err is not None:
            msg = str(err)
        else:
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            text = e.strerror or (str(e).splitlines() or [type(e).__name__])[0]
            msg = f"{where}{text}"
        print(f"sim2real {command}: error: {msg}", file=sys.stderr)
        return 2


def run_command(command: str, opts: Any) -> int:
    """Execute ``command`` with its typed options and print its summary: ``report(opts, execute(opts))`` under
    :func:`call` (one-line errors, exit codes). The CLI and pipeline stages both run commands through here."""
    module = COMMANDS[command].load()
    return call(command, lambda: module.report(opts, module.execute(opts)))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1"):  # torchrun (no torch import for the others)
        return _main_distributed(args)
    return run_command(args.command, COMMANDS[args.command].load().options(args))


#: The commands that run data-parallel under ``torchrun`` (:mod:`sim2real.engine.distributed`).
DISTRIBUTED_COMMANDS = ("adapt", "train-pose")


def _main_distributed(args: argparse.Namespace) -> int:
    """One rank of ``torchrun --nproc-per-node N -m sim2real COMMAND ...``: join the group, run, leave.

    Rank 0 prints the summary and progress; the other ranks' stdout is silenced (their errors still reach stderr).
    """
    import contextlib

    if args.command not in DISTRIBUTED_COMMANDS:
        print(f"sim2real {args.command}: error: runs in one process; under torchrun (WORLD_SIZE="
              f"{os.environ.get('WORLD_SIZE')}) only {', '.join(DISTRIBUTED_COMMANDS)} run data-parallel", file=sys.stderr)
        return 2
    from sim2real.engine import distributed

    def run() -> int:
        w = distributed.init_from_env()
        try:
            opts = COMMANDS[args.command].load().options(args)
            if w.rank == 0:
                return run_command(args.command, opts)
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
                return run_command(args.command, opts)
        finally:
            distributed.shutdown()

    return call(args.command, run)


if __name__ == "__main__":
    sys.exit(main())
