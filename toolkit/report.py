"""The validation report of a results directory: theory against measurement.

    write_report(results_dir) -> list[Path]        (the CLI's `toolkit report --results DIR`)

reads every study CSV in the directory and writes, next to them,

    rates.csv          one row per curve (study, model, setting, metric): the fitted
                       log-log slope of the metric against n with its seed-bootstrap
                       interval, the theory exponent, the n range used and a verdict
                       (method and thresholds: toolkit.rates)
    comparisons.csv    claims that are orderings between models, one row per claim and
                       setting (when some study declares `comparisons`)
    figures/*.png      one figure per (study, metric) (toolkit.plots), plus whatever the
                       study's own `figures` hook draws
    REPORT.md          per study: its claims, the tables above as numbers, the figures

A study is analysed through the optional attributes of its module (toolkit.rates lists
them); the claims shown are the module's `CLAIMS` string, or else the first paragraph of
its docstring. Rows of a study with no module in studies.STUDIES are listed, not analysed.
Everything is checked and computed before the first file is written, so bad input
(ReportError) writes nothing; every file is written atomically.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pandas as pd

from toolkit import __version__
from toolkit.plots import figure_name, plot_metric
from toolkit.rates import LEVEL, MAX_CI_WIDTH, MIN_N, RATE_COLUMNS, RESAMPLES, SEED, study_rates
from toolkit.results import FIRST_COLUMNS, atomic_write_text, study_files

COMPARISON_COLUMNS = (
    "study",
    "claim",
    "target",
    "statistic",
    "value",
    "ci_low",
    "ci_high",
    "verdict",
)


class ReportError(ValueError):
    """Input the report cannot use (no directory, no study CSV, missing columns)."""


@dataclass
class StudyAnalysis:
    """What the report knows about one study: its rows, module and derived tables."""

    name: str
    frame: pd.DataFrame
    module: ModuleType | None
    rates: pd.DataFrame
    comparisons: pd.DataFrame | None
    figures: list[Path] = field(default_factory=list)


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
            frame = pd.read_csv(path)
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


def claims_text(module: ModuleType) -> str:
    """The claims a study puts under test: CLAIMS, else its docstring's first paragraph."""
    claims = getattr(module, "CLAIMS", None)
    if claims:
        return textwrap.dedent(claims).strip()
    return " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())


def analyse(
    frames: Mapping[str, pd.DataFrame],
    studies: Mapping[str, ModuleType],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> list[StudyAnalysis]:
    """Rates and comparisons of every study (nothing written); ReportError on bad input."""
    out = []
    for name, frame in frames.items():
        module = studies.get(name)
        if module is None:
            empty = pd.DataFrame(columns=list(RATE_COLUMNS))
            out.append(StudyAnalysis(name, frame, None, empty, None))
            continue
        groups = tuple(getattr(module, "RATE_GROUPS", ()))
        files = ", ".join(sorted(frame["_file"].unique()))
        missing = [c for c in groups if c not in frame.columns]
        if missing:
            raise ReportError(
                f"{files}: missing column(s) {', '.join(missing)} (RATE_GROUPS of {name})"
            )
        frame = frame.drop(columns="_file")
        try:
            rates = study_rates(frame, module, resamples=resamples, seed=seed)
        except ValueError as err:
            raise ReportError(f"{files}: {err}") from None
        comparisons = None
        if hasattr(module, "comparisons"):
            comparisons = module.comparisons(frame).reindex(columns=list(COMPARISON_COLUMNS))
        out.append(StudyAnalysis(name, frame, module, rates, comparisons))
    return out


def draw_figures(analysis: StudyAnalysis, figdir: Path) -> list[Path]:
    """The (study, metric) figures, then the study's own `figures` hook if it has one."""
    module = analysis.module
    if module is None:
        return []
    floors = dict(getattr(module, "FLOORS", {}))
    groups = tuple(getattr(module, "RATE_GROUPS", ()))
    paths = []
    for metric in sorted(analysis.rates["metric"].unique()):
        path = figdir / figure_name(analysis.name, metric)
        paths.append(
            plot_metric(analysis.frame, metric, analysis.rates, path, groups, floors.get(metric))
        )
    if hasattr(module, "figures"):
        paths += [Path(p) for p in module.figures(analysis.frame, figdir)]
    return paths


def write_report(
    results_dir: Path | str,
    studies: Mapping[str, ModuleType] | None = None,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> list[Path]:
    """Write rates.csv, comparisons.csv, figures/ and REPORT.md into `results_dir`.

    `studies` maps study names to modules (default: studies.STUDIES). Returns the paths
    written, REPORT.md last. Raises ReportError, before writing anything, on bad input.
    """
    results_dir = Path(results_dir)
    if studies is None:
        from studies import STUDIES as studies
    analyses = analyse(read_study_frames(results_dir), studies, resamples=resamples, seed=seed)

    figdir = results_dir / "figures"
    figdir.mkdir(exist_ok=True)
    written = []
    for analysis in analyses:
        analysis.figures = draw_figures(analysis, figdir)
        written += analysis.figures
    rates = pd.concat([a.rates for a in analyses if not a.rates.empty] or [_empty(RATE_COLUMNS)])
    atomic_write_text(results_dir / "rates.csv", rates.to_csv(index=False))
    written.append(results_dir / "rates.csv")
    declared = [a.comparisons for a in analyses if a.comparisons is not None]
    if declared:
        table = pd.concat([c for c in declared if not c.empty] or [_empty(COMPARISON_COLUMNS)])
        atomic_write_text(results_dir / "comparisons.csv", table.to_csv(index=False))
        written.append(results_dir / "comparisons.csv")
    report = results_dir / "REPORT.md"
    atomic_write_text(report, render_markdown(analyses, results_dir, resamples))
    written.append(report)
    return written


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
                _num(r.theory),
                n_range,
                str(r.n_points),
                f"**{r.verdict}**",
            ]
        )
    return markdown_table([*header, "verdict"], rows)


def _comparisons_table(table: pd.DataFrame) -> str:
    header = ["claim", "target", "statistic", "value", f"{LEVEL:.0%} CI", "verdict"]
    rows = [
        [
            r.claim,
            r.target,
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
        f"than {MAX_CI_WIDTH:g}; else *no theory*, *consistent* (theory inside the "
        "interval), *faster than theory* (interval entirely below the theory exponent) or "
        "*slower than theory* (entirely above).",
        "",
    ]
    for a in analyses:
        lines += [f"## {a.name}", ""]
        if a.module is None:
            lines += [
                f"{len(a.frame)} rows, but no study module named `{a.name}` is registered "
                "in studies.STUDIES, so they are not analysed.",
                "",
            ]
            continue
        lines += ["Claims under test (from the study module):", ""]
        lines += ["> " + line if line else ">" for line in claims_text(a.module).splitlines()]
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
            for path in a.figures:
                rel = path.relative_to(results_dir) if path.is_relative_to(results_dir) else path
                lines += [f"![{path.stem}]({rel.as_posix()})", ""]
    return "\n".join(lines).rstrip() + "\n"
