"""The `toolkit` command: a thin layer over a registry of studies, toolkit.sweep and
toolkit.report.

    toolkit list [--profile P]        studies and their parameters with the values a run uses
    toolkit run STUDY [flags]         run a study's sweep and write <out>/<slug>.csv (runs/)
    toolkit report [--results DIR]    rates, comparisons, sample_complexity (CSV), figures/,
                                      REPORT.md in DIR

The registry (name -> toolkit.study.Study) is `studies.registry()` unless `main` is given
another; the CLI passes it to the sweep and the report, which import no study. Every
study parameter is a flag (`--test-size` for the field test_size); list-valued flags take
comma-separated values. Bad input exits with status 2 and one line on stderr naming the
flag and the allowed values, before anything is written; a fault during a run (a write
error, a dask cluster left without workers) exits with status 1 and one line, the finished
cells cached (docs/robustness.md). Help and `list` import no torch.

`toolkit run` writes into runs/ unless told otherwise (`make` targets pass --out results),
and refuses, without --force, to replace a study CSV that another configuration produced
(a rerun of the same configuration resumes from the cache and needs no --force).
The defaults shown by `list` and `run --help` are the values a run uses: the field
defaults with the profile applied (profile_values), one source for both.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from toolkit.params import ParameterError, build, describe, element_type, fields, flag, parse
from toolkit.study import Study

DEVICES = ("cpu", "cuda", "auto")
BACKENDS = ("local", "dask")
DEFAULT_OUT = "runs"  # git-ignored; the committed results/ are written by `make` only
CHECK_TIMEOUT = 30.0  # seconds for a study's own checks of a grid (Study.config.check)
UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def resolve_device(device: str) -> str:
    """cpu, cuda (error if torch sees no GPU) or auto (cuda when available)."""
    if device not in DEVICES:
        raise ParameterError(f"--device must be one of {', '.join(DEVICES)} (got {device!r})")
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ParameterError("--device cuda: torch sees no CUDA device (use cpu or auto)")
    return device


def output_dir(out: str, study: Study | None = None) -> Path:
    """The output directory, checked without creating anything that stays
    (toolkit.results.check_directory: names too long, a file or a FIFO in the way, /proc or
    /sys, no write permission; with `study`, also its CSV and cache paths)."""
    if not out.strip():
        raise ParameterError("--out must be a directory path (got an empty string)")
    if "\0" in out:
        raise ParameterError("--out must be a directory path (got a NUL character)")
    path = Path(out)
    if study is None:
        from toolkit.results import check_directory

        check_directory("--out", out, path)
    else:
        from toolkit.sweep import check_outputs

        check_outputs(path, study)
    return path


def _comparable(value: Any) -> str:
    """A parameter value as text that a CSV round trip keeps: 0.001, 1e-3 and 0.0010 agree."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return str(bool(value))
    try:
        return f"{float(value):.10g}"
    except (TypeError, ValueError):
        return str(value)


def configuration_change(csv: Path, cells: list[dict[str, Any]]) -> str | None:
    """How the study CSV at `csv` differs from the configuration whose cells are `cells`,
    as text such as "heads 1024, here 4096" (None: the same configuration, or no CSV).

    Compared are the parameter columns: every scalar value a cell carries (the axes, seed,
    and the shared parameters) against the values in the CSV's column of that name."""
    if not csv.is_file():
        return None
    import pandas as pd

    try:
        frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return "it is not a readable CSV"
    for key in cells[0]:
        wanted = {_comparable(c[key]) for c in cells if not isinstance(c[key], list | tuple)}
        if not wanted:
            continue
        if key not in frame:
            return f"it has no {key} column"
        have = {_comparable(v) for v in frame[key] if v != ""}
        if have != wanted:
            shown = ",".join(sorted(have)[:6]) + (",..." if len(have) > 6 else "")
            asked = ",".join(sorted(wanted)[:6]) + (",..." if len(wanted) > 6 else "")
            return f"{key} {shown or 'empty'}, here {asked}"
    return None


def parse_size(text: str | None) -> float | None:
    """--max-memory: bytes from text such as 8G, 512M, 1.5GiB or 1000000 (None: default)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.I)
    if not match:
        raise ParameterError(f"--max-memory must be a size such as 8G or 512M (got {text!r})")
    size = float(match.group(1)) * UNITS[match.group(2).upper()]
    if not 0 < size < math.inf:
        raise ParameterError(f"--max-memory must be a finite size > 0 such as 8G (got {text!r})")
    return size


def parse_seconds(text: str | None, flag: str, default: float) -> float:
    """A finite positive number of seconds (None: `default`)."""
    if text is None:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ParameterError(f"{flag} must be a finite number of seconds > 0 (got {text!r})")
    return seconds


def config_for(study: Study, profile: str, flags: dict[str, str | None], check: bool = True) -> Any:
    """Field defaults, then the profile's overrides, then the flags given; validated, the
    grid size checked (cheap) before the study's own checks (which may cost some work;
    with `check` False, left to the caller)."""
    from toolkit.sweep import check_grid

    if profile not in study.profiles:
        allowed = ", ".join(study.profiles)
        raise ParameterError(f"--profile must be one of {allowed} (got {profile!r})")
    overrides = dict(study.profiles[profile])
    for name, text in flags.items():
        if text is not None:
            overrides[name] = parse(study.config, name, text)
    config = build(study.config, overrides, check=False)
    check_grid(study, config)
    if check:
        study_checks(study, config)
    return config


def study_checks(study: Study, config: Any, timeout: float | None = None) -> None:
    """The study's own cross-field checks (`config.check()`), which may build tensors
    (st-dit computes the spectrum of each decay setting's Gamma), given `timeout`
    (CHECK_TIMEOUT) seconds: a grid too large to check in that time is refused in one line
    naming its axes' flags, as one too large to run. They run in a daemon thread that is
    abandoned, not waited for (the CLI then exits)."""
    import threading

    if not hasattr(config, "check"):
        return
    timeout = CHECK_TIMEOUT if timeout is None else timeout
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            config.check()
            outcome["ok"] = True
        except BaseException as err:  # raised below, in this thread
            outcome["error"] = err

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    if "error" in outcome:
        raise outcome["error"]
    if "ok" not in outcome:
        flags = ", ".join(flag(name) for name in study.axes)
        raise ParameterError(
            f"{flags}: checking these {study.grid_size(config)} cells takes more than "
            f"{timeout:g} s; split the sweep into smaller grids"
        )


def check_backend(backend: str, scheduler: str | None, workers: int | None) -> None:
    if backend not in BACKENDS:
        raise ParameterError(f"--backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if backend == "local" and (scheduler or workers is not None):
        raise ParameterError("--scheduler and --workers need --backend dask")
    if scheduler is not None and workers is not None:
        raise ParameterError("--scheduler and --workers exclude each other")
    if scheduler is not None and not scheduler.strip():
        raise ParameterError("--scheduler must be an address like tcp://host:8786 (got '')")
    if workers is not None and workers < 1:
        raise ParameterError(f"--workers must be an integer >= 1 (got {workers})")
    if backend == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ParameterError(
                "--backend dask needs dask.distributed: pip install 'theory-toolkit[dask]'"
            ) from None


def execute(
    study: Study,
    flags: dict[str, str | None],
    profile: str = "default",
    jobs: int = 1,
    device: str = "cpu",
    out: str = DEFAULT_OUT,
    force: bool = False,
    quiet: bool = False,
    backend: str = "local",
    scheduler: str | None = None,
    workers: int | None = None,
    max_memory: str | None = None,
    worker_timeout: str | None = None,
) -> int:
    """Validate everything, then run the sweep. Returns the exit status: 0, or 1 when some
    cells failed or diverged (their rows carry status and reason); raises SweepError (exit
    status 1) when the run stopped on a write error or a cluster without workers. A study
    CSV already in `out` that another configuration produced is replaced only with `force`."""
    from toolkit.sweep import WORKER_TIMEOUT, available_memory, check_memory, usable_cores

    config = config_for(study, profile, flags, check=False)
    if jobs < 1:
        raise ParameterError(f"--jobs must be an integer >= 1 (got {jobs})")
    check_backend(backend, scheduler, workers)
    if backend == "local" and worker_timeout is not None:
        raise ParameterError("--worker-timeout needs --backend dask")
    limit = parse_size(max_memory)
    timeout = parse_seconds(worker_timeout, "--worker-timeout", WORKER_TIMEOUT)
    # Every size is checked by arithmetic (grid, memory) before the study's own checks,
    # which may build tensors (st-dit's spectrum of Gamma); the sweep checks them again.
    cells = study.cells(config)
    wanted = 1 if scheduler else (workers or usable_cores()) if backend == "dask" else jobs
    at_once = min(wanted, usable_cores(), len(cells))
    check_memory(study, cells, at_once, available_memory() if limit is None else limit)
    study_checks(study, config)
    device = resolve_device(device)
    path = output_dir(str(out), study)
    change = None if force else configuration_change(path / study.output, cells)
    if change:
        raise ParameterError(
            f"--out {out}: {path / study.output} holds another configuration ({change}); "
            "pass --force to replace it, or choose another --out"
        )
    from toolkit.sweep import run_sweep

    result = run_sweep(
        study,
        config,
        path,
        jobs=jobs,
        device=device,
        progress=not quiet,
        backend=backend,
        scheduler=scheduler,
        workers=workers,
        max_memory=limit,
        worker_timeout=timeout,
    )
    typer.echo(
        f"{study.name}: {result.cells} cells ({result.computed} computed, "
        f"{result.cells - result.computed} from cache) -> {result.path}"
    )
    if result.failed:
        typer.echo(
            f"error: {result.failed} of {result.cells} cells failed or diverged "
            "(see the status and reason columns); a rerun retries the failed ones",
            err=True,
        )
        return 1
    return 0


RUN_OPTIONS: list[tuple[str, Any, Any, str]] = [
    ("profile", str, "default", "parameter preset (smoke, default, paper)"),
    ("jobs", int, 1, "cells run in parallel (worker processes share the cores; capped at them)"),
    ("device", str, "cpu", "cpu, cuda, or auto (cuda when torch sees a GPU)"),
    ("out", str, DEFAULT_OUT, "output directory: the CSV, and the cache in <out>/.cache"),
    (
        "force",
        bool,
        False,
        "replace a study CSV in --out that another configuration produced (without it the "
        "run stops; a rerun of the same configuration resumes and needs no --force)",
    ),
    ("quiet", bool, False, "no progress bar"),
    ("backend", str, "local", "local (this machine; --jobs) or dask (a dask cluster)"),
    ("scheduler", str | None, None, "dask: address of a running scheduler, tcp://host:8786"),
    (
        "workers",
        int | None,
        None,
        "dask: start a LocalCluster of this many worker processes [default: the cores]",
    ),
    (
        "max_memory",
        str | None,
        None,
        "refuse a grid whose largest cell, times the cells run at once, needs more memory "
        "than this (e.g. 8G; finite) [default: the available memory]",
    ),
    (
        "worker_timeout",
        str | None,
        None,
        "dask: seconds to wait for the cluster to have a worker, at the start and whenever "
        "it has none, before stopping with an error [default: 60]",
    ),
]


def profile_values(study: Study, profile: str = "default") -> dict[str, str]:
    """Each parameter's value, as text, in a run with `profile` and no flags: the field
    defaults with the profile's overrides applied. `toolkit list` and `toolkit run --help`
    both show these, so what they say is what a run uses."""
    config = build(study.config, dict(study.profiles[profile]), check=False)
    return {
        f.name: ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        for f, _ in fields(study.config)
        for value in [getattr(config, f.name)]
    }


def _command(study: Study):
    """A typer command whose options are the study's parameters plus the run options."""
    params = []
    for name, tp, default, help_ in RUN_OPTIONS:
        if name == "profile":
            help_ = f"parameter preset: {', '.join(study.profiles)}"
        if name == "out":
            help_ = (
                f"output directory: <out>/{study.output}, and the cache in <out>/.cache "
                f"(the committed results/ are written by `make {study.name}`)"
            )
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(default, flag(name), help=help_),
                annotation=tp,
            )
        )
    described = {d["name"]: d for d in describe(study.config)}
    values = profile_values(study, "default")
    for f, tp in fields(study.config):
        d = described[f.name]
        scalar, is_list = element_type(tp)
        allowed = ""
        if f.metadata.get("choices"):
            allowed = f"; {'one or more' if is_list else 'one'} of {d['allowed']}"
        elif d["allowed"]:
            allowed = f"; {d['allowed']}"
        help_ = f"{d['help']} [{d['type']}{allowed}; default: {values[f.name]}]"
        metavar = {int: "INT", float: "FLOAT", bool: "BOOL"}.get(scalar, "TEXT")
        metavar = f"{metavar},..." if is_list else metavar
        option = typer.Option(None, flag(f.name), help=help_, show_default=False, metavar=metavar)
        params.append(
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=str | None
            )
        )
    names = [f.name for f, _ in fields(study.config)]

    def command(**kwargs: Any) -> int:
        flags = {k: kwargs.pop(k) for k in names}
        return execute(study, flags, **kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return command


def study_help(study: Study) -> str:
    """`toolkit run STUDY --help`: the claim and where it is documented."""
    where = study.readme or "README.md"
    summary = " ".join(study.summary.split())
    return (
        f"{summary}\n\nDocumented in {where}. Every study parameter below is also a column "
        "of the CSV; defaults are those of the default profile (`toolkit list --profile P` "
        "shows another profile's)."
    )


def build_app(studies: Mapping[str, Study]) -> typer.Typer:
    """The typer application over a registry of studies."""
    app = typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        help="Numerical validation of theory on attention and diffusion models.",
    )
    run_app = typer.Typer(
        no_args_is_help=True,
        rich_markup_mode=None,
        help="Run a study's sweep (see `toolkit list`).",
    )
    app.add_typer(run_app, name="run")
    for name, study in studies.items():
        short = study.summary.strip().split(". ")[0].split("\n")[0]
        run_app.command(name, help=study_help(study), short_help=short)(_command(study))

    @app.command("list")
    def list_studies(
        profile: Annotated[
            str,
            typer.Option(
                "--profile",
                help="show the values of this profile (studies without it are left out)",
            ),
        ] = "default",
    ) -> None:
        """List the studies and every parameter with the value a run uses (the field
        default with --profile applied) and its allowed values."""
        shown = {name: s for name, s in studies.items() if profile in s.profiles}
        if not shown:
            every = sorted({p for s in studies.values() for p in s.profiles})
            raise ParameterError(f"--profile must be one of {', '.join(every)} (got {profile!r})")
        for name, study in shown.items():
            typer.echo(
                f"{name}  ->  {study.output}   profiles: {', '.join(study.profiles)}"
                f"   (values: {profile} profile)"
            )
            values = profile_values(study, profile)
            for d in describe(study.config):
                allowed = f"  [{d['allowed']}]" if d["allowed"] else ""
                typer.echo(f"  {d['flag']:<16} {values[d['name']]:<32} {d['help']}{allowed}")
            typer.echo("")

    @app.command("report")
    def report(
        results: Annotated[
            str,
            typer.Option(
                "--results",
                help="directory holding the study CSVs (results/ from make, runs/ from a plain "
                "`toolkit run`); outputs go there",
            ),
        ] = "results",
        jobs: Annotated[
            int,
            typer.Option(
                "--jobs", help="figures drawn in parallel worker processes (capped at the cores)"
            ),
        ] = 1,
    ) -> None:
        """Fit rates, compare models, draw figures and write REPORT.md (see toolkit.report)."""
        from toolkit.report import ReportError, write_report
        from toolkit.sweep import cap_workers

        if not results.strip():
            raise ParameterError("--results must be a directory path (got an empty string)")
        if jobs < 1:
            raise ParameterError(f"--jobs must be an integer >= 1 (got {jobs})")
        from toolkit.results import DERIVED_FILES, check_directory

        check_directory("--results", results, Path(results), ["REPORT.md", *DERIVED_FILES])
        try:
            paths = write_report(Path(results), studies, jobs=cap_workers(jobs, "--jobs"))
        except ReportError as err:
            raise ParameterError(f"--results {err}") from None
        typer.echo(f"report: {len(paths)} files written -> {paths[-1]}")

    return app


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (a capped --jobs, a bad cache entry) as one line on stderr."""
    typer.echo(f"warning: {message}", err=True)


def main(argv: list[str] | None = None, studies: Mapping[str, Study] | None = None) -> int:
    """Entry point: usage and parameter errors are one line on stderr and exit status 2."""
    if studies is None:
        from studies import registry

        studies = registry()
    app = build_app(studies)
    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        result = app(args=argv, standalone_mode=False, prog_name="toolkit")
    except ParameterError as err:
        return _fail(str(err))
    except typer.TyperException as err:  # click's usage errors, as vendored by typer
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        if type(err).__name__ == "NoArgsIsHelpError":  # a bare `toolkit` or `toolkit run`
            typer.echo(message)
            return _exit(2)
        return _fail(message)
    except typer.Exit as err:
        return _exit(err.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return _exit(130)
    except Exception as err:
        # A fault during the run (toolkit.sweep.SweepError: a write error, a cluster without
        # workers): one line, exit status 1; the finished cells are cached. Only a run
        # imports toolkit.sweep, so help and list still import neither it nor pandas.
        sweep = sys.modules.get("toolkit.sweep")
        if sweep is not None and isinstance(err, sweep.SweepError):
            return _fail(str(err), code=1)
        raise
    finally:
        warnings.showwarning = shown
    return _exit(result if isinstance(result, int) else 0)


def _fail(message: str, code: int = 2) -> int:
    lines = message.strip().splitlines() or ["invalid input"]
    typer.echo(f"error: {lines[0]}", err=True)
    return _exit(code)


def _exit(code: int) -> int:
    """Exit the process, unless TOOLKIT_NO_EXIT=1 (in-process calls from tests)."""
    if os.environ.get("TOOLKIT_NO_EXIT") != "1":
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
