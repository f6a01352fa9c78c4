"""Rate fits: the log-log slope of an error metric against n, with a seed-bootstrap interval.

A theory paper's claim about a curve is an exponent (error ~ C n^slope). This module fits
that exponent for any study. It knows a study only through its toolkit.study.Study:

    rate_groups      CSV columns that, together with `model` and `metric`, identify one
                     curve, e.g. ("target",) for rf-attention. Every column that varies
                     between cells other than n and seed must be listed, or one curve would
                     mix settings; a curve with two rows for one (n, seed) is therefore an
                     error naming the columns that differ.
    theory_exponent  setting -> the theory's log-log slope for one curve, or None, or a pair
                     (slope, test) with test one of TESTS (below; a bare slope is
                     "two-sided"). `setting` holds `model`, `metric` and the value of every
                     CSV column that is constant within the curve (parameters such as dim,
                     beta; not value, n, seed or the bookkeeping columns).
    non_rate_metrics metrics that are not curves in n (an attention map, a sampler's floor
                     that does not depend on n); never fitted.
    floors           metric -> name of the metric in the same CSV that records its noise
                     floor at the same (setting, n, seed). Floor metrics are not fitted.

Method. On the per-seed points, least squares of log(value) on log(n) gives the slope.
The interval is a stratified percentile bootstrap (level LEVEL, RESAMPLES resamples, a
fixed SEED, so a rerun gives the same digits): within each n the seeds are drawn with
replacement and the line is refitted. A plain resample of k seeds has only (k-1)/k of the
seeds' variance, and a bootstrap distribution is normal-tailed where the seeds' noise
estimate has only df = points - (distinct n) degrees of freedom; with 2-3 seeds per n a
plain percentile interval covers 84-89% instead of 95%. So each resampled value is put
back as the n-mean plus its deviation times sqrt(k/(k-1)) (Davison and Hinkley 1997,
section 3.7, small strata) times t_df/z at the interval's level (the Student correction
that makes the interval exact for Gaussian seed noise). Measured coverage of nominal 95%
on synthetic power laws with lognormal seed noise: 0.90 (3 n x 2 seeds), 0.92 (4 n x 2 or
3 seeds), 0.94 (5 n x 4 seeds). An n with a single seed contributes no resampling noise;
a curve with one seed at every n gets no interval. The interval measures seed noise on
the given n grid, not the curvature of a true curve that is not a power law.

Noise floor. A point (n, seed) is excluded when its value is <= the floor value of the
same (setting, n, seed), and every point at n is excluded when the mean over seeds at n
is <= the mean floor at n: there the curve measures the floor, not the estimator.
Non-positive and non-finite values are excluded too (no logarithm).

Verdicts (thresholds below): "inconclusive" with fewer than MIN_N distinct n left or an
interval wider than MAX_CI_WIDTH (or no interval); otherwise "no theory" without a
theory exponent, and by the theory's test:
- "two-sided" (the theory gives the rate): "consistent" when ci_low <= theory <= ci_high,
  "faster than theory" when ci_high < theory (a steeper decrease), "slower than theory"
  when ci_low > theory;
- "at least" (an upper bound on the error over a class, tested on one member: the curve
  must fall at least this fast): "at least the theory rate" when ci_low <= theory, else
  "slower than theory";
- "no faster" (a lower bound, tested on its hard family: the curve must not fall faster):
  "no faster than theory" when ci_high >= theory, else "faster than theory";
- "on its floor" instead of "slower than theory" (either test) when the curve ends within
  NEAR_FLOOR (2x) of its floor (column floor_ratio: the seed mean at the largest fitted n
  over the floor's): a constant floor f under an error e ~ n^r gives e + f the slope
  r e / (e + f), at most half of r there, so a slow slope measures the apparatus.

Sample complexity (sample_complexity, samples_to_reach). On the same curves and points as
the fit (floor metrics and non-rate metrics never; points above the floor), n_eps is the
smallest n at which the seed mean (geometric: the mean of log value over seeds) reaches
the error level eps, log error interpolated linearly in log n between the last n above
eps and the first at or below it. A curve already at or below eps at its smallest n is
"already reached" (n_eps = n_min, an upper bound); one above eps at every n is "not
reached" (n_eps NaN: nothing is extrapolated beyond the data). The interval resamples
seeds within each n with bootstrap_within (LEVEL, RESAMPLES, SEED as above); a draw that
never reaches eps counts as beyond n_max, so an end of the interval there is inf.
Levels: LEVELS_PER_METRIC per (study, metric) unless given (default_levels).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from toolkit.results import LAST_COLUMNS
from toolkit.study import Study

LEVEL = 0.95  # two-sided level of the bootstrap interval
RESAMPLES = 2000  # bootstrap resamples per curve
SEED = 0  # bootstrap seed; every curve starts from it, so results do not depend on order
MIN_N = 3  # fewer distinct n than this cannot distinguish a power law from anything else
MAX_CI_WIDTH = 1.0  # a wider slope interval says nothing a theory exponent could be held to
NEAR_FLOOR = 2.0  # a curve that ends within this factor of its floor: its slope is the floor's

RATE_COLUMNS = (
    "study",
    "model",
    "setting",
    "metric",
    "slope",
    "ci_low",
    "ci_high",
    "theory",
    "test",
    "n_min",
    "n_max",
    "n_points",
    "floor_ratio",
    "verdict",
)
NOT_SETTING = ("value", "n", "seed", *LAST_COLUMNS)  # columns that are never a curve's setting

TheoryFn = Callable[[dict[str, Any]], "float | None"]


@dataclass(frozen=True)
class SlopeFit:
    """A fitted slope with its interval and the n range (distinct n) it used."""

    slope: float
    ci_low: float
    ci_high: float
    n_min: float
    n_max: float
    n_points: int


def bootstrap_within(
    y: np.ndarray,
    strata: np.ndarray,
    resamples: int,
    rng: np.random.Generator,
    level: float = LEVEL,
) -> np.ndarray:
    """Resample the rows of y within each stratum (seeds within n), spread corrected.

    A resampled row is put back as its stratum mean plus its deviation times
    sqrt(k/(k-1)) t/z (module docstring), so percentiles of a statistic that is linear
    in y give an interval at `level` close to the exact one for Gaussian seed noise.
    y: (points,) or (points, columns); the columns of one row are resampled together
    (paired models sharing a seed). strata: (points,). Returns (resamples, *y.shape).
    """
    y = np.asarray(y, dtype=float)
    strata = np.asarray(strata)
    labels, counts = np.unique(strata, return_counts=True)
    df = int(counts.sum() - labels.size)  # the seeds' pooled degrees of freedom
    q = (1 + level) / 2
    widen = stats.t.ppf(q, df) / stats.norm.ppf(q) if df > 0 else 1.0
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


def fit_slope(
    n: Sequence[float] | np.ndarray,
    value: Sequence[float] | np.ndarray,
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> SlopeFit:
    """Least-squares slope of log(value) on log(n) over per-seed points, with its interval.

    Points with a non-positive or non-finite value are dropped. With fewer than two distinct
    n the slope is NaN; with no n holding two seeds the interval is NaN.
    """
    n = np.asarray(n, dtype=float)
    value = np.asarray(value, dtype=float)
    keep = np.isfinite(n) & np.isfinite(value) & (n > 0) & (value > 0)
    n, value = n[keep], value[keep]
    distinct = np.unique(n)
    nan = float("nan")
    if distinct.size == 0:
        return SlopeFit(nan, nan, nan, nan, nan, 0)
    bounds = (float(distinct[0]), float(distinct[-1]), int(distinct.size))
    if distinct.size < 2:
        return SlopeFit(nan, nan, nan, *bounds)
    x = np.log(n) - np.log(n).mean()  # centred, so the slope is y @ x / x @ x for any y
    y = np.log(value)
    slope = float(y @ x / (x @ x))
    counts = np.unique(n, return_counts=True)[1]
    if counts.max() < 2:
        return SlopeFit(slope, nan, nan, *bounds)
    rng = np.random.default_rng(seed)
    slopes = bootstrap_within(y, n, resamples, rng, level) @ x / (x @ x)  # (resamples,)
    alpha = 1.0 - level
    low, high = np.quantile(slopes, [alpha / 2, 1 - alpha / 2])
    return SlopeFit(slope, float(low), float(high), *bounds)


def usable_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows that can enter a log-log fit or comparison: a finite positive value at n > 0."""
    value, n = frame["value"].to_numpy(dtype=float), frame["n"].to_numpy(dtype=float)
    return frame[np.isfinite(value) & (value > 0) & np.isfinite(n) & (n > 0)]


def above_floor(points: pd.DataFrame, floor: pd.DataFrame | None) -> pd.DataFrame:
    """The points (columns n, seed, value) that are above the noise floor (same columns).

    A point goes when value <= floor at its (n, seed); every point at n goes when the mean
    over seeds at n is <= the mean floor at n.
    """
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


TESTS = ("two-sided", "at least", "no faster")


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


def verdict(
    fit: SlopeFit, theory: float | None, test: str = "two-sided", floor: float = math.nan
) -> str:
    """The plain verdict for a fitted slope against a theory exponent (module docstring);
    floor is floor_ratio of the fitted points ("on its floor" replaces a "slower" verdict
    when it is at most NEAR_FLOOR)."""
    if test not in TESTS:
        raise ValueError(f"test must be one of {', '.join(TESTS)} (got {test!r})")
    width = fit.ci_high - fit.ci_low
    if fit.n_points < MIN_N or not math.isfinite(width) or width > MAX_CI_WIDTH:
        return "inconclusive"
    if theory is None or not math.isfinite(theory):
        return "no theory"
    if test == "no faster":
        return "no faster than theory" if fit.ci_high >= theory else "faster than theory"
    if test == "at least" and fit.ci_low <= theory:
        return "at least the theory rate"
    if test == "two-sided" and fit.ci_low <= theory <= fit.ci_high:
        return "consistent"
    if test == "two-sided" and fit.ci_high < theory:
        return "faster than theory"
    # A constant floor f under an error e ~ n^r flattens the slope of e + f to r e / (e + f):
    # ending within NEAR_FLOOR x f, the curve's slope is at most half the error's there.
    return "on its floor" if floor <= NEAR_FLOOR else "slower than theory"


def split_theory(value: Any) -> tuple[float | None, str]:
    """(exponent, test) from what a theory_exponent returns (None, a slope or a pair)."""
    if value is None:
        return None, "two-sided"
    if isinstance(value, tuple):
        exponent, test = value
        return (None if exponent is None else float(exponent)), str(test)
    return float(value), "two-sided"


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
    return frame[cols].apply(lambda row: setting_label(row.to_dict()), axis=1)


def _constants(curve: pd.DataFrame) -> dict[str, Any]:
    """Every column that is constant (and not missing) within a curve, as Python values."""
    out = {}
    for col in curve.columns:
        if col in NOT_SETTING:
            continue
        values = curve[col].dropna().unique()
        if len(values) == 1 and curve[col].notna().all():
            out[col] = _scalar(values[0])
    return out


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


def _curves(
    frame: pd.DataFrame, rate_groups: Sequence[str], floors: Mapping[str, str]
) -> Iterator[tuple[dict[str, Any], str, str, pd.DataFrame, pd.DataFrame]]:
    """Every curve of `frame` that is fitted as a rate (floor metrics are not), in order:
    (key values, setting label, metric, its rows, its points above the noise floor, the
    floor's rows or None)."""
    keys = ["study", "model", *rate_groups]
    floor_metrics = set(floors.values())
    for metric, by_metric in frame.groupby("metric", sort=True):
        if metric in floor_metrics:
            continue
        floor_rows = frame[frame["metric"] == floors[metric]] if metric in floors else None
        for key, curve in by_metric.groupby(keys, sort=True, dropna=False):
            values = dict(zip(keys, key, strict=True))
            setting = setting_label({k: values[k] for k in rate_groups})
            name = f"{values['study']}/{values['model']}/{setting}/{metric}"
            _check_one_row_per_point(curve, name)
            floor = None
            if floor_rows is not None:
                floor = floor_rows[_matches(floor_rows, values, ["study", *rate_groups])]
                if (floor["model"] == values["model"]).any():  # a floor per model, else shared
                    floor = floor[floor["model"] == values["model"]]
            kept = above_floor(curve[["n", "seed", "value"]], floor)
            yield values, setting, str(metric), curve, kept, floor


def fit_rates(
    frame: pd.DataFrame,
    rate_groups: Sequence[str] = (),
    theory_exponent: TheoryFn | None = None,
    floors: Mapping[str, str] | None = None,
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> pd.DataFrame:
    """One row per curve (study, model, setting, metric) with the columns RATE_COLUMNS.

    `frame` holds tidy rows of one or more studies sharing these declarations (see the
    module docstring for rate_groups, theory_exponent and floors).
    """
    rows = []
    for values, setting, metric, curve, kept, floor in _curves(
        frame, rate_groups, dict(floors or {})
    ):
        fit = fit_slope(kept["n"], kept["value"], level=level, resamples=resamples, seed=seed)
        ratio = floor_ratio(kept, floor)
        theory, test = None, "two-sided"
        if theory_exponent is not None:
            theory, test = split_theory(
                theory_exponent({"model": values["model"], "metric": metric, **_constants(curve)})
            )
        rows.append(
            {
                "study": values["study"],
                "model": values["model"],
                "setting": setting,
                "metric": metric,
                "slope": fit.slope,
                "ci_low": fit.ci_low,
                "ci_high": fit.ci_high,
                "theory": theory,
                "test": test,
                "n_min": fit.n_min,
                "n_max": fit.n_max,
                "n_points": fit.n_points,
                "floor_ratio": ratio,
                "verdict": verdict(fit, theory, test, ratio),
            }
        )
    table = pd.DataFrame(rows, columns=list(RATE_COLUMNS))
    for col in ("n_min", "n_max"):
        if (table[col].dropna() % 1 == 0).all():  # integral sample sizes print as integers
            table[col] = table[col].astype("Int64")
    table["theory"] = table["theory"].astype(float)
    return table


def rate_rows(frame: pd.DataFrame, study: Study) -> pd.DataFrame:
    """The rows of a study that enter rate fits: cells that ran (status ok), and no
    non_rate_metrics (measurements that are not curves in n)."""
    if "status" in frame:
        frame = frame[frame["status"].fillna("ok") == "ok"]
    return frame[~frame["metric"].isin(study.non_rate_metrics)]


def study_rates(frame: pd.DataFrame, study: Study, **kwargs: Any) -> pd.DataFrame:
    """fit_rates with the declarations of a study.

    Rows of cells that failed or diverged (status other than ok) and the study's
    non_rate_metrics (measurements that are not curves in n) are left out.
    """
    frame = rate_rows(frame, study)
    return fit_rates(frame, study.rate_groups, study.theory_exponent, study.floors, **kwargs)


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
    """Per-n means of logs (..., points) over its points: (distinct n, (..., distinct n))."""
    grid, index = np.unique(n, return_inverse=True)
    member = np.zeros((n.size, grid.size))
    member[np.arange(n.size), index] = 1.0
    return grid, logs @ (member / member.sum(axis=0))


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
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> pd.DataFrame:
    """n_eps of every curve fitted as a rate (the points fit_rates uses: above the noise
    floor, finite and positive) at each error level: SAMPLE_COMPLEXITY_COLUMNS, then the
    rate-group columns (the setting's values, for figures).

    levels: metric -> error levels; a metric without an entry gets default_levels of the
    seed means of its curves, per study.
    """
    curves = list(_curves(frame, rate_groups, dict(floors or {})))
    seed_means: dict[tuple[str, str], list[np.ndarray]] = {}
    for values, _, metric, _, kept, _ in curves:
        usable = kept[(kept["value"] > 0) & np.isfinite(kept["value"])]
        if not usable.empty:
            means = np.exp(np.log(usable["value"]).groupby(usable["n"]).mean()).to_numpy()
            seed_means.setdefault((values["study"], metric), []).append(means)
    chosen = dict(levels or {})
    rows = []
    for values, setting, metric, _, kept, _ in curves:
        eps_list = chosen.get(metric)
        if eps_list is None:
            eps_list = default_levels(seed_means.get((values["study"], metric), []))
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
    return sample_complexity(rate_rows(frame, study), study.rate_groups, study.floors, **kwargs)
