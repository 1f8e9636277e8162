"""Pipelines: a YAML file of stages (render -> make-target -> adapt -> export -> train-pose -> evaluate), run in
dependency order with caching. The format is documented in ``docs/pipelines.md``.

A stage runs one ``sim2real`` command (:mod:`sim2real.commands.registry`: which commands, their positional
arguments, output kinds, resume support and path arguments). Its arguments are the command's own flags, checked
by the command's own parser and turned into its typed ``Options``, which the stage executes directly (no
``sim2real`` process, no argv round trip through :func:`sim2real.cli.main`); a value ``${name}`` is the output
of stage ``name`` (``${name}/test.h5`` a file inside it), which is also how dependencies are declared. Each stage's
output is cached under a key: the hash of its command, its arguments, the content of the files they name, and the
keys of the stages it reads. Re-running skips stages whose key is unchanged and whose output exists; a changed
stage and every stage after it runs again; a stage that was interrupted continues with ``--resume``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from sim2real.commands.registry import COMMANDS, stage_commands
from sim2real.errors import Sim2RealError

REF = re.compile(r"\$\{([A-Za-z0-9_\-@]+)\}")  # '@' only in the per-seed copies ``name@seedN`` (never in a file)
STATE_DIR = ".stages"
#: Commands whose runs take a training seed (``train.seed``): ``run --seeds`` runs them once per seed.
SEEDED_COMMANDS = ("adapt", "train-pose")
SEED_SEP = "@seed"
SEEDS_DIR = "seeds"


@dataclasses.dataclass
class Stage:
    name: str
    command: str
    args: dict[str, Any]
    deps: list[str]
    seed: int | None = None
    """The training seed of a per-seed copy (``run --seeds``), else None."""
    base: str | None = None
    """The stage name in the file of a per-seed copy (its ``name`` is ``base@seedN``)."""


@dataclasses.dataclass
class Pipeline:
    path: Path
    name: str
    description: str
    stages: dict[str, Stage]  # in a valid execution order
    workdir: str | None
    report: str | None
    jobs: int = 1
    """Stages run at once (``jobs:`` in the file, ``run --jobs``): independent stages run side by side."""


def _refs(value: Any) -> list[str]:
    if isinstance(value, str):
        return REF.findall(value)
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    return []


def load_pipeline(path: str | Path) -> Pipeline:
    """Parse and check a pipeline file; every problem is a one-line error raised before any work starts."""
    from sim2real.config import read_yaml

    path = Path(path)
    if not path.is_file():
        shipped = Path(__file__).resolve().parents[1] / "pipelines" / f"{path}.yaml"
        if shipped.is_file():
            path = shipped
        else:
            raise Sim2RealError(f"{path}: pipeline file not found")
    data = read_yaml(path)
    unknown = set(data) - {"name", "description", "workdir", "stages", "report", "jobs"}
    if unknown:
        raise Sim2RealError(f"{path}: unknown top-level key '{sorted(unknown)[0]}' "
                            "(known: name, description, workdir, jobs, stages, report)")
    jobs = data.get("jobs", 1)
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise Sim2RealError(f"{path}: jobs: expected an integer >= 1 (stages run at once), got {jobs!r}")
    raw = data.get("stages")
    if not isinstance(raw, dict) or not raw:
        raise Sim2RealError(f"{path}: expected a 'stages' mapping of stage name -> {{command, args}}")
    stages: dict[str, Stage] = {}
    for name, spec in raw.items():
        where = f"{path}: stage '{name}'"
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", str(name)):
            raise Sim2RealError(f"{where}: names may use letters, digits, '_' and '-' only")
        if not isinstance(spec, dict) or "command" not in spec:
            raise Sim2RealError(f"{where}: expected a mapping with a 'command'")
        extra = set(spec) - {"command", "args"}
        if extra:
            raise Sim2RealError(f"{where}: unknown key '{sorted(extra)[0]}' (a stage has 'command' and 'args')")
        cmd = spec["command"]
        if cmd not in stage_commands():
            raise Sim2RealError(f"{where}: unknown command {cmd!r} (known: {', '.join(stage_commands())})")
        args = spec.get("args") or {}
        if not isinstance(args, dict):
            raise Sim2RealError(f"{where}: 'args' must be a mapping of the command's options")
        for key in ("output", "o", "resume", "overwrite"):
            if key in args:
                raise Sim2RealError(f"{where}: '{key}' is managed by the pipeline (outputs live in the work folder)")
        for p in COMMANDS[cmd].positional:
            if p not in args:
                raise Sim2RealError(f"{where}: missing argument '{p}' for {cmd}")
        deps = sorted(set(_refs(args)))
        stages[name] = Stage(str(name), cmd, args, deps)
    for s in stages.values():
        for d in s.deps:
            if d not in stages:
                raise Sim2RealError(f"{path}: stage '{s.name}' refers to unknown stage '${{{d}}}' (stages: {', '.join(stages)})")
    order = _topological(stages, path)
    report = data.get("report")
    if report is not None and report not in stages:
        raise Sim2RealError(f"{path}: report: unknown stage {report!r}")
    return Pipeline(path=path, name=str(data.get("name", path.stem)), description=str(data.get("description", "")),
                    stages={n: stages[n] for n in order}, workdir=data.get("workdir"), report=report, jobs=jobs)


def _topological(stages: dict[str, Stage], path: Path) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(n: str, trail: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cycle = trail[trail.index(n):] + [n]
            raise Sim2RealError(f"{path}: stages form a cycle: {' -> '.join(cycle)}")
        state[n] = 1
        for d in stages[n].deps:
            visit(d, trail + [n])
        state[n] = 2
        order.append(n)

    for n in stages:
        visit(n, [])
    return order


def output_path(workdir: Path, stage: Stage) -> Path:
    """Where a stage's output lives: ``WORKDIR/<name>.h5`` for files, ``WORKDIR/<name>/`` for folders; a per-seed
    copy's under ``WORKDIR/seeds/seed<N>/``."""
    name = stage.base or stage.name
    where = workdir if stage.seed is None else workdir / SEEDS_DIR / f"seed{stage.seed}"
    return where / (f"{name}.h5" if COMMANDS[stage.command].output == "file" else name)


def seeded_stages(pipe: Pipeline) -> list[str]:
    """The stages ``run --seeds`` repeats per seed: training commands, and every stage that reads one's output."""
    out: list[str] = []
    for name, st in pipe.stages.items():  # in execution order: a stage's deps are classified before it
        if st.command in SEEDED_COMMANDS or any(d in out for d in st.deps):
            out.append(name)
    return out


def _with_seed(args: dict[str, Any], seed: int) -> dict[str, Any]:
    """A training stage's args with ``set: train.seed = seed`` (replacing any seed the file gives)."""
    sets = args.get("set")
    drop = ("train.seed", "seed")  # "seed": train-pose's old flat key, which would also set it
    if isinstance(sets, list):
        new: Any = [x for x in sets if str(x).split("=", 1)[0].strip() not in drop] + [f"train.seed={seed}"]
    else:
        new = {k: v for k, v in (sets or {}).items() if k not in drop}
        new["train.seed"] = seed
    return {**args, "set": new}


def _seed_refs(value: Any, seeded: set[str], seed: int) -> Any:
    """``${name}`` -> ``${name@seedN}`` for the seeded stages."""
    if isinstance(value, list):
        return [_seed_refs(v, seeded, seed) for v in value]
    if isinstance(value, dict):
        return {k: _seed_refs(v, seeded, seed) for k, v in value.items()}
    if isinstance(value, str):
        return REF.sub(lambda m: "${" + (f"{m.group(1)}{SEED_SEP}{seed}" if m.group(1) in seeded else m.group(1)) + "}",
                       value)
    return value


def expand_seeds(pipe: Pipeline, seeds: list[int]) -> Pipeline:
    """The pipeline with every seeded stage (:func:`seeded_stages`) copied once per seed as ``name@seedN``.

    Data stages (render, make-target, ...) run once and are shared; each copy of a training stage gets
    ``set: train.seed = N``, and the copies of the stages after it read that seed's outputs.
    """
    if not seeds:
        raise Sim2RealError("--seeds: expected a comma-separated list of integers, e.g. --seeds 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise Sim2RealError(f"--seeds {','.join(map(str, seeds))}: a seed is repeated")
    seeded = set(seeded_stages(pipe))
    if not seeded:
        raise Sim2RealError(f"{pipe.path}: --seeds: no training stage (adapt, train-pose) to repeat per seed")
    stages = {n: st for n, st in pipe.stages.items() if n not in seeded}
    for seed in seeds:
        for n, st in pipe.stages.items():
            if n in seeded:
                args = _seed_refs(st.args, seeded, seed)
                if st.command in SEEDED_COMMANDS:
                    args = _with_seed(args, seed)
                name = f"{n}{SEED_SEP}{seed}"
                stages[name] = Stage(name, st.command, args, sorted(set(_refs(args))), seed=seed, base=n)
    return dataclasses.replace(pipe, stages=stages)


def _resolve(value: Any, outputs: dict[str, Path], base: Path) -> Any:
    if isinstance(value, list):
        return [_resolve(v, outputs, base) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, outputs, base) for k, v in value.items()}
    if isinstance(value, str):
        return REF.sub(lambda m: str(outputs[m.group(1)]), value)
    return value


def _file_digest(p: Path) -> str:
    h = hashlib.sha256()
    if p.is_file():
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    elif p.is_dir():  # a user's input folder: names, sizes and times (hashing every image would be slow)
        for q in sorted(p.rglob("*")):
            if q.is_file():
                st = q.stat()
                h.update(f"{q.relative_to(p)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _input_files(value: Any, base: Path) -> list[tuple[str, Path]]:
    """Plain (non-stage) paths an argument names that exist, as ``(label, path)``: their content enters the cache
    key under the label, which is the argument as written (``config:NAME`` for a shipped config), never where the
    package or the work folder happens to live, so a cache survives a move of either."""
    out = []
    if isinstance(value, list):
        for v in value:
            out += _input_files(v, base)
    elif isinstance(value, dict):
        for v in value.values():
            out += _input_files(v, base)
    elif isinstance(value, str) and not REF.search(value):
        p = (base / value) if not Path(value).is_absolute() else Path(value)
        if p.exists() and (p.is_dir() or p.suffix.lower() in (".yaml", ".yml", ".h5", ".hdf5", ".json", ".csv")):
            out.append((value, p))
        else:
            from sim2real.config import CONFIG_DIR

            shipped = CONFIG_DIR / f"{value}.yaml"
            if shipped.is_file():
                out.append((f"config:{value}", shipped))
    return out


def stage_key(stage: Stage, upstream: dict[str, str], base: Path) -> str:
    """Cache key of a stage: command, arguments, content of named files, upstream keys, package version."""
    from sim2real import __version__

    blob = {"command": stage.command, "args": stage.args, "version": __version__,
            "upstream": {d: upstream[d] for d in stage.deps},
            "files": {label: _file_digest(p) for label, p in _input_files(stage.args, base)}}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_argv(stage: Stage, args: dict[str, Any], out: Path, resume: bool) -> list[str]:
    """The ``sim2real`` command line of a stage: what its command's parser checks, and what the log shows."""
    spec = COMMANDS[stage.command]
    argv = [stage.command]
    for p in spec.positional:
        v = args[p]
        argv += [str(x) for x in v] if isinstance(v, list) else [str(v)]
    argv += ["-o", str(out)]
    for key, v in args.items():
        if key in spec.positional:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "set":
            items = [f"{k}={json.dumps(x) if isinstance(x, (list, dict, bool)) or x is None else x}" for k, x in v.items()] \
                if isinstance(v, dict) else [str(x) for x in v]
            for item in items:
                argv += ["--set", item]
        elif isinstance(v, bool):
            if v:
                argv.append(flag)
        elif isinstance(v, list):
            for x in v:
                argv += [flag, str(x)]
        else:
            argv += [flag, str(v)]
    if resume and spec.resumable:
        argv.append("--resume")
    return argv


_UNKNOWN_ARG = re.compile(r"unrecognized arguments: (.*)")
_BAD_ARG = re.compile(r"argument (--?[\w-]+)(?:/[^:]*)?: (.*)")


def _stage_arg_error(stage: Stage, message: str) -> str:
    """An argparse message, said in terms of the pipeline file's ``args`` keys."""
    m = _UNKNOWN_ARG.match(message)
    if m:
        flags = [t for t in m.group(1).split() if t.startswith("--")]
        if flags:
            key = flags[0][2:].replace("-", "_")
            return f"unknown argument '{key}' for {stage.command} (see sim2real {stage.command} --help)"
        return f"unexpected value(s) {m.group(1)} for {stage.command}"
    m = _BAD_ARG.match(message)
    if m:
        return f"argument '{m.group(1).lstrip('-').replace('-', '_')}': {m.group(2)}"
    return message


def stage_options(pipe: Pipeline, stage: Stage, out: Path, base: Path, outputs: dict[str, Path],
                  resume: bool = False) -> tuple[list[str], Any]:
    """A stage's command line and the typed ``Options`` its command executes.

    The ``args`` are checked by the command's own parser (the one definition of its flags, types and choices) and
    turned into its ``Options`` dataclass.

    Raises:
        Sim2RealError: one line naming the pipeline file, the stage and the key (``unknown argument 'stepz'``,
            ``argument 'workers': invalid int value: 'two'``).
    """
    from sim2real.cli import check_args

    args = _resolve(stage.args, outputs, base)
    argv = build_argv(stage, args, out, resume=resume)
    try:
        ns = check_args(argv)
    except Sim2RealError as e:
        raise Sim2RealError(f"{pipe.path}: stage '{stage.name}' ({stage.command}): {_stage_arg_error(stage, str(e))}") from None
    return argv, COMMANDS[stage.command].load().options(ns)


def check_stage_args(pipe: Pipeline, outputs: dict[str, Path], base: Path) -> None:
    """Parse every stage's options, and load its config with its ``set`` overrides, before anything runs.

    A problem is one line naming the pipeline file, the stage and the key; nothing has been started.
    """
    for name, stage in pipe.stages.items():
        _, opts = stage_options(pipe, stage, outputs[name], base, outputs)
        preflight = getattr(COMMANDS[stage.command].load(), "preflight", None)
        if preflight is None or _refs(stage.args.get("config")):  # a config made by another stage: not there yet
            continue
        try:
            preflight(opts)
        except Sim2RealError as e:
            raise Sim2RealError(f"{pipe.path}: stage '{name}' ({stage.command}): {e}") from None


def _check_inputs(pipe: Pipeline, base: Path) -> None:
    """Plain paths given to stages must exist before anything runs (stage outputs are made on the way)."""
    for s in pipe.stages.values():
        for key, v in s.args.items():
            if key not in COMMANDS[s.command].paths:
                continue
            for item in (v if isinstance(v, list) else [v]):
                if isinstance(item, str) and not REF.search(item):
                    p = Path(item) if Path(item).is_absolute() else base / item
                    if not p.exists():
                        raise Sim2RealError(f"{pipe.path}: stage '{s.name}': input {item} not found")


def _read_state(workdir: Path, name: str) -> dict:
    p = workdir / STATE_DIR / f"{name}.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def _write_state(workdir: Path, name: str, state: dict) -> None:
    from sim2real.utils import atomic_write_text

    atomic_write_text(workdir / STATE_DIR / f"{name}.json", json.dumps(state, indent=2, sort_keys=True))


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()
    partial = p.with_name(p.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)


def run_pipeline(path: str | Path, workdir: str | Path | None = None, only: list[str] | None = None,
                 dry_run: bool = False, log=print, seeds: list[int] | None = None, jobs: int | None = None) -> dict:
    """Run a pipeline; returns ``{"stages": [{name, status, seconds, output}], "report": path or None, ...}``.

    Args:
        path: the pipeline YAML (or the name of a file in ``pipelines/``).
        workdir: where outputs go (default: the file's ``workdir``, else ``runs/<name>``), relative to the current folder.
        only: run only these stages (and what they depend on).
        dry_run: print the plan (which stages would run or be skipped) without running anything.
        seeds: run the training stages (and what reads them) once per training seed (:func:`expand_seeds`), under
            ``WORKDIR/seeds/seed<N>/``; the per-seed reports are then combined into ``WORKDIR/seeds/<report stage>/``
            (mean +- std, :mod:`sim2real.eval.seeds`), which becomes the result's ``report``.
        jobs: stages run at once (None: the file's ``jobs``, default 1). With more than one, each stage whose inputs
            are ready runs as its own ``sim2real`` process (``OMP_NUM_THREADS`` = cores / jobs), its output in
            ``WORKDIR/.stages/<stage>.log`` and echoed when it ends; with 1, stages run in this process in order.
    """
    from sim2real.cli import run_command

    pipe = load_pipeline(path)
    base = Path.cwd()
    wd = Path(workdir) if workdir else Path(pipe.workdir or f"runs/{pipe.name}")
    _check_inputs(pipe, base)
    file_stages = list(pipe.stages)
    seeded = set(seeded_stages(pipe)) if seeds else set()
    if seeds:
        pipe = expand_seeds(pipe, seeds)
    wanted = set(pipe.stages)
    if only:
        unknown = [o for o in only if o not in file_stages]
        if unknown:
            raise Sim2RealError(f"--only: unknown stage {unknown[0]!r} (stages: {', '.join(file_stages)})")
        wanted = set()
        stack = [n for o in only for n in ([f"{o}{SEED_SEP}{s}" for s in seeds] if o in seeded else [o])]
        while stack:
            n = stack.pop()
            if n not in wanted:
                wanted.add(n)
                stack += pipe.stages[n].deps
    outputs = {n: output_path(wd, s) for n, s in pipe.stages.items()}
    check_stage_args(pipe, outputs, base)  # every stage's options and config keys, before any stage starts
    try:
        if not dry_run:
            (wd / STATE_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Sim2RealError(f"{wd}: cannot create the work folder ({e.strerror})") from None
    keys: dict[str, str] = {}
    summary: list[dict] = []
    todo: list[_Job] = []
    t_all = time.perf_counter()
    for name, stage in pipe.stages.items():
        keys[name] = stage_key(stage, keys, base)
        if name not in wanted:
            continue
        out = outputs[name]
        state = _read_state(wd, name)
        if state.get("key") == keys[name] and state.get("status") == "done" and out.exists():
            summary.append({"name": name, "status": "cached", "seconds": 0.0, "output": str(out)})
            log(f"[{name}] cached ({stage.command}) -> {out}")
            continue
        partial = out.with_name(out.name + ".partial")
        resume = state.get("key") == keys[name] and state.get("status") == "started" and (out.exists() or partial.exists())
        resumable = COMMANDS[stage.command].resumable
        argv, opts = stage_options(pipe, stage, out, base, outputs, resume=resume and resumable)
        if dry_run:
            summary.append({"name": name, "status": "would resume" if resume else "would run", "seconds": 0.0, "output": str(out)})
            log(f"[{name}] would {'resume' if resume else 'run'}: sim2real {' '.join(argv)}")
            continue
        todo.append(_Job(name, stage, out, argv, opts, resume and resumable, keys[name]))
    jobs = pipe.jobs if jobs is None else jobs
    if jobs < 1:
        raise Sim2RealError(f"--jobs {jobs}: expected an integer >= 1")
    if jobs == 1 or len(todo) < 2:
        for job in todo:  # in this process, one after the other
            _start(wd, job, log)
            t = time.perf_counter()
            rc = run_command(job.stage.command, job.opts)  # the command's one-line errors and interrupt line
            _finish(wd, pipe, job, rc, time.perf_counter() - t, summary)
    else:
        _run_parallel(wd, pipe, todo, jobs, base, log, summary)
        order = {n: i for i, n in enumerate(pipe.stages)}
        summary.sort(key=lambda r: order[r["name"]])
    report, seed_reports = None, None
    if pipe.report and pipe.report in seeded:
        seed_reports = {s: outputs[f"{pipe.report}{SEED_SEP}{s}"] for s in seeds}
        if all(f"{pipe.report}{SEED_SEP}{s}" in wanted for s in seeds):
            report = wd / SEEDS_DIR / pipe.report  # named after the report stage: pipelines sharing a work folder keep theirs
            if not dry_run:
                combine_seed_reports(seed_reports, report)
                log(f"[seeds] combined {len(seeds)} reports -> {report}")
    elif pipe.report and pipe.report in wanted:
        report = outputs[pipe.report]
    return {"stages": summary, "report": str(report) if report else None, "seconds": time.perf_counter() - t_all,
            "workdir": str(wd), "seeds": list(seeds) if seeds else None,
            "seed_reports": {s: str(p) for s, p in seed_reports.items()} if seed_reports else None}


@dataclasses.dataclass
class _Job:
    """A stage that has to run (not cached): its typed options and its command line."""

    name: str
    stage: Stage
    out: Path
    argv: list[str]
    opts: Any
    resume: bool
    key: str


def _start(wd: Path, job: _Job, log) -> None:
    if not job.resume:
        _remove(job.out)
    _write_state(wd, job.name, {"key": job.key, "status": "started", "argv": job.argv})
    log(f"[{job.name}] {'resuming' if job.resume else 'running'}: sim2real {' '.join(job.argv)}")


def _finish(wd: Path, pipe: Pipeline, job: _Job, rc: int, secs: float, summary: list[dict]) -> None:
    if rc != 0:
        raise Sim2RealError(f"{pipe.path}: stage '{job.name}' failed (exit {rc}); fix it and run again: finished "
                            "stages are kept")
    _write_state(wd, job.name, {"key": job.key, "status": "done", "argv": job.argv, "seconds": round(secs, 2)})
    summary.append({"name": job.name, "status": "resumed" if job.resume else "ran", "seconds": secs,
                    "output": str(job.out)})


def _run_parallel(wd: Path, pipe: Pipeline, todo: list[_Job], jobs: int, base: Path, log, summary: list[dict]) -> None:
    """Run ``todo`` with up to ``jobs`` ``sim2real`` processes at once, each stage once its inputs are done.

    Stages start in file order as slots free up; each process gets ``OMP_NUM_THREADS`` = cores // jobs (at least 1)
    so the stages share the cores instead of oversubscribing them. A failed stage lets the running ones finish
    (their outputs are kept and cached), then stops the pipeline with its one-line error; Ctrl-C interrupts every
    running stage (each checkpoints, as on the command line) and waits for them.
    """
    import os
    import signal
    import subprocess
    import sys

    pending = {j.name: j for j in todo}
    waiting_on = {j.name: {d for d in j.stage.deps if d in pending} for j in todo}
    running: dict[str, tuple[_Job, subprocess.Popen, float, Path]] = {}
    threads = max((os.cpu_count() or 1) // jobs, 1)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    failed: list[tuple[_Job, int, Path]] = []
    try:
        while pending or running:
            ready = [n for n, j in pending.items() if not waiting_on[n]] if not failed else []
            while ready and len(running) < jobs:
                job = pending.pop(ready.pop(0))
                _start(wd, job, log)
                path = wd / STATE_DIR / f"{job.name}.log"
                with open(path, "w") as f:
                    proc = subprocess.Popen([sys.executable, "-m", "sim2real", *job.argv], cwd=base, env=env,
                                            stdout=f, stderr=subprocess.STDOUT)
                running[job.name] = (job, proc, time.perf_counter(), path)
            if not running:
                break
            time.sleep(0.2)
            for name, (job, proc, t0, path) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del running[name]
                secs = time.perf_counter() - t0
                out = path.read_text(errors="replace").strip()
                for line in out.splitlines()[-12:]:  # the command's summary (progress bars are off: not a terminal)
                    log(f"  [{name}] {line}")
                if rc != 0:
                    failed.append((job, rc, path))
                    continue
                _finish(wd, pipe, job, 0, secs, summary)
                log(f"[{name}] done in {secs:.1f} s")
                for deps in waiting_on.values():
                    deps.discard(name)
    except KeyboardInterrupt:
        for _, proc, _, _ in running.values():
            proc.send_signal(signal.SIGINT)
        for _, proc, _, _ in running.values():
            proc.wait()
        raise
    if failed:
        job, rc, path = failed[0]
        raise Sim2RealError(f"{pipe.path}: stage '{job.name}' failed (exit {rc}, output in {path}); fix it and run "
                            "again: finished stages are kept")


def combine_seed_reports(reports: dict[int, Path], out: Path) -> dict:
    """Read each seed's ``metrics.json`` and write the combined report (:func:`sim2real.eval.seeds.write_seed_report`)."""
    from sim2real.eval.record import read
    from sim2real.eval.seeds import aggregate, write_seed_report

    records = {}
    for s, p in reports.items():
        if not (p / "metrics.json").is_file():
            raise Sim2RealError(f"{p}: no metrics.json (the seed {s} report stage did not write one)")
        records[s] = read(p / "metrics.json")
    summary = aggregate(records)
    write_seed_report(out, summary, reports)
    return summary
