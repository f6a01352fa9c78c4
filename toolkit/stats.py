"""The statistics behind every verdict: slopes with t-intervals, claims, verdicts, power.

One place for what a study must not re-type (method and its measured coverage:
docs/statistics.md):

    summarise(x, y)          per distinct x: the mean of y over seeds, its variance, its df
    contrast(coef, summary)  a linear combination of the per-x means with a Welch-
                             Satterthwaite t-interval (slopes, slope differences, curvature)
    fit_slope(x, value)      least-squares slope of log(value) on log(x) with its interval
    Claim, judge             what a theory says (theta, kind, margin) and the verdict rule
    assess(summary, claim)   slope, interval, curvature, polylog sensitivity, power, verdict
    aggregate(verdicts)      one verdict for a claim tested in several settings
    self_test(...)           coverage and verdict rates on synthetic curves of known slope

Every function takes arrays with optional leading batch axes (the self-test simulates
thousands of curves in one call).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95  # two-sided level of every interval
POWER = 0.80  # the power at which `detectable` is quoted
DEFAULT_MARGIN = 0.1  # a slope difference that matters, unless a claim declares its own
MIN_N = 3  # fewer distinct n cannot tell a power law from anything else
MAX_SEEDS = 10_000  # seeds_needed reports inf beyond this
WIDE_RANGE = 10.0  # seeds_needed_wide: the n range widened by this factor (upwards)

KINDS = ("upper bound", "lower bound", "exact rate")
HOLDS, FAILS, INCONCLUSIVE, NO_THEORY = "holds", "fails", "inconclusive", "no theory"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NO_THEORY)


@dataclass(frozen=True)
class Claim:
    """What a theory says of a statistic (a slope, a slope difference, a ratio's log).

    upper bound: statistic <= theta (an error falls at least like n^theta);
    lower bound: statistic >= theta (no estimator does better than n^theta);
    exact rate:  statistic == theta. margin: the difference that matters (>= 0).
    """

    theta: float
    kind: str = "exact rate"
    margin: float = DEFAULT_MARGIN

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim kind must be one of {', '.join(KINDS)} (got {self.kind!r})")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(f"claim margin must be finite and >= 0 (got {self.margin!r})")
        if not math.isfinite(self.theta):
            raise ValueError(f"claim theta must be finite (got {self.theta!r})")

    def text(self) -> str:
        """E.g. '<= -0.5 + 0.1' for an upper bound."""
        sign = {"upper bound": "<=", "lower bound": ">=", "exact rate": "="}[self.kind]
        return f"{sign} {self.theta:.3g} (margin {self.margin:g})"


def judge(low: np.ndarray | float, high: np.ndarray | float, claim: Claim) -> np.ndarray:
    """holds / fails / inconclusive from an interval [low, high] (arrays broadcast):

    upper bound: holds if high <= theta + margin, fails if low > theta + margin;
    lower bound: holds if low >= theta - margin, fails if high < theta - margin;
    exact rate:  holds if the interval lies in [theta - margin, theta + margin], fails if
                 it lies outside it. A missing interval is inconclusive.
    """
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    top, bottom = claim.theta + claim.margin, claim.theta - claim.margin
    if claim.kind == "upper bound":
        holds, fails = high <= top, low > top
    elif claim.kind == "lower bound":
        holds, fails = low >= bottom, high < bottom
    else:
        holds, fails = (low >= bottom) & (high <= top), (high < bottom) | (low > top)
    known = np.isfinite(low) & np.isfinite(high)
    return np.select([known & holds, known & fails], [HOLDS, FAILS], INCONCLUSIVE)


def aggregate(verdicts: Sequence[str]) -> tuple[str, str]:
    """One verdict for a claim over settings, with the counts: holds only if every setting
    holds, fails if any fails, else inconclusive (no setting is ever dropped)."""
    verdicts = list(verdicts)
    if not verdicts:
        return INCONCLUSIVE, "no setting"
    if any(v == FAILS for v in verdicts):
        word = FAILS
    elif all(v == HOLDS for v in verdicts):
        word = HOLDS
    elif all(v == NO_THEORY for v in verdicts):
        word = NO_THEORY
    else:
        word = INCONCLUSIVE
    counts = {v: verdicts.count(v) for v in dict.fromkeys(verdicts)}
    return word, ", ".join(f"{c}/{len(verdicts)} {v}" for v, c in counts.items())


# ---- Per-x summaries and linear contrasts ------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Per distinct abscissa (sorted): x (its log), the mean over seeds, the variance of
    that mean, its degrees of freedom and the number of seeds (the least-squares weight).
    Arrays (..., K); a batch axis lets the self-test carry many curves at once."""

    x: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    df: np.ndarray
    count: np.ndarray


def summarise(x: np.ndarray, y: np.ndarray) -> Summary:
    """Per distinct x: mean of y, variance of the mean s^2 / k (df k - 1). An x with a
    single point borrows the pooled within-x variance of the others (and its df)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    grid, index = np.unique(x, return_inverse=True)
    count = np.bincount(index, minlength=grid.size).astype(float)
    mean = np.bincount(index, y, minlength=grid.size) / count
    squares = np.bincount(index, (y - mean[index]) ** 2, minlength=grid.size)
    df = count - 1
    pooled_df = df.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        s2 = np.where(df > 0, squares / np.maximum(df, 1), squares.sum() / pooled_df)
    df = np.where(df > 0, df, pooled_df)
    return Summary(grid, mean, s2 / count, df, count)


def slope_coefficients(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """c with slope = c @ means: weighted least squares of the per-x means on x."""
    centre = (weight * x).sum(-1, keepdims=True) / weight.sum(-1, keepdims=True)
    sxx = (weight * (x - centre) ** 2).sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return weight * (x - centre) / sxx


@dataclass(frozen=True)
class Estimate:
    """A linear contrast of per-x means: value, standard error, Welch-Satterthwaite df."""

    value: np.ndarray
    se: np.ndarray
    df: np.ndarray

    def interval(self, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
        half = half_width(self.se, self.df, level)
        return self.value - half, self.value + half


def half_width(se: np.ndarray, df: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """t_{(1 + level) / 2, df} se (NaN where se is NaN; 0 where se is 0)."""
    q = stats.t.ppf((1 + level) / 2, np.where(np.isfinite(df) & (df > 0), df, np.inf))
    return np.where(se == 0, 0.0, q * se)


def contrast(coef: np.ndarray, summary: Summary, shift: np.ndarray | float = 0.0) -> Estimate:
    """coef @ (means - shift) with variance sum coef^2 var and Satterthwaite's df."""
    terms = coef**2 * summary.var
    variance = terms.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = variance**2 / np.where(coef != 0, terms**2 / summary.df, 0.0).sum(-1)
    df = np.where(variance > 0, df, np.inf)
    return Estimate((coef * (summary.mean - shift)).sum(-1), np.sqrt(variance), df)


@dataclass(frozen=True)
class SlopeFit:
    """A fitted log-log slope: value, interval, se and df, and the x range it used."""

    slope: float
    ci_low: float
    ci_high: float
    se: float
    df: float
    n_min: float
    n_max: float
    n_points: int


def fit_summary(summary: Summary, level: float = LEVEL) -> SlopeFit:
    """The slope of one curve's summary (x = log abscissa) with its t-interval."""
    k = summary.x.size
    nan = math.nan
    if k == 0:
        return SlopeFit(nan, nan, nan, nan, nan, nan, nan, 0)
    bounds = (float(np.exp(summary.x[0])), float(np.exp(summary.x[-1])), k)
    if k < 2:
        return SlopeFit(nan, nan, nan, nan, nan, *bounds)
    est = contrast(slope_coefficients(summary.x, summary.count), summary)
    low, high = est.interval(level)
    return SlopeFit(float(est.value), float(low), float(high), float(est.se), float(est.df),
                    *bounds)  # fmt: skip


def fit_slope(
    x: Sequence[float] | np.ndarray, value: Sequence[float] | np.ndarray, level: float = LEVEL
) -> SlopeFit:
    """Least-squares slope of log(value) on log(x) over per-seed points, with a Welch t-
    interval from the within-x scatter. Non-positive and non-finite points are dropped."""
    x, value = np.asarray(x, dtype=float), np.asarray(value, dtype=float)
    keep = np.isfinite(x) & np.isfinite(value) & (x > 0) & (value > 0)
    return fit_summary(summarise(np.log(x[keep]), np.log(value[keep])), level)


def difference(a: SlopeFit, b: SlopeFit, level: float = LEVEL) -> tuple[float, float, float]:
    """a - b for two independent fits: (value, ci_low, ci_high), Satterthwaite df."""
    variance = a.se**2 + b.se**2
    if not math.isfinite(variance):
        return a.slope - b.slope, math.nan, math.nan
    df = math.inf if variance == 0 else variance**2 / (a.se**4 / a.df + b.se**4 / b.df)
    half = float(half_width(np.sqrt(variance), np.asarray(df), level))
    value = a.slope - b.slope
    return value, value - half, value + half


# ---- Power ------------------------------------------------------------------------------


def detectable(se: np.ndarray, df: np.ndarray, level: float = LEVEL, power: float = POWER):
    """The deviation from theta a two-sided test at `level` detects with `power`:
    (t_{(1+level)/2} + t_power) se."""
    dof = np.where(np.isfinite(df) & (df > 0), df, np.inf)
    return (stats.t.ppf((1 + level) / 2, dof) + stats.t.ppf(power, dof)) * se


def seeds_needed(
    x: np.ndarray, point_var: np.ndarray, target: float, level: float = LEVEL
) -> float:
    """Seeds per x (the same at every x) for the slope's half-width to reach `target`,
    given each x's per-seed variance point_var; inf beyond MAX_SEEDS or without variance.
    The half-width falls with the seeds, so a bisection finds the smallest count."""
    if x.size < 2 or not np.all(np.isfinite(point_var)) or target <= 0:
        return math.inf
    c = slope_coefficients(x, np.ones_like(x))

    def half(k: np.ndarray) -> np.ndarray:  # k: (candidates,)
        terms = c**2 * point_var / k[:, None]
        variance = terms.sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            df = variance**2 / (terms**2 / (k[:, None] - 1)).sum(-1)
        return np.where(variance > 0, half_width(np.sqrt(variance), df, level), 0.0)

    # The half-width falls with k: a coarse geometric grid, then every k in the bracket.
    coarse = np.unique(np.geomspace(2, MAX_SEEDS, 64).round())
    ok = np.flatnonzero(half(coarse) <= target)
    if not ok.size:
        return math.inf
    if ok[0] == 0:
        return 2.0
    fine = np.arange(coarse[ok[0] - 1] + 1, coarse[ok[0]] + 1)
    return float(fine[np.flatnonzero(half(fine) <= target)[0]])


# ---- One curve, assessed ------------------------------------------------------------------


def halves(k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Index masks of the lower and upper halves of k sorted x (sharing the middle one when
    k is odd); None below 4 distinct x."""
    if k < 4:
        return None
    size = (k + 1) // 2
    lower = np.arange(k) < size
    return lower, np.arange(k) >= k - size


def _subset_coefficients(summary: Summary, mask: np.ndarray) -> np.ndarray:
    weight = np.where(mask, summary.count, 0.0)
    return np.where(mask, slope_coefficients(summary.x, weight), 0.0)


def assess(summary: Summary, claim: Claim | None, level: float = LEVEL) -> dict:
    """Everything rates.csv says of one curve besides its identity (docs/statistics.md):
    slope and interval, the upper-half slope and the curvature test, the slope of
    value / log n and the verdict it would give, power (detectable, seeds_needed[_wide])
    and the verdict with its reason. `reason` is set only for an inconclusive verdict."""
    fit = fit_summary(summary, level)
    margin = claim.margin if claim is not None else DEFAULT_MARGIN
    row = {
        "slope": fit.slope, "ci_low": fit.ci_low, "ci_high": fit.ci_high, "se": fit.se,
        "df": fit.df, "n_min": fit.n_min, "n_max": fit.n_max, "n_points": fit.n_points,
        "theory": claim.theta if claim else math.nan, "claim": claim.kind if claim else "",
        "margin": margin if claim else math.nan,
        "slope_upper": math.nan, "upper_ci_low": math.nan, "upper_ci_high": math.nan,
        "curvature_p": math.nan, "slope_log1": math.nan, "verdict_log1": "",
        "detectable": float(detectable(fit.se, fit.df, level)) if fit.n_points >= 2 else math.nan,
        "seeds_needed": math.nan, "seeds_needed_wide": math.nan,
    }  # fmt: skip
    if fit.n_points >= 2:
        point_var = summary.var * summary.count
        row["seeds_needed"] = seeds_needed(summary.x, point_var, margin / 2, level)
        span = summary.x - summary.x[0]
        wide = summary.x[0] + span * (1 + math.log(WIDE_RANGE) / span[-1])
        pooled = np.full_like(point_var, point_var.mean())
        row["seeds_needed_wide"] = seeds_needed(wide, pooled, margin / 2, level)
        coef = slope_coefficients(summary.x, summary.count)
        log1 = contrast(coef, summary, np.log(summary.x))  # value / log n
        row["slope_log1"] = float(log1.value)
        if claim is not None:
            row["verdict_log1"] = str(judge(*log1.interval(level), claim))
    parts = halves(fit.n_points)
    if parts is not None:
        low_coef, up_coef = (_subset_coefficients(summary, m) for m in parts)
        upper = contrast(up_coef, summary)
        bend = contrast(up_coef - low_coef, summary)
        row["slope_upper"] = float(upper.value)
        row["upper_ci_low"], row["upper_ci_high"] = (float(v) for v in upper.interval(level))
        if bend.se > 0 and np.isfinite(bend.se):
            row["curvature_p"] = float(2 * stats.t.sf(abs(bend.value) / bend.se, bend.df))
    row["verdict"], row["reason"] = _verdict(fit, claim, row, level)
    return row


def _verdict(fit: SlopeFit, claim: Claim | None, row: dict, level: float) -> tuple[str, str]:
    if claim is None:
        return NO_THEORY, ""
    if fit.n_points < MIN_N:
        return INCONCLUSIVE, f"too few n ({fit.n_points}, needs {MIN_N})"
    if not math.isfinite(fit.ci_low):
        return INCONCLUSIVE, "no interval (one seed per n)"
    verdict = str(judge(fit.ci_low, fit.ci_high, claim))
    if row["curvature_p"] < 1 - level:
        return INCONCLUSIVE, (
            f"pre-asymptotic (halves differ, p={row['curvature_p']:.2g}; upper-half slope "
            f"{row['slope_upper']:.3g} [{row['upper_ci_low']:.3g}, {row['upper_ci_high']:.3g}])"
        )
    if verdict == INCONCLUSIVE:
        return INCONCLUSIVE, (
            f"underpowered (CI half-width {(fit.ci_high - fit.ci_low) / 2:.2g} vs margin "
            f"{claim.margin:g}; {_seeds(row['seeds_needed'])} seeds per n needed)"
        )
    return verdict, ""


def _seeds(value: float) -> str:
    return f">{MAX_SEEDS}" if not math.isfinite(value) else f"{value:.0f}"


# ---- Self-test: synthetic curves of known slope through the same rule --------------------

SHIFTS = (-2.0, -0.5, 0.0, 0.5, 2.0)  # true slope = theta + shift * margin


def self_test(
    x: np.ndarray,
    count: np.ndarray,
    sigma: np.ndarray,
    claim: Claim,
    *,
    reps: int = 4000,
    seed: int = 0,
    level: float = LEVEL,
) -> list[dict]:
    """Curves c n^s e^noise on a design (log n per distinct n, seeds per n, the per-seed
    noise sd of log value per n), Gaussian noise, for s = theta + shift * margin (SHIFTS):
    per s, the interval's coverage and the rates of each verdict of `claim` (with the
    curvature check, as in assess). The per-n mean and variance are drawn exactly (normal
    and scaled chi-square), `reps` curves at once."""
    rng = np.random.default_rng(seed)
    x, count, sigma = (np.asarray(a, dtype=float) for a in (x, count, sigma))
    df = np.maximum(count - 1, 1)
    coef = slope_coefficients(x, count)
    parts = halves(x.size)
    rows = []
    for shift in SHIFTS:
        s = claim.theta + shift * claim.margin
        mean = s * x + rng.normal(size=(reps, x.size)) * sigma / np.sqrt(count)
        var = sigma**2 * rng.chisquare(df, size=(reps, x.size)) / df / count
        summary = Summary(x, mean, var, np.broadcast_to(df, mean.shape), count)
        est = contrast(coef, summary)
        low, high = est.interval(level)
        verdict = judge(low, high, claim)
        if parts is not None:
            bend = contrast(
                _subset_coefficients(summary, parts[1]) - _subset_coefficients(summary, parts[0]),
                summary,
            )
            curved = 2 * stats.t.sf(np.abs(bend.value) / bend.se, bend.df) < 1 - level
            verdict = np.where(curved, INCONCLUSIVE, verdict)
        rows.append(
            {
                "shift": shift,
                "slope": s,
                "coverage": float(np.mean((low <= s) & (s <= high))),
                "holds": float(np.mean(verdict == HOLDS)),
                "fails": float(np.mean(verdict == FAILS)),
                "inconclusive": float(np.mean(verdict == INCONCLUSIVE)),
            }
        )
    return rows
