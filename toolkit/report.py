"""The validation report of a results directory: theory against measurement.

    write_report(results_dir, studies) -> list[Path]   (the CLI's `toolkit report`)

reads every study CSV in the directory and writes, next to them,

    rates.csv          one row per curve (study, model, setting, metric): the fitted
                       log-log slope of the metric against n with its seed-bootstrap
                       interval, the theory exponent, the n range used and a verdict
                       (method and thresholds: toolkit.rates)
    sample_complexity.csv
                       one row per curve of rates.csv and error level eps: n_eps, the
                       smallest n at which the seed mean reaches eps, its interval and a
                       status (toolkit.rates.sample_complexity)
    comparisons.csv    claims that are orderings between models, one row per claim and
                       setting (toolkit.study.COMPARISON_COLUMNS; when some study declares
                       `comparisons`)
    figures/*.png      one figure per (study, metric) (toolkit.plots), named
                       <slug>_<metric>.png, one of n_eps per study,
                       <slug>_sample_complexity.png, plus whatever the study's own
                       `figures` draws
    REPORT.md          first one table of claims across studies (claims_table: each
                       comparison claim, and each (study, metric, model, test) with a
                       theory exponent, over its settings, with one verdict and the count
                       of each setting's verdict), then the method, then per study: its
                       claims, the rate table (curves with a theory exponent), the curves
                       without one in their own table, the comparisons, the sample
                       complexity and the figures

Each immediate subdirectory holding study CSVs (another profile's --out folder, e.g.
results/st_dit_depth) gets the same files of its own, and the top REPORT.md ends with an
"Other profiles" section: each folder's claims table and study figures, linked there.

A study is analysed through its toolkit.study.Study in `studies` (name -> Study, passed by
the caller: this module imports no study); rows of a study not in it are listed, not
analysed. The destination is checked first (ReportError: nothing written), everything is
computed in memory, and the files are written last, each atomically.
"""

from __future__ import annotations

import os
import textwrap
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from toolkit import __version__, stats
from toolkit.plots import complexity_axis, plot_metric, plot_sample_complexity
from toolkit.rates import (
    LEVEL,
    LEVELS_PER_METRIC,
    NEAR_FLOOR,
    RATE_COLUMNS,
    RESAMPLES,
    SAMPLE_COMPLEXITY_COLUMNS,
    SEED,
    rate_rows,
    setting_labels,
    study_design,
    study_rates,
    study_sample_complexity,
    usable_rows,
)
from toolkit.results import FIRST_COLUMNS, TEXT_COLUMNS, study_files, write_set
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
    # SAMPLE_COMPLEXITY_COLUMNS, then the study's rate-group columns (for the figure)
    sample_complexity: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(SAMPLE_COMPLEXITY_COLUMNS))
    )
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG
    error: str = ""  # why the study could not be analysed (its section says so)
    design: dict[str, Any] | None = None  # toolkit.rates.study_design, for the self-test
    notes: list[str] = field(default_factory=list)  # figures that could not be drawn, ...


def read_study_frames(results_dir: Path) -> dict[str, pd.DataFrame]:
    """The rows of each study found in the directory's CSVs, checked for the shared columns."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ReportError(f"{results_dir}: no such directory")
    # The report's own tables are not study CSVs (toolkit.results.DERIVED_FILES lists them
    # too; this keeps a second report over the same directory working either way).
    files = [path for path in study_files(results_dir) if path.name not in OUTPUTS]
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
    keep = {*FIRST_COLUMNS, "_file"}  # kept even when empty (a study whose values are all NaN)

    def columns(study: pd.DataFrame) -> list[str]:
        return [c for c in study.columns if c in keep or study[c].notna().any()]

    return {
        str(name): study[columns(study)].reset_index(drop=True)
        for name, study in rows.groupby("study", sort=True)
    }


def claims_text(study: Study) -> str:
    """The claims a study puts under test: its `claims`, else its summary."""
    return textwrap.dedent(study.claims or study.summary).strip()


MAX_N = 1e12  # a sample size above this is not one: the study is refused, with a line


def analyse(
    frames: Mapping[str, pd.DataFrame],
    studies: Mapping[str, Study],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> list[StudyAnalysis]:
    """Rates and comparisons of every study (nothing written). Each study is analysed on
    its own: one that cannot be (missing columns, an absurd n, a declaration that raises)
    gets an `error` that its section of REPORT.md states, and the others go on."""
    out = []
    for name, frame in frames.items():
        study = studies.get(name)
        files = ", ".join(sorted(frame["_file"].unique()))
        frame = frame.drop(columns="_file")
        empty = pd.DataFrame(columns=list(RATE_COLUMNS))
        if study is None:
            out.append(StudyAnalysis(name, frame, None, empty, None))
            continue
        try:
            out.append(_analyse_study(name, frame, study, resamples, seed))
        except Exception as err:  # noqa: BLE001 - one broken study never stops the others
            text = str(err).strip().splitlines()[0] if str(err).strip() else ""
            reason = f"{files}: {text or type(err).__name__}"
            warnings.warn(f"{name} not analysed: {reason}", ReportWarning, stacklevel=2)
            out.append(StudyAnalysis(name, frame, study, empty, None, error=reason))
    return out


class ReportWarning(UserWarning):
    """A study or figure that the report could not produce (the rest goes on)."""


def _ran(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of cells that ran (status ok, or no status recorded)."""
    if "status" not in frame:
        return frame
    return frame[frame["status"].fillna("ok") == "ok"]


def _analyse_study(
    name: str, frame: pd.DataFrame, study: Study, resamples: int, seed: int
) -> StudyAnalysis:
    ran = _ran(frame)
    empty = pd.DataFrame(columns=list(RATE_COLUMNS))
    if ran.empty:  # every cell failed: nothing to fit; the failed-cells section says why
        return StudyAnalysis(name, frame, study, empty, None)
    missing = [c for c in study.rate_groups if c not in ran.columns]
    if missing:
        raise ReportError(f"missing column(s) {', '.join(missing)} (rate groups of {name})")
    n = ran["n"].to_numpy(dtype=float)
    bad = n[~np.isfinite(n) | (n > MAX_N) | (n <= 0)]
    if bad.size:
        raise ReportError(
            f"column n holds {bad[0]:g}: not a sample size (a positive number at most {MAX_N:g})"
        )
    designs: list[dict[str, Any]] = []
    rates = study_rates(frame, study, designs=designs)
    complexity = study_sample_complexity(frame, study, resamples=resamples, seed=seed)
    comparisons = None
    if study.comparisons is not None:
        # Claims are judged on usable rows only: no inf, no value <= 0, no n <= 0.
        found = study.comparisons(usable_rows(ran), resamples=resamples, seed=seed)
        comparisons = found.reindex(columns=list(COMPARISON_COLUMNS))
    analysis = StudyAnalysis(name, frame, study, rates, comparisons, complexity)
    analysis.design = study_design(frame, study, designs)
    return analysis


def failed_cells(frame: pd.DataFrame, limit: int = 20) -> pd.DataFrame:
    """Cells that failed or diverged, one row per (model, status, reason): how many cells,
    which (n, seed), at most `limit` rows (the most frequent)."""
    columns = ["model", "status", "reason", "cells", "where"]
    if "status" not in frame:
        return pd.DataFrame(columns=columns)
    bad = frame[frame["status"].fillna("ok") != "ok"].drop_duplicates(["model", "n", "seed"])
    if bad.empty:
        return pd.DataFrame(columns=columns)
    reason = bad["reason"] if "reason" in bad else pd.Series("", index=bad.index)
    bad = bad.assign(
        reason=reason.fillna("").astype(str).str.split("\n").str[0].str[:120],
        where=bad["n"].map(lambda v: f"{v:g}") + "/" + bad["seed"].astype(str),
    )
    table = bad.groupby(["model", "status", "reason"], dropna=False).agg(
        cells=("where", "size"), where=("where", lambda w: ", ".join(list(w)[:6]))
    )
    table = table.reset_index().sort_values("cells", ascending=False).head(limit)
    return table[columns]


def figure_tasks(analysis: StudyAnalysis) -> list[tuple[str | None, Any, tuple]]:
    """What draw_figures draws, as (file name, function, arguments); a None name marks the
    study's own `figures` (a dict of files)."""
    study = analysis.study
    if study is None or analysis.error:
        return []
    tasks: list[tuple[str | None, Any, tuple]] = [
        (
            study.figure_name(metric),
            plot_metric,
            (analysis.frame, metric, analysis.rates, study.rate_groups, study.floors.get(metric)),
        )
        for metric in sorted(analysis.rates["metric"].unique())
    ]
    if not analysis.sample_complexity.empty:
        args = (analysis.sample_complexity, study.rate_groups)
        tasks.append((complexity_figure(study), plot_sample_complexity, args))
    if study.figures is not None and not _ran(analysis.frame).empty:
        tasks.append((None, study.figures, (_ran(analysis.frame),)))
    return tasks


def _draw(fn: Any, *args: Any) -> Any:
    """fn(*args), or a FigureFailure naming the exception: a figure that cannot be drawn
    is listed in the report, never stops it."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001
        return FigureFailure(f"{type(err).__name__}: {str(err).strip()[:200]}")


@dataclass(frozen=True)
class FigureFailure:
    reason: str


def _run_figure_tasks(tasks: list[tuple[str | None, Any, tuple]], jobs: int) -> list[Any]:
    if jobs > 1 and len(tasks) > 1:
        from joblib import Parallel, delayed

        run = Parallel(n_jobs=min(jobs, len(tasks)), backend="loky")
        return run(delayed(_draw)(fn, *args) for _, fn, args in tasks)
    return [_draw(fn, *args) for _, fn, args in tasks]


def _collect(
    tasks: list[tuple[str | None, Any, tuple]], results: list[Any], notes: list[str] | None = None
) -> dict[str, bytes]:
    figures: dict[str, bytes] = {}
    for (name, _, _), result in zip(tasks, results, strict=True):
        if isinstance(result, FigureFailure):
            text = f"figure {name or 'of the study'} not drawn ({result.reason})"
            warnings.warn(text, ReportWarning, stacklevel=2)
            if notes is not None:
                notes.append(text)
            continue
        figures.update(result if name is None else {name: result})
    return figures


def draw_figures(analysis: StudyAnalysis, jobs: int = 1) -> dict[str, bytes]:
    """The (study, metric) figures, then the sample-complexity figure and the study's own
    `figures`: file name -> PNG; `jobs` worker processes draw them (1: this process)."""
    tasks = figure_tasks(analysis)
    return _collect(tasks, _run_figure_tasks(tasks, jobs))


def complexity_figure(study: Study) -> str:
    """The file name of a study's sample-complexity figure, e.g. st_dit_sample_complexity.png."""
    return study.figure_name("sample_complexity")


OUTPUTS = ("rates.csv", "sample_complexity.csv", "comparisons.csv", "REPORT.md", "figures")


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


def profile_dirs(results_dir: Path) -> list[Path]:
    """The immediate subdirectories holding study CSVs: other profiles' --out folders
    (e.g. results/st_dit_depth), reported in their own REPORT.md and summarised in this one."""
    return sorted(
        sub
        for sub in Path(results_dir).iterdir()
        if sub.is_dir() and not sub.name.startswith(".") and sub.name != "figures"
        and study_files(sub)
    )  # fmt: skip


def _prepare(
    results_dir: Path,
    studies: Mapping[str, Study],
    resamples: int,
    seed: int,
    jobs: int = 1,
    others: list[tuple[str, list[StudyAnalysis]]] = (),  # type: ignore[assignment]
) -> tuple[dict[Path, bytes], list[StudyAnalysis]]:
    """Every file of one directory's report, computed (nothing written), and its analyses."""
    frames = read_study_frames(results_dir)
    check_destination(results_dir)
    analyses = analyse(frames, studies, resamples=resamples, seed=seed)
    figdir = results_dir / "figures"
    files: dict[Path, bytes] = {}
    tasks = [figure_tasks(a) for a in analyses]  # all studies' figures drawn in one pool
    drawn = iter(_run_figure_tasks([task for group in tasks for task in group], jobs))
    for analysis, group in zip(analyses, tasks, strict=True):
        analysis.figures = _collect(group, [next(drawn) for _ in group], analysis.notes)
        files.update({figdir / name: png for name, png in analysis.figures.items()})
    rates = pd.concat([a.rates for a in analyses if not a.rates.empty] or [_empty(RATE_COLUMNS)])
    files[results_dir / "rates.csv"] = rates.to_csv(index=False).encode()
    columns = list(SAMPLE_COMPLEXITY_COLUMNS)
    found = [a.sample_complexity[columns] for a in analyses if not a.sample_complexity.empty]
    complexity = pd.concat(found or [_empty(SAMPLE_COMPLEXITY_COLUMNS)])
    files[results_dir / "sample_complexity.csv"] = complexity.to_csv(index=False).encode()
    declared = [a.comparisons for a in analyses if a.comparisons is not None]
    if declared:
        table = pd.concat([c for c in declared if not c.empty] or [_empty(COMPARISON_COLUMNS)])
        files[results_dir / "comparisons.csv"] = table.to_csv(index=False).encode()
    report = results_dir / "REPORT.md"
    files[report] = render_markdown(analyses, results_dir, resamples, others).encode()
    return files, analyses


def write_report(
    results_dir: Path | str,
    studies: Mapping[str, Study],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    jobs: int = 1,
) -> list[Path]:
    """Write rates.csv, sample_complexity.csv, comparisons.csv, figures/ and REPORT.md
    into `results_dir`, and the same into each of its profile_dirs (other profiles' --out
    folders), whose claims tables the top REPORT.md repeats under "Other profiles".

    `studies` maps study names to their Study (the CLI passes studies.registry()); `jobs`
    worker processes draw the figures (1: this process). Returns the paths written, the
    top REPORT.md last. Bad input or an unwritable destination
    raises ReportError before anything is written; all files are computed, then written.
    """
    results_dir = Path(results_dir)
    read_study_frames(results_dir)  # the top directory's errors first
    files: dict[Path, bytes] = {}
    others = []
    for sub in profile_dirs(results_dir):
        sub_files, sub_analyses = _prepare(sub, studies, resamples, seed, jobs)
        files.update(sub_files)
        others.append((sub.name, sub_analyses))
    top, _ = _prepare(results_dir, studies, resamples, seed, jobs, others)
    files.update(top)
    taken = [path for path in files if path.is_dir()]
    if taken:  # checked before the first write: a report is written whole or not at all
        raise ReportError(f"{taken[0]} is a directory; cannot write the report there")
    try:
        write_set(files)  # all or nothing: a full disk leaves the previous report whole
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


def short_settings(labels: list[str]) -> tuple[list[str], str]:
    """Setting labels without the parts all of them share: (short labels, shared parts)."""
    parts = [str(label).split(", ") for label in labels]
    if not parts:
        return [], ""
    shared = [part for part in parts[0] if all(part in other for other in parts)]
    short = [", ".join(p for p in own if p not in shared) or "all" for own in parts]
    return short, ", ".join(p for p in shared if p != "all")


def _rates_table(rates: pd.DataFrame) -> str:
    pct = f"{LEVEL:.0%} CI"
    header = ["metric", "setting", "model", "slope", pct, "claim", "n", "seeds", "verdict"]
    rows = []
    rates = rates.sort_values(["metric", "setting", "model"])
    short, _ = short_settings(list(rates["setting"]))
    for r, setting in zip(rates.itertuples(), short, strict=True):
        n_range = "-" if pd.isna(r.n_min) else f"{r.n_min}-{r.n_max} ({r.n_points})"
        verdict = f"**{r.verdict}**" + (f" ({r.reason})" if isinstance(r.reason, str) and
                                        r.reason else "")  # fmt: skip
        if isinstance(r.floor, str) and r.floor:
            verdict += f"; {r.floor}"
        rows.append(
            [
                r.metric,
                setting,
                r.model,
                _num(r.slope),
                _interval(r.ci_low, r.ci_high),
                _claim_text(r.claim, r.theory, r.margin),
                n_range,
                str(r.seeds),
                verdict,
            ]
        )
    return markdown_table(header, rows)


def _claim_text(kind: object, theory: object, margin: object) -> str:
    if not isinstance(kind, str) or not kind or pd.isna(theory):
        return "-"
    return stats.Claim(float(theory), kind, float(margin)).text() + f" ({kind})"


def _power_table(rates: pd.DataFrame) -> str:
    """What it would take: per rate claim, the seeds per n for every setting's interval to
    reach half the margin, on this n grid and on one 10x wider."""
    header = ["metric", "model", "claim", "verdicts", "detectable (median)", "seeds per n",
              f"seeds per n, {stats.WIDE_RANGE:g}x wider n range"]  # fmt: skip
    rows = []
    for (metric, model, kind), group in rates.groupby(["metric", "model", "claim"], sort=True):
        word, counts = stats.aggregate(list(group["verdict"]))
        rows.append([
            metric, model, kind, f"**{word}** ({counts})", _num(group["detectable"].median()),
            _seeds_text(group["seeds_needed"].max()), _seeds_text(group["seeds_needed_wide"].max()),
        ])  # fmt: skip
    return markdown_table(header, rows)


def _seeds_text(value: float) -> str:
    if pd.isna(value):
        return "-"
    return f">{stats.MAX_SEEDS}" if np.isinf(value) else f"{value:.0f}"


def seed_means(frame: pd.DataFrame, study: Study) -> pd.Series:
    """Geometric mean over seeds of every rate-fitted curve at each n, indexed by
    (model, setting, metric, n): the 'seed mean' of the descriptive and n_eps tables."""
    rows = usable_rows(rate_rows(frame, study))
    if rows.empty:
        return pd.Series(dtype=float)
    rows = rows.assign(setting=setting_labels(rows, study.rate_groups), log=np.log(rows["value"]))
    return np.exp(rows.groupby(["model", "setting", "metric", "n"])["log"].mean())


def _descriptive_table(rates: pd.DataFrame, means: pd.Series) -> str:
    """Curves without a theory exponent: where they start and end, and their slope."""
    header = ["metric", "setting", "model", "at smallest n", "at largest n", "log-log slope"]
    header += [f"{LEVEL:.0%} CI", "n range"]
    rows = []
    rates = rates.sort_values(["metric", "setting", "model"])
    short, _ = short_settings(list(rates["setting"]))
    for r, setting in zip(rates.itertuples(), short, strict=True):
        ends = [means.get((r.model, r.setting, r.metric, n)) for n in (r.n_min, r.n_max)]
        n_range = "-" if pd.isna(r.n_min) else f"{r.n_min}-{r.n_max}"
        rows.append(
            [
                r.metric,
                setting,
                r.model,
                *(_num(v, ".3g") for v in ends),
                _num(r.slope),
                _interval(r.ci_low, r.ci_high),
                n_range,
            ]
        )
    return markdown_table(header, rows)


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


# ---- The claims table: one row per claim, across studies -------------------------------

CLAIM_COLUMNS = ("study", "claim", "evidence", "measured", "theory", "verdict", "figure")
RATE_CLAIMS = {  # claim kind -> how a rate row's claim reads
    "exact rate": "{model}: {metric} falls like {power}",
    "upper bound": "{model}: {metric} falls at least like {power} (upper bound)",
    "lower bound": "{model}: {metric} falls no faster than {power} (lower bound)",
}
MEASURED = "measured"  # a comparison row that reports a quantity and claims nothing


def claim_verdict(verdicts: list[str]) -> str:
    """One verdict for a claim tested in several settings (toolkit.stats.aggregate: holds
    only if every setting holds, fails if any fails), with the count of each verdict."""
    word, counts = stats.aggregate(verdicts)
    return f"**{word}**" if len(verdicts) == 1 else f"**{word}** ({counts})"


def _figure_links(analysis: StudyAnalysis, metrics: list[str]) -> str:
    study = analysis.study
    assert study is not None
    links = [
        f"[{metric}](figures/{study.figure_name(metric)})"
        for metric in metrics
        if study.figure_name(metric) in analysis.figures
    ]
    return ", ".join(links) or "-"


def _per_setting(labels: list[str], cells: list[str]) -> str:
    """Cells of one claim's settings, one line each, labelled when there are several."""
    if len(cells) == 1:
        return cells[0]
    return "<br>".join(f"{label}: {cell}" for label, cell in zip(labels, cells, strict=True))


SUMMARY_CLAIM_CHARS = 100  # a claim in the summary is cut to this many characters


def _short(text: str, limit: int = SUMMARY_CLAIM_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _measured(values: pd.DataFrame, value: str, theory: str | None = None) -> str:
    """One cell: the value with its interval for one setting, else the range over them."""
    fmt = ".2f" if value == "slope" else ".3g"
    if len(values) == 1:
        r = values.iloc[0]
        text = f"{_num(r[value], fmt)} {_interval(r['ci_low'], r['ci_high'], fmt)}"
    else:
        low, high = values[value].min(), values[value].max()
        text = f"{len(values)} settings: {_num(low, fmt)} to {_num(high, fmt)}"
    if theory is not None:
        thetas = values[theory].dropna().unique()
        text += f" vs {_num(thetas[0], fmt)}" if len(thetas) == 1 else " vs theory per setting"
    return text


def summary_table(analysis: StudyAnalysis) -> list[list[str]]:
    """One short line per claim of a study: claim, verdict (over its settings), measured."""
    rows: list[list[str]] = []
    if analysis.study is None or analysis.error:
        return rows
    theory = analysis.rates[analysis.rates["theory"].notna()]
    for (metric, model, kind), group in theory.groupby(["metric", "model", "claim"]):
        word, counts = stats.aggregate(list(group["verdict"]))
        phrase = {"upper bound": "falls at least like", "lower bound": "falls no faster than",
                  "exact rate": "falls like"}[kind]  # fmt: skip
        thetas = group["theory"].unique()
        power = f"n^{thetas[0]:.3g}" if len(thetas) == 1 else "n^theory"
        claim = _short(f"{model}: {metric} {phrase} {power} ({kind})")
        detail = f" ({counts})" if len(group) > 1 else ""
        rows.append([claim, f"**{word}**{detail}", _measured(group, "slope", "theory")])
    if analysis.comparisons is not None:
        for claim, group in analysis.comparisons.groupby("claim", sort=False):
            if (group["verdict"] == MEASURED).all():
                continue
            word, counts = stats.aggregate(list(group["verdict"]))
            detail = f" ({counts})" if len(group) > 1 else ""
            rows.append([_short(claim), f"**{word}**{detail}", _measured(group, "value")])
    return rows


def claims_table(analyses: list[StudyAnalysis]) -> pd.DataFrame:
    """One row per claim (CLAIM_COLUMNS): each comparison claim of a study across its
    settings, and each rate claim (study, metric, model, test) with a theory exponent
    across its settings. Cells hold Markdown."""
    rows = []
    for a in analyses:
        if a.study is None:
            continue
        metrics = sorted(a.rates["metric"].unique())
        if a.comparisons is not None:
            for claim, group in a.comparisons.groupby("claim", sort=False):
                if (group["verdict"] == MEASURED).all():
                    continue
                words, _, criterion = str(claim).partition(": ")
                text = " ".join([str(claim), *group["statistic"].astype(str)])
                named = [m for m in metrics if m in text] or (metrics if len(metrics) == 1 else [])
                cells = [
                    f"{_num(r.value, '.3g')} {_interval(r.ci_low, r.ci_high, '.3g')}"
                    for r in group.itertuples()
                ]
                rows.append(
                    {
                        "study": a.name,
                        "claim": words,
                        "evidence": "<br>".join(group["statistic"].astype(str).unique()),
                        "measured": _per_setting(list(group["setting"]), cells),
                        "theory": criterion or "-",
                        "verdict": claim_verdict(list(group["verdict"])),
                        "figure": _figure_links(a, named),
                    }
                )
        theory = a.rates[a.rates["theory"].notna()]
        for (metric, model, test), group in theory.groupby(["metric", "model", "claim"]):
            group = group.sort_values("setting")
            labels, _ = short_settings(list(group["setting"]))
            exponents = group["theory"].astype(float)
            same = exponents.nunique() == 1
            power = f"n^{exponents.iloc[0]:.3g}" if same else "n^theory"
            cells = [
                f"{_num(r.slope)} {_interval(r.ci_low, r.ci_high)}" for r in group.itertuples()
            ]
            theories = [_num(t) for t in exponents]
            rows.append(
                {
                    "study": a.name,
                    "claim": RATE_CLAIMS[test].format(model=model, metric=metric, power=power),
                    "evidence": f"log-log slope of {metric} in n",
                    "measured": _per_setting(labels, cells),
                    "theory": theories[0] if same else _per_setting(labels, theories),
                    "verdict": claim_verdict(list(group["verdict"])),
                    "figure": _figure_links(a, [metric]),
                }
            )
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))


TRUST_COLUMNS = (
    "study",
    "claim",
    "design",
    "coverage",
    *(f"holds at theta{shift:+g}d" for shift in stats.SHIFTS),
    "fails at the wrong side +2d",
)


def trust_table(analysis: StudyAnalysis, reps: int = 4000, seed: int = 0) -> pd.DataFrame:
    """The self-test at a study's default design (toolkit.stats.self_test): its most common
    (n grid, seeds per n) among curves with a claim, the noise per n pooled over those
    curves (root mean per-seed variance of log value); per claim kind in the study, the
    coverage of the slope's interval at s = theta and the rate of `holds` at each true
    slope theta + shift * margin, and of `fails` at 2 margins on the wrong side."""
    study = analysis.study
    if study is None:
        return pd.DataFrame(columns=list(TRUST_COLUMNS))
    design = analysis.design
    if design is None:
        return pd.DataFrame(columns=list(TRUST_COLUMNS))
    x, count, sigma = design["x"], design["count"], design["sigma"]
    n = np.exp(x)
    text = (
        f"n {n[0]:.0f}-{n[-1]:.0f} ({n.size} values) x {count.min():.0f} seeds; noise sd "
        f"{sigma.min():.2g}-{sigma.max():.2g} ({design['curves']} curves)"
    )
    rows = []
    for kind, margin in design["claims"]:
        claim = stats.Claim(0.0, kind, margin)
        sim = stats.self_test(x, count, sigma, claim, reps=reps, seed=seed)
        wrong = sim[-1] if kind != "lower bound" else sim[0]
        rows.append(
            [study.name, f"{kind} (margin {margin:g})", text,
             min(r["coverage"] for r in sim), *(r["holds"] for r in sim), wrong["fails"]]
        )  # fmt: skip
    return pd.DataFrame(rows, columns=list(TRUST_COLUMNS))


def _trust_markdown(table: pd.DataFrame) -> str:
    rows = [
        [r[0], r[1], r[2], *(_num(v, ".2f") for v in r[3:])] for r in table.itertuples(index=False)
    ]
    return markdown_table(list(TRUST_COLUMNS), rows)


def _claims_markdown(claims: pd.DataFrame) -> str:
    header = ["study", "claim", "evidence", f"measured ({LEVEL:.0%} CI)", "theory", "verdict"]
    rows = [[str(cell) for cell in row] for row in claims.itertuples(index=False)]
    return markdown_table([*header, "figure"], rows)


def _sample_complexity_text(a: StudyAnalysis) -> list[str]:
    assert a.study is not None
    table = a.sample_complexity
    levels = "; ".join(
        f"{metric} " + ", ".join(f"{eps:g}" for eps in sorted(group["eps"].unique())[::-1])
        for metric, group in table.groupby("metric", sort=True)
    )
    axis = complexity_axis(table, a.study.rate_groups)
    shown = f"against {axis}" if axis else "per setting and model"
    return [
        "### Sample complexity",
        "",
        "n_eps, the smallest n at which the seed mean first reaches the error level eps "
        f"(`sample_complexity.csv`), at the levels {levels}. "
        f"Status: {_verdict_counts(table['status'])}.",
        "",
        f"![n_eps {shown}](figures/{complexity_figure(a.study)})",
        "",
    ]


def _other_profiles(others: list[tuple[str, list[StudyAnalysis]]]) -> list[str]:
    """The claims table and study figures of each other profile's folder, linked there."""
    lines = [
        "## Other profiles",
        "",
        "Profiles run into their own folders (`--out results/<folder>`), each with its own "
        "REPORT.md, rates.csv, comparisons.csv and sample_complexity.csv; their claims "
        "tables and figures follow.",
        "",
    ]
    for name, analyses in others:
        lines += [f"### {name}", "", f"Full report: [{name}/REPORT.md]({name}/REPORT.md).", ""]
        for a in analyses:
            if a.study is None:
                continue
            models = ", ".join(sorted(a.frame["model"].astype(str).unique()))
            lines += [f"{a.name}: {len(a.frame)} rows; models {models}.", ""]
        claims = claims_table(analyses)
        if not claims.empty:
            table = _claims_markdown(claims).replace("](figures/", f"]({name}/figures/")
            lines += [table, ""]
        for a in analyses:
            if a.study is None:
                continue
            metric_figures = {a.study.figure_name(m) for m in a.rates["metric"].unique()}
            for figure in a.figures:
                if figure not in metric_figures:
                    lines += [f"![{Path(figure).stem}]({name}/figures/{figure})", ""]
    return lines


def render_markdown(
    analyses: list[StudyAnalysis],
    results_dir: Path,
    resamples: int = RESAMPLES,
    others_dirs: list[tuple[str, list[StudyAnalysis]]] = (),  # type: ignore[assignment]
) -> str:
    """REPORT.md: the claims table across studies, the method, then per study its claims,
    rate tables, comparisons, sample complexity and figures; then the other profiles'
    claims tables and figures (`others_dirs`: folder name -> its analyses)."""
    claims = claims_table(analyses)
    lines = [
        "# Validation report: theory against measurement",
        "",
        f"Generated by `toolkit report` (toolkit {__version__}) from the study CSVs in "
        f"`{results_dir}`. Every number below is read from `rates.csv`, "
        "`comparisons.csv` and `sample_complexity.csv` in the same directory.",
        "",
        "## Summary",
        "",
        "Per study, one line per claim: its verdict over every setting it was tested in "
        "(holds only if every setting holds, fails if any fails; the counts follow) and "
        f"the measured slope or statistic with its {LEVEL:.0%} interval, or its range over "
        "the settings, against the theory. Details: the claims table below, then each "
        "study's section; the method: docs/statistics.md.",
        "",
    ]
    for a in analyses:
        rows = summary_table(a)
        if rows:
            lines += [f"**{a.name}**", ""]
            lines += [markdown_table(["claim", "verdict", "measured vs theory"], rows), ""]
        elif a.error:
            lines += [f"**{a.name}**: not analysed ({_short(a.error, 200)}).", ""]
    lines += [
        "## Claims",
        "",
    ]
    if claims.empty:
        lines += ["No study declares a theory exponent or a comparison.", ""]
    else:
        lines += [
            "One row per claim. A rate claim gathers the curves of one study, model, metric "
            "and kind of claim across settings; a comparison claim gathers its settings. A "
            "claim over several settings *holds* only if every setting holds, *fails* if any "
            "fails, and is otherwise *inconclusive* (no setting is dropped); the counts of "
            "each setting's verdict follow. Each verdict is a test of the slope's "
            f"{LEVEL:.0%} interval against the claim with a declared margin (see Method).",
            "",
            _claims_markdown(claims),
            "",
        ]
    lines += [
        "## Method",
        "",
        "Rates (docs/statistics.md, toolkit.stats). Per curve (study, model, setting, "
        "metric), least squares of log(value) on log(n) over the per-seed points gives the "
        f"slope; its {LEVEL:.0%} interval is a t-interval from the seeds' scatter within "
        "each n (Welch-Satterthwaite degrees of freedom, so an n whose seeds disagree "
        "widens it honestly). A claim declares its exponent theta, its kind and a margin d "
        f"(default {stats.DEFAULT_MARGIN:g}). *upper bound* (the error falls at least like "
        "n^theta): holds if ci_high <= theta + d, fails if ci_low > theta + d; *lower "
        "bound* (no faster): holds if ci_low >= theta - d, fails if ci_high < theta - d; "
        "*exact rate*: holds if the interval lies in [theta - d, theta + d], fails if it "
        "lies outside; otherwise *inconclusive*, with a reason: underpowered (with the "
        f"seeds per n that would decide it), too few n (< {stats.MIN_N}), pre-asymptotic "
        "(the slopes of the lower and upper halves of the n range differ at the 5% level; "
        f"the upper-half slope is in rates.csv), failed cells, or on its floor (within "
        f"{NEAR_FLOOR:g}x of an additive floor, where a fail would measure the apparatus). "
        "A metric with an additive floor (Monte Carlo, sampler) is fitted as "
        "log(mean(value - floor)) per n, the floor taken at the same seed so that its noise "
        "is in the interval. rates.csv also gives the slope of value / log n and the "
        "verdict it would give (theory rates hold up to logs; never used for the verdict), "
        "`detectable` (the deviation from theta found with 80% power at this design) and "
        "`seeds_needed` (seeds per n for the interval's half-width to reach d / 2; "
        "`seeds_needed_wide` on a 10x wider n range). Curves without a claim are listed "
        "apart, as measurements.",
        "",
        "Sample complexity. n_eps is the smallest n at which the seed mean (geometric "
        "mean over seeds) reaches the error level eps, interpolated linearly in log error "
        "against log n between the bracketing n; *already reached* means at the smallest n "
        "(n_eps = n_min, an upper bound), *not reached* means above eps at every n (no "
        "n_eps: nothing is extrapolated). The interval resamples seeds within each n as "
        "above; an upper end beyond the largest n is inf. Levels: "
        f"{LEVELS_PER_METRIC} per study and metric, geometric interior points between the "
        "largest of the curves' smallest seed means and the smallest of their largest.",
        "",
    ]
    trust = [trust_table(a) for a in analyses if a.study is not None]
    trust = [t for t in trust if not t.empty]
    if trust:
        lines += [
            "## How much to trust these verdicts",
            "",
            "The same rule on synthetic curves c n^s e^noise at each study's default design "
            "(its n grid and seeds, the noise per n measured on its curves, Gaussian in log), "
            "4000 curves per true slope s = theta + shift x margin: the smallest coverage of "
            f"the {LEVEL:.0%} interval over the shifts, the rate of *holds* at each shift, and "
            "of *fails* two margins on the wrong side. A sound rule holds rarely on the "
            "wrong side (<= 0.05) and often where the claim is true.",
            "",
            _trust_markdown(pd.concat(trust, ignore_index=True)),
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
        failed = failed_cells(a.frame)
        if not failed.empty:
            total = int(failed["cells"].sum())
            lines += [
                f"### Cells that did not finish ({total})",
                "",
                "Failed or diverged cells (status and first line of the reason; where: "
                "n/seed, the first few). Their curves are inconclusive (failed cells).",
                "",
                markdown_table(
                    ["model", "status", "reason", "cells", "where"],
                    [[str(v) for v in row] for row in failed.itertuples(index=False)],
                ),
                "",
            ]
        if a.error:
            lines += [f"Not analysed: {a.error}.", ""]
            continue
        lines += ["Claims under test (from the study module):", ""]
        lines += ["> " + line if line else ">" for line in claims_text(a.study).splitlines()]
        lines += [""]
        models = ", ".join(sorted(a.frame["model"].astype(str).unique()))
        seeds = a.frame["seed"].nunique()
        lines += [f"Data: {len(a.frame)} rows; models {models}; {seeds} seeds.", ""]
        _, shared = short_settings(list(a.rates["setting"]))
        if shared:
            lines += [f"Every curve has {shared}.", ""]
        theory = a.rates[a.rates["theory"].notna()]
        described = a.rates[a.rates["theory"].isna()]
        lines += ["### Rates against theory", ""]
        if a.rates.empty:
            lines += ["No curves.", ""]
        elif theory.empty:
            lines += ["No curve of this study has a theory exponent.", ""]
        else:
            lines += [f"Verdicts: {_verdict_counts(theory['verdict'])}.", ""]
            lines += [_rates_table(theory), ""]
            lines += [
                "What it would take: per claim, the largest seeds_needed over its settings "
                "(seeds per n for every interval to reach half the margin).",
                "",
                _power_table(theory),
                "",
            ]
        if not described.empty:
            lines += [
                "### Curves without a theory exponent",
                "",
                "Measurements the theory gives no exponent for: the seed mean (geometric) "
                "at the smallest and largest n fitted, and the log-log slope with its "
                f"{LEVEL:.0%} interval as a description.",
                "",
                _descriptive_table(described, seed_means(a.frame, a.study)),
                "",
            ]
        if a.comparisons is not None:
            lines += ["### Comparisons between models", ""]
            if a.comparisons.empty:
                lines += ["No comparison applies to the models and settings in this run.", ""]
            else:
                lines += [f"Verdicts: {_verdict_counts(a.comparisons['verdict'])}.", ""]
                lines += [_comparisons_table(a.comparisons), ""]
        if not a.sample_complexity.empty:
            lines += _sample_complexity_text(a)
        for note in a.notes:
            lines += [f"Note: {note}.", ""]
        others = [name for name in a.figures if name != complexity_figure(a.study)]
        if others:
            lines += ["### Figures", ""]
            for name in others:
                lines += [f"![{Path(name).stem}](figures/{name})", ""]
    if others_dirs:
        lines += _other_profiles(others_dirs)
    return "\n".join(lines).rstrip() + "\n"
