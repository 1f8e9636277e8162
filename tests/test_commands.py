"""The command registry is the one table the CLI and the pipeline read; stages execute typed options directly."""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import subprocess
import sys

import pytest

from sim2real import cli, pipeline
from sim2real.commands.registry import COMMANDS, stage_commands
from sim2real.errors import Sim2RealError

from conftest import write_yaml


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every action of a parser, through nested subparsers (``datasets mnist``), without help/version."""
    out = []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            out.append(a)
            for sub in a.choices.values():
                out += _actions(sub)
        elif not isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
            out.append(a)
    return out


def _command_parser(name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"sim2real {name}")
    COMMANDS[name].load().add_arguments(p)
    return p


def test_cli_and_pipeline_read_the_same_table(tmp_path):
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(COMMANDS)  # the CLI lists exactly the registry, in its order
    assert cli.COMMANDS is COMMANDS and pipeline.COMMANDS is COMMANDS
    assert set(stage_commands()) == set(COMMANDS) - {"inspect", "run"}
    for name, c in stage_commands().items():
        stage = pipeline.Stage("s", name, {}, [])
        out = pipeline.output_path(pipeline.Path("w"), stage)
        assert out == pipeline.Path("w/s.h5" if c.output == "file" else "w/s")
    with pytest.raises(Sim2RealError, match=r"unknown command 'inspect' \(known: render, adapt, export"):
        pipeline.load_pipeline(write_yaml(tmp_path / "p.yaml", "stages:\n  a: {command: inspect, args: {file: x.h5}}\n"))


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_module_has_typed_options_covering_its_flags(name):
    mod = COMMANDS[name].load()
    for attr in ("add_arguments", "Options", "options", "execute", "report"):
        assert hasattr(mod, attr), f"{mod.__name__} has no {attr}"
    fields = {f.name for f in dataclasses.fields(mod.Options)}
    actions = _actions(_command_parser(name))
    assert {a.dest for a in actions} <= fields  # options(args) drops no flag
    c = COMMANDS[name]
    flags = {s for a in actions for s in a.option_strings}
    for key in c.paths:  # a path key is a positional (by pipeline name) or one of the command's flags
        assert key in c.positional or "--" + key.replace("_", "-") in flags, (name, key)
    for key in c.positional:
        assert "--" + key.replace("_", "-") not in flags


def test_registry_and_cli_import_no_command_module_and_render_no_torch(tmp_path):
    code = ("import sys\nimport sim2real.cli\n"
            "assert not [m for m in sys.modules if m.startswith('sim2real.commands.') and m != 'sim2real.commands.registry']\n"
            "rc = sim2real.cli.main(['render', 'no-such-config', '-o', 'x.h5'])\n"
            "assert rc == 2, rc\n"
            "assert 'torch' not in sys.modules, 'render imported torch'\n"
            "assert 'sim2real.commands.adapt' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------------------
# pipeline stages: one-line errors for bad args, typed options executed directly, the CLI's interrupt line
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    ("{input: in.h5, dpeth_scale: 0.5}", "stage 'a' (export-bop): unknown argument 'dpeth_scale' for export-bop"),
    ("{input: in.h5, depth_scale: deep}", "stage 'a' (export-bop): argument 'depth_scale': invalid float value: 'deep'"),
    ("{input: in.h5, overwrite: true}", "'overwrite' is managed by the pipeline"),
])
def test_invalid_stage_argument_is_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.h5").write_bytes(b"")
    pf = write_yaml(tmp_path / "p.yaml", f"stages:\n  a: {{command: export-bop, args: {args}}}\n")
    assert cli.main(["run", str(pf), "-o", "work"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("sim2real run: error: ")
    assert not (tmp_path / "work").exists()  # nothing started


def test_bad_config_key_of_a_stage_is_one_line_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    pf = write_yaml(tmp_path / "p.yaml", "stages:\n  src: {command: render, args: {config: render-default, "
                                         "set: {n_samplez: 3}}}\n")
    assert cli.main(["run", str(pf), "-o", "work"]) == 2
    err = capsys.readouterr().err
    assert "stage 'src' (render): " in err and "n_samplez" in err and len(err.strip().splitlines()) == 1


def test_stage_executes_typed_options_and_reports_an_interrupt_like_the_cli(tmp_path, monkeypatch, capsys):
    import sim2real.commands.export_bop as mod

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.h5").write_bytes(b"")
    pf = write_yaml(tmp_path / "p.yaml", "stages:\n  bop: {command: export-bop, args: {input: in.h5, depth_scale: 0.5}}\n")
    seen = []

    def interrupted(opts):
        seen.append(opts)
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "execute", interrupted)
    assert cli.main(["run", str(pf), "-o", "work"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "sim2real export-bop: interrupted; finished work is kept (rerun with --resume to continue)"
    assert "stage 'bop' failed (exit 130)" in err[1] and len(err) == 2
    assert json.loads((tmp_path / "work" / ".stages" / "bop.json").read_text())["status"] == "started"
    opts = seen[0]
    assert isinstance(opts, mod.Options)
    assert (opts.input, opts.output, opts.split, opts.depth_scale, opts.overwrite) == \
        ("in.h5", "work/bop", "test", 0.5, False)

    monkeypatch.setattr(mod, "execute", lambda opts: pathlib.Path(opts.output).mkdir() or "done")
    monkeypatch.setattr(mod, "report", lambda opts, res: print(f"export-bop: {res}") or 0)
    assert cli.main(["run", str(pf), "-o", "work"]) == 0
    out = capsys.readouterr().out
    assert "export-bop: done" in out and "bop                  ran" in out
    assert json.loads((tmp_path / "work" / ".stages" / "bop.json").read_text())["status"] == "done"

    monkeypatch.setattr(mod, "execute", lambda opts: (_ for _ in ()).throw(Sim2RealError("in.h5: not a sim2real file")))
    assert cli.main(["run", str(pf), "-o", "work", "--only", "bop"]) == 0  # cached: not executed again
    pf.write_text(pf.read_text().replace("0.5", "0.25"))
    assert cli.main(["run", str(pf), "-o", "work"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "sim2real export-bop: error: in.h5: not a sim2real file" and "failed (exit 2)" in err[1]
