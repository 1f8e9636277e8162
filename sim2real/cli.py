"""The ``sim2real`` command line: thin. Parse, call the library, print one-line errors.

Each subcommand lives in ``sim2real/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; only the chosen one is imported (so ``sim2real render`` never imports torch).
User errors (:class:`~sim2real.errors.Sim2RealError`) and I/O errors (``OSError``: disk full, read-only file
system, quota, permissions) print ``sim2real <cmd>: error: <message>`` on one line and exit with code 2, without
a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "render": ("sim2real.commands.render", "render CAD objects in sampled poses into an HDF5 dataset"),
    "inspect": ("sim2real.commands.inspect", "validate an HDF5 dataset, print a summary, write an image grid"),
    "adapt": ("sim2real.commands.adapt", "train PixelDA: make renders look like the target camera's images"),
    "export": ("sim2real.commands.export", "apply a trained PixelDA generator to renders -> adapted HDF5"),
    "train-pose": ("sim2real.commands.train_pose", "train a class + quaternion pose network on labelled HDF5 data"),
    "evaluate": ("sim2real.commands.evaluate", "evaluate pose models on a labelled test set -> HTML/Markdown report"),
    "import-bop": ("sim2real.commands.import_bop", "import a BOP dataset split as object-centred crops -> HDF5"),
    "export-bop": ("sim2real.commands.export_bop", "export an HDF5 dataset in the BOP format"),
    "datasets": ("sim2real.commands.datasets", "build digit datasets (mnist, mnist-m) and read USPS/SVHN files"),
    "make-target": ("sim2real.commands.make_target", "render a camera-like stand-in target domain (not real data)"),
    "run": ("sim2real.commands.run", "run a pipeline file: render -> adapt -> train-pose -> report"),
}


def _available() -> dict[str, tuple[str, str]]:
    out = {}
    for name, (mod, helptext) in COMMANDS.items():
        if importlib.util.find_spec(mod) is not None:
            out[name] = (mod, helptext)
    return out


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
    for name, (mod, helptext) in _available().items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        if name == only:
            importlib.import_module(mod).add_arguments(p)
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


def main(argv: list[str] | None = None) -> int:
    from sim2real.errors import Sim2RealError

    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except Sim2RealError as e:
        print(f"sim2real {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sim2real {args.command}: interrupted; finished work is kept (rerun with --resume to continue)", file=sys.stderr)
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
        print(f"sim2real {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
