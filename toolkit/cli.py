"""The `toolkit` command: a thin layer over studies.STUDIES and toolkit.sweep.

    toolkit list                      studies and their parameters with defaults
    toolkit run STUDY [flags]         run a study's sweep and write <out>/<study>.csv
    toolkit report [--results DIR]    rates.csv, comparisons.csv, figures/, REPORT.md in DIR

Every study parameter is a flag (`--test-size` for the field test_size); list-valued
flags take comma-separated values. Bad input exits with status 2 and one line on stderr
naming the flag and the allowed values, before anything is written.
"""

from __future__ import annotations

import inspect
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer

from toolkit.params import ParameterError, build, describe, element_type, fields, flag, parse
from toolkit.sweep import BACKENDS, run_sweep

PROFILES = ("smoke", "default", "paper")
DEVICES = ("cpu", "cuda", "auto")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Numerical validation of theory on attention and diffusion models.",
)
run_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Run a study's sweep (see `toolkit list`)."
)
app.add_typer(run_app, name="run")


def resolve_device(device: str) -> str:
    """cpu, cuda (error if torch sees no GPU) or auto (cuda when available)."""
    import torch

    if device not in DEVICES:
        raise ParameterError(f"--device must be one of {', '.join(DEVICES)} (got {device!r})")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ParameterError("--device cuda: torch sees no CUDA device (use cpu or auto)")
    return device


def check_writable(out: Path) -> None:
    """Fail early, before any work, if `out` cannot hold the results."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ParameterError(f"--out {out}: cannot write there ({reason})") from None


def config_for(study: ModuleType, profile: str, flags: dict[str, str | None]) -> Any:
    """Field defaults, then the profile's overrides, then the flags given; validated."""
    if profile not in study.PROFILES:
        allowed = ", ".join(study.PROFILES)
        raise ParameterError(f"--profile must be one of {allowed} (got {profile!r})")
    overrides = dict(study.PROFILES[profile])
    for name, text in flags.items():
        if text is not None:
            overrides[name] = parse(study.Config, name, text)
    return build(study.Config, overrides)


def check_backend(backend: str, scheduler: str | None, workers: int | None) -> None:
    if backend not in BACKENDS:
        raise ParameterError(f"--backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if backend == "local" and (scheduler or workers is not None):
        raise ParameterError("--scheduler and --workers need --backend dask")
    if scheduler and workers is not None:
        raise ParameterError("--scheduler and --workers exclude each other")
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
    study: ModuleType,
    flags: dict[str, str | None],
    profile: str = "default",
    jobs: int = 1,
    device: str = "cpu",
    out: Path = Path("results"),
    quiet: bool = False,
    backend: str = "local",
    scheduler: str | None = None,
    workers: int | None = None,
) -> int:
    """Validate everything, then run the sweep. Returns the exit status: 0, or 1 when some
    cells failed or diverged (their rows carry status and reason)."""
    config = config_for(study, profile, flags)
    if jobs < 1:
        raise ParameterError(f"--jobs must be an integer >= 1 (got {jobs})")
    check_backend(backend, scheduler, workers)
    device = resolve_device(device)
    check_writable(out)
    result = run_sweep(
        study,
        config,
        out,
        jobs=jobs,
        device=device,
        progress=not quiet,
        backend=backend,
        scheduler=scheduler,
        workers=workers,
    )
    typer.echo(
        f"{study.NAME}: {result.cells} cells ({result.computed} computed, "
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


def _command(study: ModuleType):
    """A typer command whose options are the study's parameters plus the run options."""
    options = [
        ("profile", str, "default", f"parameter preset: {', '.join(study.PROFILES)}"),
        ("jobs", int, 1, "cells run in parallel (worker processes share the cores)"),
        ("device", str, "cpu", "cpu, cuda, or auto (cuda when torch sees a GPU)"),
        ("out", Path, Path("results"), f"output directory; the CSV is <out>/{study.OUTPUT}"),
        ("quiet", bool, False, "no progress bar"),
        ("backend", str, "local", "local (this machine; --jobs) or dask (a dask cluster)"),
        ("scheduler", str | None, None, "dask: address of a running scheduler, tcp://host:8786"),
        (
            "workers",
            int | None,
            None,
            "dask: start a LocalCluster of this many worker processes [default: the cores]",
        ),
    ]
    params = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(default, flag(name), help=help_),
            annotation=tp,
        )
        for name, tp, default, help_ in options
    ]
    described = {d["name"]: d for d in describe(study.Config)}
    for f, tp in fields(study.Config):
        d = described[f.name]
        allowed = f"; one or more of {d['allowed']}" if f.metadata.get("choices") else ""
        if not allowed and d["allowed"]:
            allowed = f"; {d['allowed']}"
        help_ = f"{d['help']} [{d['type']}{allowed}; default: {d['default']}]"
        scalar, is_list = element_type(tp)
        metavar = {int: "INT", float: "FLOAT", bool: "BOOL"}.get(scalar, "TEXT")
        metavar = f"{metavar},..." if is_list else metavar
        option = typer.Option(None, flag(f.name), help=help_, show_default=False, metavar=metavar)
        params.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=option,
                annotation=str | None,
            )
        )
    names = [f.name for f, _ in fields(study.Config)]

    def command(**kwargs: Any) -> int:
        flags = {k: kwargs.pop(k) for k in names}
        return execute(study, flags, **kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = (study.__doc__ or "").strip()
    return command


def _register() -> None:
    from studies import STUDIES

    for name, study in STUDIES.items():
        summary = (study.__doc__ or "").strip().splitlines()[0]
        run_app.command(name, help=(study.__doc__ or "").strip(), short_help=summary)(
            _command(study)
        )


@app.command("list")
def list_studies() -> None:
    """List the studies and every parameter with its default and allowed values."""
    from studies import STUDIES

    for name, study in STUDIES.items():
        typer.echo(f"{name}  ->  {study.OUTPUT}   profiles: {', '.join(study.PROFILES)}")
        for d in describe(study.Config):
            allowed = f"  [{d['allowed']}]" if d["allowed"] else ""
            typer.echo(f"  {d['flag']:<16} {d['default']:<32} {d['help']}{allowed}")
        typer.echo("")


@app.command("report")
def report(
    results: Annotated[
        Path,
        typer.Option("--results", help="directory holding the study CSVs; outputs go there"),
    ] = Path("results"),
) -> None:
    """Fit rates, compare models, draw figures and write REPORT.md (see toolkit.report)."""
    from toolkit.report import ReportError, write_report

    try:
        paths = write_report(results)
    except ReportError as err:
        raise ParameterError(f"--results {err}") from None
    typer.echo(f"report: {len(paths)} files written -> {paths[-1]}")


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage and parameter errors are one line on stderr and exit status 2."""
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
    return _exit(result if isinstance(result, int) else 0)


def _fail(message: str) -> int:
    lines = message.strip().splitlines() or ["invalid input"]
    typer.echo(f"error: {lines[0]}", err=True)
    return _exit(2)


def _exit(code: int) -> int:
    """Exit the process, unless TOOLKIT_NO_EXIT=1 (in-process calls from tests)."""
    if os.environ.get("TOOLKIT_NO_EXIT") != "1":
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
