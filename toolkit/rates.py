"""Rate fits of a study's curves: one row per curve (study, model, setting, metric) with
the log-log slope of the metric against n, its interval, the claim and the verdict.

The statistics (slope, interval, verdict rule, power) are toolkit.stats; this module finds
the curves of a study's tidy rows and hands each to toolkit.stats.assess. It knows a study
only through its toolkit.study.Study:

    rate_groups   CSV columns that, with `model` and `metric`, identify one curve; every
                  column that varies between cells other than n and seed must be listed
                  (a curve with two rows for one (n, seed) is an error naming them).
    theory        setting -> toolkit.stats.Claim (theta, kind, margin) or None; `setting`
                  holds model, metric and every column constant within the curve.
    floors        metric -> metric of its additive floor at the same (setting, n, seed)
                  (a Monte Carlo or sampler floor): the curve fitted is log(value - floor).
    resolutions   metric -> metric of its standard error: points within one SE of zero
                  say nothing about a rate and are not fitted.
    model_free_metrics  metrics identical for every model of a cell (fitted once, model
                  "any"); non_rate_metrics: never fitted.

Sample complexity (sample_complexity, samples_to_reach) is below; its interval resamples
seeds within n (bootstrap_within), as do the studies' non-linear statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from toolkit import stats
from toolkit.results import LAST_COLUMNS
from toolkit.stats import LEVEL, Claim
from toolkit.study import Study

RESAMPLES = 2000  # bootstrap resamples (sample complexity, studies' non-linear statistics)
SEED = 0  # bootstrap seed; every curve starts from it, so results do not depend on order
NEAR_FLOOR = 2.0  # a curve ending within this factor of its floor cannot fail: it is on it
ANY_MODEL = "any"  # the model label of a model-free metric's curve

RATE_COLUMNS = (
    "study", "model", "setting", "metric", "slope", "ci_low", "ci_high", "se", "df",
    "theory", "claim", "margin", "verdict", "reason", "n_min", "n_max", "n_points", "seeds",
    "failed_cells", "floor", "floor_ratio", "slope_upper", "upper_ci_low", "upper_ci_high",
    "curvature_p", "slope_log1", "verdict_log1", "detectable", "seeds_needed",
    "seeds_needed_wide",
)  # fmt: skip
NOT_SETTING = ("value", "n", "seed", *LAST_COLUMNS)  # columns that are never a curve's setting

TheoryFn = Callable[[dict[str, Any]], "Claim | None"]


def bootstrap_within(
    y: np.ndarray,
    strata: np.ndarray,
    resamples: int,
    rng: np.random.Generator,
    level: float = LEVEL,
) -> np.ndarray:
    """Resample the rows of y within each stratum (seeds within n), spread corrected.

    A resampled row is put back as its stratum mean plus its deviation times
    sqrt(k/(k-1)) t/z (Davison and Hinkley 1997, 3.7; t with the pooled df), so
    percentiles of a statistic that is linear in y approach the t-interval. For statistics
    that are not linear in y (n_eps, ratios); slopes use toolkit.stats.
    y: (points,) or (points, columns); the columns of one row are resampled together
    (paired models sharing a seed). strata: (points,). Returns (resamples, *y.shape).
    """
    y = np.asarray(y, dtype=float)
    strata = np.asarray(strata)
    labels, counts = np.unique(strata, return_counts=True)
    df = int(counts.sum() - labels.size)  # the seeds' pooled degrees of freedom
    q = (1 + level) / 2
    widen = scipy_stats.t.ppf(q, df) / scipy_stats.norm.ppf(q) if df > 0 else 1.0
    out = np.broadcast_to(y, (resamples, *y.shape)).copy()
    for stratum, k in zip(labels, counts, strict=True):
        if k < 2:
            continue
        rows = np.flatnonzero(strata == stratum)
        block = y[rows]  # (k, ...)
        centre = block.mean(axis=0)
        draw = rng.integers(0, k, size=(resamples, k))
        out[:, rows] = centre + widen * math.sqrt(k / (k - 1)) * (block[draw] - centre)
    return out


def usable_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows that can enter a log-log fit or comparison: a finite positive value at n > 0."""
    value, n = frame["value"].to_numpy(dtype=float), frame["n"].to_numpy(dtype=float)
    return frame[np.isfinite(value) & (value > 0) & np.isfinite(n) & (n > 0)]


def above_floor(points: pd.DataFrame, floor: pd.DataFrame | None) -> pd.DataFrame:
    """The points (columns n, seed, value) above a resolution (same columns): a point goes
    when value <= the resolution at its (n, seed); every point at n goes when the mean over
    seeds at n is <= the mean resolution at n."""
    if floor is None or floor.empty:
        return points
    per_point = floor.groupby(["n", "seed"])["value"].mean()
    at = pd.MultiIndex.from_frame(points[["n", "seed"]])
    point_floor = per_point.reindex(at).to_numpy()
    keep = ~(points["value"].to_numpy() <= point_floor)  # NaN floor (none recorded) keeps
    mean_value = points.groupby("n")["value"].mean()
    mean_floor = floor.groupby("n")["value"].mean().reindex(mean_value.index)
    drowned = mean_value.index[(mean_value <= mean_floor).to_numpy()]
    keep &= ~points["n"].isin(drowned).to_numpy()
    return points[keep]


def floor_ratio(points: pd.DataFrame, floor: pd.DataFrame | None) -> float:
    """The curve's mean over seeds at its largest n over the floor's mean there (NaN
    without a floor): how far above what the apparatus itself reaches the curve ends."""
    if floor is None or floor.empty or points.empty:
        return math.nan
    n = points["n"].max()
    below = float(floor.loc[floor["n"] == n, "value"].mean())
    if not below > 0:
        return math.nan
    return float(points.loc[points["n"] == n, "value"].mean()) / below


def log_summary(points: pd.DataFrame) -> stats.Summary:
    """toolkit.stats.summarise of log value on log n over the finite positive points."""
    points = usable_rows(points)
    return stats.summarise(np.log(points["n"].to_numpy(float)), np.log(points["value"]))


def floored_summary(points: pd.DataFrame, floor: pd.DataFrame) -> stats.Summary:
    """Per n: z = log(mean over seeds of value - floor), the floor taken at the same seed
    (else its mean at n), so the floor's own noise is in the seeds' scatter; the variance
    of z by the delta method, s_d^2 / (k mean_d^2). An n whose mean difference is <= 0
    (the curve is on its floor there) is left out."""
    by_seed = floor.groupby(["n", "seed"])["value"].mean()
    by_n = floor.groupby("n")["value"].mean()
    points = points[np.isfinite(points["value"].to_numpy(float))]
    at = pd.MultiIndex.from_frame(points[["n", "seed"]])
    f = by_seed.reindex(at).to_numpy()
    f = np.where(np.isfinite(f), f, by_n.reindex(points["n"]).to_numpy())
    diff = pd.DataFrame({"n": points["n"].to_numpy(float), "d": points["value"] - f})
    diff = diff[np.isfinite(diff["d"])]
    groups = diff.groupby("n")["d"]
    mean, count, var = groups.mean(), groups.size().astype(float), groups.var(ddof=1)
    keep = (mean > 0).to_numpy() & (count.to_numpy() >= 1)
    mean, count, var = mean[keep], count[keep], var[keep]
    df = (count - 1).to_numpy()
    var = var.to_numpy()
    single = ~(df > 0)
    if single.any() and (~single).any():  # a one-seed n borrows the others' pooled variance
        var[single] = np.average(var[~single], weights=df[~single])
        df[single] = df[~single].sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        z_var = var / (count.to_numpy() * mean.to_numpy() ** 2)
    x = np.log(mean.index.to_numpy(float))
    return stats.Summary(x, np.log(mean.to_numpy()), z_var, df, count.to_numpy())


def _scalar(value: Any) -> Any:
    """A plain Python value for labels and theory settings (integral floats as int)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def setting_label(values: Mapping[str, Any]) -> str:
    """A readable name for a curve's setting, e.g. "target=inner1" ("all" when empty)."""
    return ", ".join(f"{k}={_scalar(v)}" for k, v in values.items()) or "all"


def setting_labels(frame: pd.DataFrame, rate_groups: Sequence[str]) -> pd.Series:
    """The setting label of every row of a study frame."""
    if not rate_groups:
        return pd.Series("all", index=frame.index)
    cols = list(rate_groups)
    # One label per distinct setting, mapped back (a row-wise apply is slow on 10^6 rows).
    keys = pd.MultiIndex.from_frame(frame[cols])
    distinct = keys.unique()
    labels = [setting_label(dict(zip(cols, key, strict=True))) for key in distinct]
    return pd.Series(
        np.asarray(labels, dtype=object)[distinct.get_indexer(keys)], index=frame.index
    )


def _check_one_row_per_point(curve: pd.DataFrame, name: str) -> None:
    """A curve mixing settings has several rows at one (n, seed): name the columns that differ."""
    dup = curve[curve.duplicated(["n", "seed"], keep=False)]
    if dup.empty:
        return
    n, seed = dup.iloc[0][["n", "seed"]]
    clash = dup[(dup["n"] == n) & (dup["seed"] == seed)]
    varying = [c for c in clash.columns if c not in NOT_SETTING and clash[c].nunique() > 1]
    hint = "duplicated rows"
    if varying:
        hint = f"columns that differ: {', '.join(varying)}; add the parameters to RATE_GROUPS"
    raise ValueError(f"curve {name} has several rows per (n, seed) ({hint})")


def _matches(frame: pd.DataFrame, values: Mapping[str, Any], cols: Sequence[str]) -> pd.Series:
    """Rows whose `cols` equal `values` (a missing value matches a missing value)."""
    mask = pd.Series(True, index=frame.index)
    for col in cols:
        target = values[col]
        mask &= frame[col].isna() if pd.isna(target) else frame[col] == target
    return mask


def _model_free(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """The rows of model-free metrics kept once per cell, under the model ANY_MODEL."""
    shared = frame["metric"].isin(metrics)
    if not shared.any():
        return frame
    first = sorted(frame.loc[shared, "model"].astype(str).unique())[0]
    once = frame[shared & (frame["model"] == first)].assign(model=ANY_MODEL)
    return pd.concat([frame[~shared], once], ignore_index=True)


def _reference(rows: pd.DataFrame | None, values: Mapping[str, Any], groups: Sequence[str]):
    """The rows of a floor or resolution metric at a curve's setting (its model's if any)."""
    if rows is None:
        return None
    rows = rows[_matches(rows, values, ["study", *groups])]
    if (rows["model"] == values["model"]).any():  # a floor per model, else shared
        rows = rows[rows["model"] == values["model"]]
    return rows


def _curves(
    frame: pd.DataFrame,
    rate_groups: Sequence[str],
    floors: Mapping[str, str],
    resolutions: Mapping[str, str] | None = None,
) -> Iterator[tuple[dict[str, Any], str, str, pd.DataFrame, pd.DataFrame, Any, Any]]:
    """Every curve fitted as a rate, in order: (key values, setting label, metric, its rows,
    its points above its resolution, the floor's rows or None, the resolution's or None).
    Floor and resolution metrics are not curves themselves. The key values hold, besides
    the curve's keys, every other column constant within the curve (`_group_constants`)."""
    resolutions = dict(resolutions or {})
    keys = ["study", "model", *rate_groups]
    helpers = set(floors.values()) | set(resolutions.values())
    for metric, by_metric in frame.groupby("metric", sort=True):
        if metric in helpers:
            continue
        clash = by_metric.duplicated([*keys, "n", "seed"], keep=False)
        if clash.any():  # one (n, seed) twice in a curve: name the columns that differ
            first = by_metric[clash].iloc[0]
            values = {k: first[k] for k in keys}
            curve = by_metric[_matches(by_metric, values, keys)]
            setting = setting_label({k: values[k] for k in rate_groups})
            name = f"{values['study']}/{values['model']}/{setting}/{metric}"
            _check_one_row_per_point(curve, name)
        constants = _group_constants(by_metric, keys)
        floor_rows = frame[frame["metric"] == floors[metric]] if metric in floors else None
        se_rows = frame[frame["metric"] == resolutions[metric]] if metric in resolutions else None
        for key, curve in by_metric.groupby(keys, sort=True, dropna=False):
            values = dict(zip(keys, key, strict=True))
            setting = setting_label({k: values[k] for k in rate_groups})
            floor = _reference(floor_rows, values, rate_groups)
            resolution = _reference(se_rows, values, rate_groups)
            kept = above_floor(curve[["n", "seed", "value"]], resolution)
            yield ({**constants.get(key, {}), **values}, setting, str(metric), curve, kept,
                   floor, resolution)  # fmt: skip


def _group_constants(frame: pd.DataFrame, keys: list[str]) -> dict[tuple, dict[str, Any]]:
    """Per curve (key tuple): every column besides the keys that is constant and present
    within it, as Python values (what a study's theory may read, e.g. dim, beta)."""
    columns = [c for c in frame.columns if c not in NOT_SETTING and c not in keys]
    if not columns:
        return {}
    groups = frame.groupby(keys, sort=False, dropna=False)[columns]
    distinct = groups.nunique(dropna=False)
    first = groups.first()
    out = {}
    for key, count, row in zip(distinct.index, distinct.to_numpy(), first.to_numpy(),
                               strict=True):  # fmt: skip
        key = key if isinstance(key, tuple) else (key,)
        out[key] = {c: _scalar(v) for c, k, v in zip(columns, count, row, strict=True)
                    if k == 1 and not pd.isna(v)}  # fmt: skip
    return out


def _failed_cells(frame: pd.DataFrame, rate_groups: Sequence[str]) -> dict[tuple, int]:
    """Cells that failed or diverged, per (study, model, *rate_groups): one per (n, seed)."""
    if "status" not in frame:
        return {}
    bad = frame[frame["status"].fillna("ok") != "ok"]
    keys = ["study", "model", *rate_groups]
    if bad.empty:
        return {}
    sizes = bad.drop_duplicates([*keys, "n", "seed"]).groupby(keys, dropna=False).size()
    return {k if isinstance(k, tuple) else (k,): int(v) for k, v in sizes.items()}


def fit_rates(
    frame: pd.DataFrame,
    rate_groups: Sequence[str] = (),
    theory: TheoryFn | None = None,
    floors: Mapping[str, str] | None = None,
    *,
    resolutions: Mapping[str, str] | None = None,
    model_free_metrics: Sequence[str] = (),
    level: float = LEVEL,
    designs: list[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """One row per curve (study, model, setting, metric) with the columns RATE_COLUMNS.
    `designs`, when given, receives each curve with a claim's design (for study_design).

    `frame` holds tidy rows of one or more studies sharing these declarations (module
    docstring); rows whose status is not ok count as failed cells of their curve and are
    not fitted. The statistics are toolkit.stats.assess.
    """
    failed = _failed_cells(frame, rate_groups)
    if "status" in frame:
        frame = frame[frame["status"].fillna("ok") == "ok"]
    frame = _model_free(frame, model_free_metrics)
    floors = dict(floors or {})
    rows = []
    for values, setting, metric, _, kept, floor, resolution in _curves(
        frame, rate_groups, floors, resolutions
    ):
        claim = None
        if theory is not None:
            claim = theory({**values, "model": values["model"], "metric": metric})
        use_floor = floor is not None and not floor.empty
        summary = floored_summary(kept, floor) if use_floor else log_summary(kept)
        row = stats.assess(summary, claim, level)
        if designs is not None and claim is not None and summary.x.size >= 2:
            if np.all(np.isfinite(summary.var)):
                designs.append({"claim": claim, "x": summary.x, "count": summary.count,
                                "point_var": summary.var * summary.count})  # fmt: skip
        if summary.x.size:  # the n values themselves, not exp(log n)
            grid = np.unique(kept["n"].to_numpy(float))
            for col, x in (("n_min", summary.x[0]), ("n_max", summary.x[-1])):
                row[col] = float(grid[np.argmin(np.abs(np.log(grid) - x))])
        ratio = floor_ratio(usable_rows(kept), floor)
        key = tuple(values[k] for k in ["study", "model", *rate_groups])
        lost = failed.get(key, 0)
        if row["verdict"] in (stats.HOLDS, stats.FAILS) and lost:
            row["verdict"], row["reason"] = stats.INCONCLUSIVE, f"failed cells ({lost})"
        curve_n = kept["n"].nunique()
        if use_floor and row["reason"].startswith("too few n") and summary.x.size < curve_n:
            row["reason"] = f"on its floor (value - floor <= 0 at {curve_n - summary.x.size} "
            row["reason"] += f"of {curve_n} n)"
        if row["verdict"] == stats.FAILS and ratio <= NEAR_FLOOR:
            row["verdict"], row["reason"] = stats.INCONCLUSIVE, f"on its floor (x{ratio:.2g})"
        floor_text = ""
        if use_floor:
            floor_text = f"subtracted {floors[metric]}"
        elif resolution is not None:
            floor_text = f"points within {resolution['metric'].iloc[0]} of 0 dropped"
        seeds = int(summary.count.min()) if summary.count.size else 0
        rows.append({
            "study": values["study"], "model": values["model"], "setting": setting,
            "metric": metric, **row, "seeds": seeds, "failed_cells": lost,
            "floor": floor_text, "floor_ratio": ratio,
        })  # fmt: skip
    table = pd.DataFrame(rows, columns=list(RATE_COLUMNS))
    for col in ("n_min", "n_max"):
        if (table[col].dropna() % 1 == 0).all():  # integral sample sizes print as integers
            table[col] = table[col].round().astype("Int64")
    for col in ("theory", "margin", "floor_ratio"):
        table[col] = table[col].astype(float)
    return table


def design_noise(frame: pd.DataFrame, study: Study) -> list[dict[str, Any]]:
    """The design of every curve of a study that has a claim, for the self-test: its claim,
    log n per distinct n, seeds per n and the per-seed variance of log value per n (the
    same points and floors as fit_rates, which collects them)."""
    designs: list[dict[str, Any]] = []
    study_rates(frame, study, designs=designs)
    return designs


def study_design(
    frame: pd.DataFrame, study: Study, designs: list[dict[str, Any]] | None = None
) -> dict[str, Any] | None:
    """A study's default design for the self-test: the most common (n grid, seeds per n)
    among its curves with a claim, and the noise per n pooled over those curves (root mean
    per-seed variance of log value); with the claims (kind, margin) they carry. `designs`:
    what fit_rates collected (else computed)."""
    designs = design_noise(frame, study) if designs is None else designs
    if not designs:
        return None
    keys = [(tuple(d["x"]), tuple(d["count"])) for d in designs]
    common = max(set(keys), key=keys.count)
    chosen = [d for d, k in zip(designs, keys, strict=True) if k == common]
    return {
        "x": np.array(common[0]), "count": np.array(common[1]),
        "sigma": np.sqrt(np.mean([d["point_var"] for d in chosen], axis=0)),
        "curves": len(chosen),
        "claims": sorted({(d["claim"].kind, d["claim"].margin) for d in chosen}),
    }  # fmt: skip


def rate_rows(frame: pd.DataFrame, study: Study) -> pd.DataFrame:
    """The rows of a study that enter rate fits: cells that ran (status ok), and no
    non_rate_metrics (measurements that are not curves in n)."""
    if "status" in frame:
        frame = frame[frame["status"].fillna("ok") == "ok"]
    return frame[~frame["metric"].isin(study.non_rate_metrics)]


def study_rates(frame: pd.DataFrame, study: Study, **kwargs: Any) -> pd.DataFrame:
    """fit_rates with the declarations of a study (failed cells counted per curve, the
    study's non_rate_metrics left out)."""
    frame = frame[~frame["metric"].isin(study.non_rate_metrics) | frame["metric"].isna()]
    return fit_rates(
        frame, study.rate_groups, study.theory, study.floors,
        resolutions=study.resolutions, model_free_metrics=study.model_free_metrics, **kwargs,
    )  # fmt: skip


# ---- Sample complexity: the n at which a curve reaches an error level -----------------

LEVELS_PER_METRIC = 3  # default error levels per (study, metric)
REACHED, ALREADY_REACHED, NOT_REACHED, NO_DATA = (
    "reached",
    "already reached",
    "not reached",
    "no data",
)
SAMPLE_COMPLEXITY_COLUMNS = (
    "study",
    "model",
    "setting",
    "metric",
    "eps",
    "n_eps",
    "ci_low",
    "ci_high",
    "status",
    "n_min",
    "n_max",
    "n_points",
)


def log_means(n: np.ndarray, logs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-n means of logs (..., points) over its points: (distinct n, (..., distinct n)).
    Summed by sorting and np.add.reduceat (no dense points x n matrix)."""
    grid, index = np.unique(n, return_inverse=True)
    order = np.argsort(index, kind="stable")
    counts = np.bincount(index, minlength=grid.size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sums = np.add.reduceat(np.asarray(logs, dtype=float)[..., order], starts, axis=-1)
    return grid, sums / counts


def first_reach(grid: np.ndarray, curves: np.ndarray, eps: float) -> np.ndarray:
    """Where each curve of log seed-means (..., distinct n) first falls to log(eps).

    Between the bracketing n (the last above eps, the first at or below) log error is
    linear in log n. The smallest n where the curve is already at or below eps there;
    inf where it never is (nothing beyond the largest n is extrapolated). Shape (...).
    """
    grid = np.asarray(grid, dtype=float)
    x = np.log(grid)
    curves = np.asarray(curves, dtype=float)
    target = math.log(eps)
    below = curves <= target
    hit = below.any(axis=-1)
    first = np.argmax(below, axis=-1)
    before = np.maximum(first - 1, 0)
    y0 = np.take_along_axis(curves, before[..., None], axis=-1)[..., 0]
    y1 = np.take_along_axis(curves, first[..., None], axis=-1)[..., 0]
    step = y0 - y1  # > 0 wherever first > 0: y0 > target >= y1
    frac = np.divide(y0 - target, step, out=np.zeros_like(y0), where=first > 0)
    n_eps = np.exp(x[before] + frac * (x[first] - x[before]))
    n_eps = np.where(first > 0, n_eps, grid[0])  # exactly n_min, not exp(log(n_min))
    return np.where(hit, n_eps, np.inf)


def _censored_interval(draws: np.ndarray, n_max: float, level: float) -> tuple[float, float]:
    """Percentile interval of bootstrap n_eps where a draw that never reaches eps is inf:
    an end that falls beyond n_max (among such draws) is inf, not an extrapolation."""
    alpha = 1.0 - level
    finite = np.where(np.isinf(draws), 2.0 * n_max, draws)  # any value above n_max will do
    ends = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    low, high = (math.inf if end > n_max else float(end) for end in ends)
    return low, high


def samples_to_reach(
    n: Sequence[float] | np.ndarray,
    value: Sequence[float] | np.ndarray,
    levels: Sequence[float],
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> list[dict[str, Any]]:
    """n_eps of one curve (per-seed points) at each error level, with its interval.

    The seed mean at n is the geometric mean (the mean of log value, as in the slope fit
    and the figures); n_eps is where it first falls to eps (first_reach). status:
    "reached" (n_min < n_eps <= n_max), "already reached" (at or below eps at n_min:
    n_eps = n_min, an upper bound), "not reached" (above eps at every n: n_eps is NaN, not
    extrapolated) or "no data". The interval resamples seeds within each n
    (bootstrap_within, from the same fixed seed for every curve); a draw that never
    reaches eps counts as beyond n_max, so ci_high is inf when more than (1 - level) / 2
    of the draws do not reach eps, and ci_low = n_min says the lower end is censored there.
    """
    n = np.asarray(n, dtype=float)
    value = np.asarray(value, dtype=float)
    keep = np.isfinite(n) & np.isfinite(value) & (n > 0) & (value > 0)
    n, logs = n[keep], np.log(value[keep])
    nan = float("nan")
    if n.size == 0:
        return [
            {"eps": eps, "n_eps": nan, "ci_low": nan, "ci_high": nan, "status": NO_DATA,
             "n_min": nan, "n_max": nan, "n_points": 0}
            for eps in levels
        ]  # fmt: skip
    grid, means = log_means(n, logs)
    bounds = {"n_min": float(grid[0]), "n_max": float(grid[-1]), "n_points": int(grid.size)}
    boot = None
    if np.unique(n, return_counts=True)[1].max() >= 2:
        rng = np.random.default_rng(seed)
        boot = log_means(n, bootstrap_within(logs, n, resamples, rng, level))[1]
    rows = []
    for eps in levels:
        n_eps = float(first_reach(grid, means, eps))
        status = NOT_REACHED if math.isinf(n_eps) else REACHED
        if n_eps == grid[0]:
            status = ALREADY_REACHED
        low = high = nan
        if boot is not None:
            low, high = _censored_interval(first_reach(grid, boot, eps), grid[-1], level)
        rows.append(
            {
                "eps": float(eps),
                "n_eps": nan if status == NOT_REACHED else n_eps,
                "ci_low": low,
                "ci_high": high,
                "status": status,
                **bounds,
            }
        )
    return rows


def default_levels(curves: Sequence[np.ndarray], count: int = LEVELS_PER_METRIC) -> list[float]:
    """`count` error levels for curves of one metric (each: its seed means at every n).

    With a = the largest of the curves' smallest seed means and b = the smallest of their
    largest, the levels are geometric interior points of [lo, hi] = [a, b]:
    lo (hi/lo)^(i/(count+1)), i = 1..count, to 3 significant digits, largest first; every
    curve then brackets every level. When the curves do not overlap (a >= b: one falls
    below where another starts), no level is bracketed by all of them, and [lo, hi] is
    between the medians over curves of their smallest and of their largest seed means
    (so that about half the curves bracket each level, the others have reached it at
    their smallest n or never do); if even those are out of order, [b, a].
    """
    curves = [np.asarray(c, dtype=float) for c in curves]
    curves = [c[np.isfinite(c) & (c > 0)] for c in curves]
    curves = [c for c in curves if c.size]
    if not curves:
        return []
    lows = np.array([c.min() for c in curves])
    highs = np.array([c.max() for c in curves])
    lo, hi = float(lows.max()), float(highs.min())
    if lo >= hi:
        lo, hi = float(np.median(lows)), float(np.median(highs))
        if lo >= hi:
            lo, hi = float(highs.min()), float(lows.max())
    levels = {float(f"{lo * (hi / lo) ** (i / (count + 1)):.3g}") for i in range(1, count + 1)}
    return sorted(levels, reverse=True)


def sample_complexity(
    frame: pd.DataFrame,
    rate_groups: Sequence[str] = (),
    floors: Mapping[str, str] | None = None,
    levels: Mapping[str, Sequence[float]] | None = None,
    *,
    resolutions: Mapping[str, str] | None = None,
    model_free_metrics: Sequence[str] = (),
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> pd.DataFrame:
    """n_eps of every curve fitted as a rate (its points above its floor and resolution,
    finite and positive) at each error level: SAMPLE_COMPLEXITY_COLUMNS, then the
    rate-group columns (the setting's values, for figures).

    levels: metric -> error levels; a metric without an entry gets default_levels of the
    seed means of its curves, per study.
    """
    frame = _model_free(frame, model_free_metrics)
    curves = [
        (values, setting, metric, above_floor(kept, floor))
        for values, setting, metric, _, kept, floor, _ in _curves(
            frame, rate_groups, dict(floors or {}), resolutions
        )
    ]
    seed_means: dict[tuple[str, str], list[np.ndarray]] = {}
    for values, _, metric, kept in curves:
        usable = kept[(kept["value"] > 0) & np.isfinite(kept["value"])]
        if not usable.empty:
            means = np.exp(np.log(usable["value"]).groupby(usable["n"]).mean()).to_numpy()
            seed_means.setdefault((values["study"], metric), []).append(means)
    chosen = dict(levels or {})
    found_levels: dict[tuple[str, str], list[float]] = {}
    rows = []
    for values, setting, metric, kept in curves:
        eps_list = chosen.get(metric)
        if eps_list is None:  # once per (study, metric)
            group = (values["study"], metric)
            if group not in found_levels:
                found_levels[group] = default_levels(seed_means.get(group, []))
            eps_list = found_levels[group]
        found = samples_to_reach(
            kept["n"], kept["value"], eps_list, level=level, resamples=resamples, seed=seed
        )
        key = {"study": values["study"], "model": values["model"], "setting": setting}
        extra = {k: values[k] for k in rate_groups if k not in SAMPLE_COMPLEXITY_COLUMNS}
        rows += [{**key, "metric": metric, **row, **extra} for row in found]
    extras = [k for k in rate_groups if k not in SAMPLE_COMPLEXITY_COLUMNS]
    table = pd.DataFrame(rows, columns=[*SAMPLE_COMPLEXITY_COLUMNS, *extras])
    for col in ("n_min", "n_max"):
        if (table[col].dropna() % 1 == 0).all():  # integral sample sizes print as integers
            table[col] = table[col].astype("Int64")
    return table


def study_sample_complexity(frame: pd.DataFrame, study: Study, **kwargs: Any) -> pd.DataFrame:
    """sample_complexity with the declarations of a study, on the rows study_rates fits."""
    return sample_complexity(
        rate_rows(frame, study), study.rate_groups, study.floors,
        resolutions=study.resolutions, model_free_metrics=study.model_free_metrics, **kwargs,
    )  # fmt: skip
