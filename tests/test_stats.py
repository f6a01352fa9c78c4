"""The statistics themselves: the verdict rule, the interval's coverage, power, and a
self-test on each study's committed default design (docs/statistics.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toolkit import stats
from toolkit.stats import Claim, aggregate, fit_slope, judge

ROOT = Path(__file__).resolve().parents[1]
N_GRID = np.array([100, 300, 1000, 3000])


@pytest.mark.parametrize(
    ("kind", "low", "high", "expected"),
    [
        ("upper bound", -0.9, -0.55, "holds"),  # high <= theta + d = -0.4
        ("upper bound", -0.9, -0.35, "inconclusive"),
        ("upper bound", -0.35, -0.1, "fails"),  # low > -0.4
        ("lower bound", -0.55, -0.1, "holds"),  # low >= theta - d = -0.6
        ("lower bound", -0.7, -0.1, "inconclusive"),
        ("lower bound", -0.9, -0.65, "fails"),
        ("exact rate", -0.58, -0.42, "holds"),
        ("exact rate", -0.7, -0.42, "inconclusive"),
        ("exact rate", -0.35, -0.2, "fails"),
        ("exact rate", -0.9, -0.61, "fails"),
        ("exact rate", np.nan, np.nan, "inconclusive"),
    ],
)
def test_the_verdict_rule(kind, low, high, expected):
    assert judge(low, high, Claim(-0.5, kind, 0.1)) == expected


def test_a_wider_interval_never_turns_inconclusive_into_holds():
    claim = Claim(-0.5, "upper bound")
    centre = np.linspace(-1.0, 0.0, 41)
    for half in (0.05, 0.2, 0.5, 2.0):
        narrow, wide = (
            judge(centre - half, centre + half, claim),
            judge(centre - 2 * half, centre + 2 * half, claim),
        )
        assert not np.any((wide == "holds") & (narrow != "holds"))


def test_claims_are_validated():
    with pytest.raises(ValueError, match="claim kind"):
        Claim(-0.5, "sideways")
    with pytest.raises(ValueError, match="margin"):
        Claim(-0.5, "upper bound", -0.1)


def test_aggregate_keeps_every_setting():
    assert aggregate(["holds", "holds"])[0] == "holds"
    assert aggregate(["holds", "inconclusive", "holds"]) == (
        "inconclusive",
        "2/3 holds, 1/3 inconclusive",
    )
    assert aggregate(["holds", "fails", "inconclusive"])[0] == "fails"
    assert aggregate([])[0] == "inconclusive"


def test_noiseless_power_law_gives_exact_slope_and_a_point_interval():
    n = np.repeat(N_GRID, 3)
    fit = fit_slope(n, 3.0 * n**-0.7)
    assert fit.slope == pytest.approx(-0.7, abs=1e-12)
    assert (fit.ci_low, fit.ci_high) == pytest.approx((-0.7, -0.7), abs=1e-12)
    assert (fit.n_min, fit.n_max, fit.n_points) == pytest.approx((100, 3000, 4))


def test_the_interval_is_the_textbook_one_for_equal_seeds_and_equal_noise():
    """With equal variance estimates the Welch interval is OLS with the pure-error variance;
    checked against scipy's linregress on the per-n means (their slope and se agree)."""
    from scipy import stats as scipy_stats

    rng = np.random.default_rng(0)
    n = np.repeat(N_GRID, 2)
    y = -0.5 * np.log(n) + 0.1 * rng.standard_normal(n.size)
    fit = fit_slope(n, np.exp(y))
    means = pd.Series(y).groupby(n).mean()
    ref = scipy_stats.linregress(np.log(means.index.to_numpy(float)), means.to_numpy())
    assert fit.slope == pytest.approx(ref.slope, abs=1e-12)
    s = stats.summarise(np.log(n), y)
    expected = np.sqrt((s.var * stats.slope_coefficients(s.x, s.count) ** 2).sum())
    assert fit.se == pytest.approx(expected, rel=1e-12)


def test_one_seed_per_n_gives_no_interval():
    fit = fit_slope(N_GRID, N_GRID**-1.0 * np.array([1.0, 1.1, 0.9, 1.0]))
    assert np.isfinite(fit.slope) and np.isnan(fit.ci_low)
    summary = stats.summarise(np.log(N_GRID), np.log(N_GRID**-1.0))
    assert stats.assess(summary, Claim(-1.0))["reason"].startswith("no interval")


def test_coverage_holds_under_unequal_noise_per_n():
    """Noise sd 0.05 .. 0.8 across n (the largest at the ends, where the slope's weight is):
    a pooled-variance interval covers about 0.85 here; the Welch interval must reach 0.93."""
    sigma = np.array([0.8, 0.1, 0.05, 0.8])
    for seeds in (2, 3, 5):
        rows = stats.self_test(
            np.log(N_GRID), np.full(4, seeds), sigma, Claim(-0.5, "upper bound"), reps=4000
        )
        assert min(r["coverage"] for r in rows) >= 0.93, seeds


def test_power_formula_matches_simulation():
    """detectable: a slope that far from theta is found (the interval excludes theta) with
    about 80% power: (t + t_power) se at the df of the true variances; the Welch interval's
    own df is estimated, which costs some power (measured 0.71 here, 3 seeds per n)."""
    x, count, sigma = np.log(N_GRID), np.full(4, 3.0), np.full(4, 0.2)
    summary = stats.Summary(x, np.zeros(4), sigma**2 / count, count - 1, count)
    est = stats.contrast(stats.slope_coefficients(x, count), summary)
    shift = float(stats.detectable(est.se, est.df))
    rng = np.random.default_rng(3)
    reps = 20000
    mean = shift * x + rng.normal(size=(reps, 4)) * sigma / np.sqrt(count)
    var = sigma**2 * rng.chisquare(count - 1, size=(reps, 4)) / (count - 1) / count
    draws = stats.contrast(
        stats.slope_coefficients(x, count),
        stats.Summary(x, mean, var, np.broadcast_to(count - 1, mean.shape), count),
    )
    low, _ = draws.interval()
    assert 0.65 <= np.mean(low > 0) <= 0.85
    assert np.mean(draws.value - 1.96 * draws.se > 0) > 0.75  # a z-interval would over-claim


def test_seeds_needed_reaches_its_target():
    x, sigma2 = np.log(N_GRID), np.full(4, 0.3**2)
    k = stats.seeds_needed(x, sigma2, 0.05)
    c = stats.slope_coefficients(x, np.ones(4))
    for seeds, ok in ((k, True), (k - 1, False)):
        count = np.full(4, seeds)
        summary = stats.Summary(x, np.zeros(4), sigma2 / count, count - 1, count)
        est = stats.contrast(c, summary)
        assert (stats.half_width(est.se, est.df) <= 0.05) == ok


def _study_designs():
    """Each committed study's default design: (name, log n, seeds, noise per n)."""
    import studies
    from toolkit.rates import study_design
    from toolkit.report import read_study_frames

    frames = read_study_frames(ROOT / "results")
    registry = studies.registry()
    out = []
    for name, frame in frames.items():
        design = study_design(frame.drop(columns="_file"), registry[name])
        if design is not None:
            out.append((name, design["x"], design["count"], design["sigma"]))
    return out


@pytest.mark.parametrize("kind", ["upper bound", "lower bound", "exact rate"])
def test_self_test_at_every_committed_design(kind):
    """Synthetic curves on each study's default design (its n grid, seeds, a measured noise
    per n): coverage >= 0.93 at every true slope; a claim false by 2 margins holds at most
    5% of the time; at theta - 2 margins an upper bound holds more often than at theta."""
    designs = _study_designs()
    assert {name for name, *_ in designs} >= {"conditional-diffusion", "st-dit"}
    for name, x, count, sigma in designs:
        claim = Claim(-0.5, kind)
        rows = {r["shift"]: r for r in stats.self_test(x, count, sigma, claim, reps=4000)}
        assert min(r["coverage"] for r in rows.values()) >= 0.93, name
        false_side = {"upper bound": [2.0], "lower bound": [-2.0], "exact rate": [-2.0, 2.0]}
        for shift in false_side[kind]:
            assert rows[shift]["holds"] <= 0.05, (name, shift)
        if kind == "upper bound":
            assert rows[-2.0]["holds"] > rows[0.0]["holds"], name


def test_toolkit_report_gives_known_slopes_the_right_verdicts(tmp_path, monkeypatch):
    """Synthetic conditional-diffusion curves on the default design (4 n, 2 seeds) through
    `toolkit report`: the theory slope with tiny noise holds, 3 margins slower with tiny
    noise fails, the theory slope with large seed noise is inconclusive (underpowered)."""
    from toolkit.cli import main

    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")
    theta = -2 * 1.5 / (1 + 1 + 3)  # kink, beta 1.5: score error upper bound n^-0.6
    rng = np.random.default_rng(0)
    rows = []
    for model, slope, noise in (("exact", theta, 1e-3), ("slow", theta + 0.3, 1e-3),
                                ("noisy", theta, 0.5)):  # fmt: skip
        for n in (316, 1000, 3162, 10000):
            for seed in (0, 1):
                value = 0.1 * n**slope * np.exp(noise * rng.standard_normal())
                rows.append({"study": "conditional-diffusion", "model": model, "n": n,
                             "seed": seed, "metric": "score_error", "value": value,
                             "density": "kink", "beta": 1.5, "dim": 1, "cond_dim": 1,
                             "p_uncond": 0.5, "guidance": 0.0, "kernel_order": 4,
                             "status": "ok"})  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "conditional_diffusion.csv", index=False)
    assert main(["report", "--results", str(tmp_path)]) == 0
    rates = pd.read_csv(tmp_path / "rates.csv").set_index("model")
    assert rates.loc["exact", "verdict"] == "holds"
    assert rates.loc["slow", "verdict"] == "fails"
    assert rates.loc["noisy", "verdict"] == "inconclusive"
    assert rates.loc["noisy", "reason"].startswith("underpowered")
    assert rates.loc["noisy", "seeds_needed"] > 2
    report = (tmp_path / "REPORT.md").read_text()
    assert "## How much to trust these verdicts" in report
    summary = report[report.index("## Summary") : report.index("## Claims")]
    rows = [line.split("|")[1:-1] for line in summary.splitlines() if line.startswith("| ")]
    claims = {cells[0].strip(): cells[1].strip() for cells in rows[1:]}
    assert claims["exact: score_error falls at least like n^-0.6 (upper bound)"] == "**holds**"
    assert claims["slow: score_error falls at least like n^-0.6 (upper bound)"] == "**fails**"
    assert all(len(claim) <= 100 for claim in claims)
