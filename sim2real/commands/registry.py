"""The one table of ``sim2real`` commands, read by the CLI (:mod:`sim2real.cli`) and the pipeline (:mod:`sim2real.pipeline`).

A :class:`Command` says where a subcommand's code lives and its one-line help (what the CLI needs), and, for the
commands a pipeline stage may run, which pipeline ``args`` keys are positional, whether the output is a file or a
folder, whether an interrupted run can ``--resume``, and which ``args`` keys name input paths that must exist
(what the pipeline needs). Nothing here imports a command module: ``sim2real render`` imports only
``sim2real.commands.render`` (and never torch).

A command module (``sim2real/commands/<name>.py``) provides:

* ``add_arguments(parser)``: its flags (the one definition of their names, types, choices and defaults);
* ``Options``: a dataclass of its options, one field per argparse ``dest``; ``options(args) -> Options``;
* ``execute(opts) -> result``: the work (may print progress notes; raises
  :class:`~sim2real.errors.Sim2RealError` for user errors);
* ``report(opts, result) -> int``: the summary lines, and the exit code;
* optionally ``preflight(opts)``: load what the command would load first (its config with ``--set``), so a
  pipeline can reject bad keys before any stage starts.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType
from typing import Any, Literal


@dataclasses.dataclass(frozen=True)
class Command:
    """One ``sim2real`` subcommand."""

    name: str
    """The subcommand, as typed: ``train-pose``."""
    module: str
    """Its module: ``sim2real.commands.train_pose``."""
    help: str
    """One line for ``sim2real --help``."""
    output: Literal["file", "dir"] | None = None
    """What a pipeline stage running it produces (``WORKDIR/<stage>.h5`` or ``WORKDIR/<stage>/``); None: not a stage."""
    positional: tuple[str, ...] = ()
    """Pipeline ``args`` keys given as positional arguments, in this order (``export``: ``run``)."""
    resumable: bool = False
    """An interrupted stage continues with ``--resume`` (else it starts over)."""
    paths: tuple[str, ...] = ()
    """Pipeline ``args`` keys that name input files or folders: a plain path must exist before anything runs."""

    @property
    def is_stage(self) -> bool:
        """Whether a pipeline stage may run this command."""
        return self.output is not None

    def load(self) -> ModuleType:
        """Import the command's module (only now: the table itself imports nothing)."""
        return importlib.import_module(self.module)


_ALL = (
    Command("render", "sim2real.commands.render", "render CAD objects in sampled poses into an HDF5 dataset",
            output="file", positional=("config",), resumable=True),
    Command("inspect", "sim2real.commands.inspect", "validate an HDF5 dataset, print a summary, write an image grid"),
    Command("adapt", "sim2real.commands.adapt", "train PixelDA: make renders look like the target camera's images",
            output="dir", resumable=True, paths=("source", "target", "val", "target_labelled")),
    Command("export", "sim2real.commands.export", "apply a trained PixelDA generator to renders -> adapted HDF5",
            output="file", positional=("run",), resumable=True, paths=("run", "source")),
    Command("train-pose", "sim2real.commands.train_pose", "train a class + quaternion pose network on labelled HDF5 data",
            output="dir", resumable=True, paths=("train", "val")),
    Command("evaluate", "sim2real.commands.evaluate", "evaluate pose models on a labelled test set -> HTML/Markdown report",
            output="dir", positional=("models",), paths=("test", "memorisation", "target_train")),
    Command("import-bop", "sim2real.commands.import_bop", "import a BOP dataset split as object-centred crops -> HDF5",
            output="file", positional=("dir",), paths=("dir", "class_map")),
    Command("export-bop", "sim2real.commands.export_bop", "export an HDF5 dataset in the BOP format",
            output="dir", positional=("input",), paths=("input",)),
    Command("datasets", "sim2real.commands.datasets", "build digit datasets (mnist, mnist-m, glyphs) and read USPS/SVHN files",
            output="file", positional=("name",), paths=("file", "fonts")),
    Command("subset", "sim2real.commands.subset", "draw a stratified subset of N labelled images (a few labelled targets)",
            output="file", positional=("input",), paths=("input",)),
    Command("make-target", "sim2real.commands.make_target", "render a camera-like stand-in target domain (not real data)",
            output="dir", positional=("config",), resumable=True),
    Command("run", "sim2real.commands.run", "run a pipeline file: render -> adapt -> train-pose -> report"),
)

#: name -> :class:`Command`, in the order ``sim2real --help`` lists them.
COMMANDS: dict[str, Command] = {c.name: c for c in _ALL}


def stage_commands() -> dict[str, Command]:
    """The commands a pipeline stage may run (those with an ``output`` kind)."""
    return {n: c for n, c in COMMANDS.items() if c.is_stage}


def options_from_namespace(cls: type, args: Any):
    """Build an ``Options`` dataclass from an argparse namespace: one field per ``dest`` (absent ones keep defaults)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**values)
