"""The validation report of a results directory: theory against measurement.

    write_report(results_dir, studies) -> list[Path]   (the CLI's `toolkit report`)

reads every study CSV in the directory and writes, next to them,

    rates.csv          one row per curve (study, model, setting, metric): the fitted
                       log-log slope of the metric against n with its seed-bootstrap
                       interval, the theory exponent, the n range used and a verdict
                       (method and thresholds: toolkit.rates)
    comparisons.csv    claims that are orderings between models, one row per claim and
                       setting (toolkit.study.COMPARISON_COLUMNS; when some study declares
                       `comparisons`)
    figures/*.png      one figure per (study, metric) (toolkit.plots), named
                       <slug>_<metric>.png, plus whatever the study's own `figures` draws
    REPORT.md          per study: its claims, the tables above as numbers, the figures

A study is analysed through its toolkit.study.Study in `studies` (name -> Study, passed by
the caller: this module imports no study); rows of a study not in it are listed, not
analysed. The destination is checked first (ReportError: nothing written), everything is
computed in memory, and the files are written last, each atomically.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from toolkit import __version__
from toolkit.plots import plot_metric
from toolkit.rates import (
    LEVEL,
    MAX_CI_WIDTH,
    MIN_N,
    RATE_COLUMNS,
    RESAMPLES,
    SEED,
    study_rates,
    usable_rows,
)
from toolkit.results import FIRST_COLUMNS, TEXT_COLUMNS, atomic_write_bytes, study_files
from toolkit.study import COMPARISON_COLUMNS, Study


class ReportError(ValueError):
    """Input the report cannot use (no directory, no study CSV, missing columns) or a
    destination it cannot write."""


@dataclass
class StudyAnalysis:
    """What the report knows about one study: its rows, declaration and derived tables."""

    name: str
    frame: pd.DataFrame
    study: Study | None
    rates: pd.DataFrame
    comparisons: pd.DataFrame | None
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG


def read_study_frames(results_dir: Path) -> dict[str, pd.DataFrame]:
    """The rows of each study found in the directory's CSVs, checked for the shared columns."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ReportError(f"{results_dir}: no such directory")
    files = study_files(results_dir)
    if not files:
        raise ReportError(f"{results_dir}: no study CSV files")
    frames = []
    for path in files:
        try:
            frame = pd.read_csv(path, dtype=TEXT_COLUMNS)
        except (OSError, ValueError) as err:  # pandas' parser errors are ValueErrors
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ReportError(f"{path}: cannot read ({reason})") from None
        missing = [c for c in FIRST_COLUMNS if c not in frame.columns]
        if missing:
            raise ReportError(
                f"{path}: missing column(s) {', '.join(missing)} "
                f"(a study CSV needs {', '.join(FIRST_COLUMNS)})"
            )
        for col in ("n", "value"):
            if not pd.api.types.is_numeric_dtype(frame[col]):
                raise ReportError(f"{path}: column {col} is not numeric")
        frames.append(frame.assign(_file=str(path)))
    rows = pd.concat(frames, ignore_index=True)
    return {
        str(name): study.dropna(axis=1, how="all").reset_index(drop=True)
        for name, study in rows.groupby("study", sort=True)
    }


def claims_text(study: Study) -> str:
    """The claims a study puts under test: its `claims`, else its summary."""
    return textwrap.dedent(study.claims or study.summary).strip()


def analyse(
    frames: Mapping[str, pd.DataFrame],
    studies: Mapping[str, Study],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> list[StudyAnalysis]:
    """Rates and comparisons of every study (nothing written); ReportError on bad input."""
    out = []
    for name, frame in frames.items():
        study = studies.get(name)
        if study is None:
            empty = pd.DataFrame(columns=list(RATE_COLUMNS))
            out.append(StudyAnalysis(name, frame.drop(columns="_file"), None, empty, None))
            continue
        files = ", ".join(sorted(frame["_file"].unique()))
        missing = [c for c in study.rate_groups if c not in frame.columns]
        if missing:
            raise ReportError(
                f"{files}: missing column(s) {', '.join(missing)} (rate groups of {name})"
            )
        frame = frame.drop(columns="_file")
        try:
            rates = study_rates(frame, study, resamples=resamples, seed=seed)
        except ValueError as err:
            raise ReportError(f"{files}: {err}") from None
        comparisons = None
        if study.comparisons is not None:
            # Claims are judged on usable rows only: no inf, no value <= 0, no n <= 0.
            usable = usable_rows(frame)
            comparisons = study.comparisons(usable).reindex(columns=list(COMPARISON_COLUMNS))
        out.append(StudyAnalysis(name, frame, study, rates, comparisons))
    return out


def draw_figures(analysis: StudyAnalysis) -> dict[str, bytes]:
    """The (study, metric) figures, then the study's own `figures`: file name -> PNG."""
    study = analysis.study
    if study is None:
        return {}
    figures = {
        study.figure_name(metric): plot_metric(
            analysis.frame,
            metric,
            analysis.rates,
            study.rate_groups,
            study.floors.get(metric),
        )
        for metric in sorted(analysis.rates["metric"].unique())
    }
    if study.figures is not None:
        figures.update(study.figures(analysis.frame))
    return figures


OUTPUTS = ("rates.csv", "comparisons.csv", "REPORT.md", "figures")


def check_destination(results_dir: Path) -> None:
    """ReportError unless every output can be written: the directory is writable and no
    output name is taken by something of the wrong kind (e.g. rates.csv a directory)."""
    if not os.access(results_dir, os.W_OK | os.X_OK):
        raise ReportError(f"{results_dir}: cannot write there (permission denied)")
    for name in OUTPUTS:
        path = results_dir / name
        is_dir_name = name == "figures"
        if path.exists() and path.is_dir() != is_dir_name:
            kind = "a file" if is_dir_name else "a directory"
            raise ReportError(f"{path} is {kind}; cannot write the report there")
        if is_dir_name and path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            raise ReportError(f"{path}: cannot write there (permission denied)")


def write_report(
    results_dir: Path | str,
    studies: Mapping[str, Study],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> list[Path]:
    """Write rates.csv, comparisons.csv, figures/ and REPORT.md into `results_dir`.

    `studies` maps study names to their Study (the CLI passes studies.registry()). Returns
    the paths written, REPORT.md last. Bad input or an unwritable destination raises
    ReportError before anything is written; all files are computed, then written.
    """
    results_dir = Path(results_dir)
    frames = read_study_frames(results_dir)
    check_destination(results_dir)
    analyses = analyse(frames, studies, resamples=resamples, seed=seed)
    figdir = results_dir / "figures"
    files: dict[Path, bytes] = {}
    for analysis in analyses:
        analysis.figures = draw_figures(analysis)
        files.update({figdir / name: png for name, png in analysis.figures.items()})
    rates = pd.concat([a.rates for a in analyses if not a.rates.empty] or [_empty(RATE_COLUMNS)])
    files[results_dir / "rates.csv"] = rates.to_csv(index=False).encode()
    declared = [a.comparisons for a in analyses if a.comparisons is not None]
    if declared:
        table = pd.concat([c for c in declared if not c.empty] or [_empty(COMPARISON_COLUMNS)])
        files[results_dir / "comparisons.csv"] = table.to_csv(index=False).encode()
    report = results_dir / "REPORT.md"
    files[report] = render_markdown(analyses, results_dir, resamples).encode()
    taken = [path for path in files if path.is_dir()]
    if taken:  # checked before the first write: a report is written whole or not at all
        raise ReportError(f"{taken[0]} is a directory; cannot write the report there")
    try:
        figdir.mkdir(exist_ok=True)
        for path, data in files.items():
            atomic_write_bytes(path, data)
    except OSError as err:
        raise ReportError(f"{results_dir}: writing failed ({err.strerror or err})") from None
    return list(files)


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(columns=list(columns))


# ---- REPORT.md -------------------------------------------------------------------------


def _num(x: object, spec: str = ".3f") -> str:
    return "-" if x is None or pd.isna(x) else format(float(x), spec)


def _interval(low: object, high: object, spec: str = ".3f") -> str:
    if pd.isna(low) or pd.isna(high):
        return "-"
    return f"[{_num(low, spec)}, {_num(high, spec)}]"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""
    cells = [[str(c).replace("|", "\\|") for c in row] for row in [header, *rows]]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("---" for _ in header) + "|")
    return "\n".join(lines)


def _rates_table(rates: pd.DataFrame) -> str:
    pct = f"{LEVEL:.0%} CI"
    header = ["metric", "setting", "model", "slope", pct, "theory", "n range", "n values"]
    rows = []
    for r in rates.sort_values(["metric", "setting", "model"]).itertuples():
        n_range = "-" if pd.isna(r.n_min) else f"{r.n_min}-{r.n_max}"
        rows.append(
            [
                r.metric,
                r.setting,
                r.model,
                _num(r.slope),
                _interval(r.ci_low, r.ci_high),
                _num(r.theory)
                + ("" if r.test == "two-sided" or pd.isna(r.theory) else f" ({r.test})"),
                n_range,
                str(r.n_points),
                f"**{r.verdict}**",
            ]
        )
    return markdown_table([*header, "verdict"], rows)


def _comparisons_table(table: pd.DataFrame) -> str:
    header = ["claim", "setting", "statistic", "value", f"{LEVEL:.0%} CI", "verdict"]
    rows = [
        [
            r.claim,
            r.setting,
            r.statistic,
            _num(r.value, ".3g"),
            _interval(r.ci_low, r.ci_high, ".3g"),
            f"**{r.verdict}**",
        ]
        for r in table.itertuples()
    ]
    return markdown_table(header, rows)


def _verdict_counts(column: pd.Series) -> str:
    counts = column.value_counts()
    return ", ".join(f"{count} {name}" for name, count in counts.items())


def render_markdown(
    analyses: list[StudyAnalysis], results_dir: Path, resamples: int = RESAMPLES
) -> str:
    """REPORT.md: method, then per study its claims, tables of numbers and figures."""
    lines = [
        "# Validation report: theory against measurement",
        "",
        f"Generated by `toolkit report` (toolkit {__version__}) from the study CSVs in "
        f"`{results_dir}`. Every number below is read from `rates.csv` and "
        "`comparisons.csv` in the same directory.",
        "",
        "Method. Per curve (study, model, setting, metric), least squares of log(value) on "
        "log(n) over the per-seed points gives the slope; its interval is a "
        f"{LEVEL:.0%} percentile bootstrap that resamples seeds within each n "
        f"({resamples} resamples, fixed seed, small-sample corrected; "
        "see toolkit.rates). Points at or below a recorded noise floor are excluded. "
        f"Verdict: *inconclusive* with fewer than {MIN_N} distinct n or an interval wider "
        f"than {MAX_CI_WIDTH:g}; else *no theory*, or by the theory's test: two-sided (the "
        "theory gives the rate): *consistent* (theory inside the interval), *faster than "
        "theory* (interval entirely below the theory exponent) or *slower than theory* "
        "(entirely above); *at least* (an upper bound over a class, tested on one member): "
        "*at least the theory rate* (interval reaches down to the exponent) or *slower than "
        "theory*; *no faster* (a lower bound, tested on its hard family): *no faster than "
        "theory* (interval reaches up to the exponent) or *faster than theory*.",
        "",
    ]
    for a in analyses:
        lines += [f"## {a.name}", ""]
        if a.study is None:
            lines += [
                f"{len(a.frame)} rows, but no study named `{a.name}` is registered, "
                "so they are not analysed.",
                "",
            ]
            continue
        lines += ["Claims under test (from the study module):", ""]
        lines += ["> " + line if line else ">" for line in claims_text(a.study).splitlines()]
        lines += [""]
        models = ", ".join(sorted(a.frame["model"].astype(str).unique()))
        seeds = a.frame["seed"].nunique()
        lines += [f"Data: {len(a.frame)} rows; models {models}; {seeds} seeds.", ""]
        lines += ["### Rates", ""]
        if a.rates.empty:
            lines += ["No curves.", ""]
        else:
            lines += [f"Verdicts: {_verdict_counts(a.rates['verdict'])}.", ""]
            lines += [_rates_table(a.rates), ""]
        if a.comparisons is not None:
            lines += ["### Comparisons between models", ""]
            if a.comparisons.empty:
                lines += ["No comparison applies to the models and settings in this run.", ""]
            else:
                lines += [f"Verdicts: {_verdict_counts(a.comparisons['verdict'])}.", ""]
                lines += [_comparisons_table(a.comparisons), ""]
        if a.figures:
            lines += ["### Figures", ""]
            for name in a.figures:
                lines += [f"![{Path(name).stem}](figures/{name})", ""]
    return "\n".join(lines).rstrip() + "\n"
