"""Rate fits: slope and interval coverage on synthetic power laws, floors, verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from toolkit.rates import MAX_CI_WIDTH, SlopeFit, fit_rates, fit_slope, verdict

N_GRID = np.array([100, 200, 400, 800, 1600])


def power_law(slope: float, seeds: int, sigma: float, rng: np.random.Generator):
    """Per-seed points value = 3 n^slope exp(sigma z): (n, value), seeds per n."""
    n = np.repeat(N_GRID, seeds)
    return n, 3.0 * n**slope * np.exp(sigma * rng.standard_normal(n.size))


def tidy(n, value, seeds: int, **columns) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "study": "synthetic",
            "model": "m",
            "n": n,
            "seed": np.tile(np.arange(seeds), len(N_GRID)),
            "metric": "err",
            "value": value,
            **columns,
        }
    )


def test_noiseless_power_law_gives_exact_slope_and_a_point_interval():
    n, value = power_law(-0.7, seeds=3, sigma=0.0, rng=np.random.default_rng(0))
    fit = fit_slope(n, value)
    assert fit.slope == pytest.approx(-0.7, abs=1e-12)
    assert fit.ci_low == pytest.approx(-0.7, abs=1e-12)
    assert fit.ci_high == pytest.approx(-0.7, abs=1e-12)
    assert (fit.n_min, fit.n_max, fit.n_points) == (100, 1600, 5)


def test_interval_covers_the_true_slope_at_about_the_nominal_rate():
    # 200 synthetic curves, 5 n x 4 seeds, lognormal noise. The interval is corrected for
    # few seeds (t with 15 df); a coverage of 0.95 gives a binomial sd of 0.015 over 200
    # curves, so 0.85-0.99 is a band of more than 3 sd below and 2.7 above.
    rng = np.random.default_rng(1)
    fits = [fit_slope(*power_law(-0.5, 4, 0.3, rng), resamples=300, seed=i) for i in range(200)]
    coverage = np.mean([f.ci_low <= -0.5 <= f.ci_high for f in fits])
    assert 0.85 <= coverage <= 0.99
    # The estimate is unbiased: mean over curves within 3 standard errors (sd ~ 0.05 / curve).
    assert np.mean([f.slope for f in fits]) == pytest.approx(-0.5, abs=0.012)


def test_same_seed_gives_the_same_interval():
    n, value = power_law(-1.0, 3, 0.2, np.random.default_rng(2))
    assert fit_slope(n, value, seed=5) == fit_slope(n, value, seed=5)


def test_one_seed_per_n_gives_no_interval_and_an_inconclusive_verdict():
    n, value = power_law(-1.0, 1, 0.2, np.random.default_rng(3))
    fit = fit_slope(n, value)
    assert np.isfinite(fit.slope) and np.isnan(fit.ci_low)
    assert verdict(fit, -1.0) == "inconclusive"


def test_points_at_or_below_the_floor_are_excluded():
    seeds = 3
    n, value = power_law(-1.0, seeds, 0.0, np.random.default_rng(0))
    frame = tidy(n, value, seeds)
    floor = frame.assign(metric="err_floor", value=1e-9)
    # All seeds at n=100 at the floor: that n goes, the range starts at 200.
    floor.loc[floor["n"] == 100, "value"] = frame.loc[frame["n"] == 100, "value"].to_numpy()
    rates = fit_rates(pd.concat([frame, floor]), floors={"err": "err_floor"})
    assert len(rates) == 1  # the floor metric is not fitted
    row = rates.iloc[0]
    assert (row.n_min, row.n_max, row.n_points) == (200, 1600, 4)
    assert row.slope == pytest.approx(-1.0, abs=1e-12)


def test_a_single_point_below_its_floor_goes_and_a_drowned_mean_removes_its_n():
    seeds = 3
    n, value = power_law(-1.0, seeds, 0.0, np.random.default_rng(0))
    frame = tidy(n, value, seeds)
    frame.loc[(frame["n"] == 1600) & (frame["seed"] == 0), "value"] = 1.0  # an outlier...
    floor = frame.assign(metric="err_floor", value=1e-9)
    floor.loc[(floor["n"] == 1600) & (floor["seed"] == 0), "value"] = 1.0  # ...at its floor
    rates = fit_rates(pd.concat([frame, floor]), floors={"err": "err_floor"})
    assert rates.iloc[0].slope == pytest.approx(-1.0, abs=1e-12)  # the outlier is gone
    assert rates.iloc[0].n_max == 1600  # its n stays: the mean is above the mean floor
    # Points above their own floor, but the mean at n=1600 is below the mean floor there.
    floor.loc[(floor["n"] == 1600) & (floor["seed"] > 0), "value"] = 0.9
    rates = fit_rates(pd.concat([frame, floor]), floors={"err": "err_floor"})
    assert (rates.iloc[0].n_max, rates.iloc[0].n_points) == (800, 4)


@pytest.mark.parametrize(
    ("fit", "theory", "expected"),
    [
        (SlopeFit(-0.5, -0.6, -0.4, 100, 1600, 5), -0.5, "consistent"),
        (SlopeFit(-0.9, -1.0, -0.8, 100, 1600, 5), -0.5, "faster than theory"),
        (SlopeFit(-0.2, -0.3, -0.1, 100, 1600, 5), -0.5, "slower than theory"),
        (SlopeFit(-0.5, -0.6, -0.4, 100, 1600, 5), None, "no theory"),
        (SlopeFit(-0.5, -0.6, -0.4, 100, 200, 2), -0.5, "inconclusive"),
        (SlopeFit(-0.5, -0.5 - MAX_CI_WIDTH, -0.4, 100, 1600, 5), -0.5, "inconclusive"),
    ],
)
def test_verdict_thresholds(fit, theory, expected):
    assert verdict(fit, theory) == expected


def test_theory_gets_the_curve_setting_and_verdicts_follow_from_the_fit():
    rng = np.random.default_rng(4)
    frames = []
    for beta in (1.0, 2.0):
        n, value = power_law(-beta, 4, 0.05, rng)
        frames.append(tidy(n, value, 4, beta=beta, dim=3, runtime_s=rng.random(n.size)))
    seen = []

    def theory(setting):
        seen.append(setting)
        return {1.0: -1.0, 2.0: -1.0}[setting["beta"]]  # right for beta=1, too slow for 2

    rates = fit_rates(pd.concat(frames), ("beta",), theory)
    assert list(rates["setting"]) == ["beta=1", "beta=2"]
    assert list(rates["verdict"]) == ["consistent", "faster than theory"]
    assert seen[0] == {"model": "m", "metric": "err", "study": "synthetic", "beta": 1, "dim": 3}


def test_a_curve_mixing_settings_is_an_error_naming_the_column():
    n, value = power_law(-1.0, 4, 0.1, np.random.default_rng(5))
    frame = pd.concat([tidy(n, value, 4, beta=1.0), tidy(n, value, 4, beta=2.0)])
    with pytest.raises(ValueError, match="columns that differ: beta"):
        fit_rates(frame)


def test_study_rates_skips_failed_cells_and_non_rate_metrics():
    from dataclasses import dataclass

    from toolkit.rates import study_rates
    from toolkit.study import Study

    @dataclass(frozen=True)
    class Config:
        n: tuple[int, ...] = tuple(N_GRID)
        seeds: int = 2

    def declare(**hooks) -> Study:
        return Study(
            name="synthetic",
            summary="A synthetic power law.",
            config=Config,
            axes={"n": "n"},
            run_cell=lambda cell, device: [],
            profiles={"default": {}},
            memory=lambda cell: 0.0,
            **hooks,
        )

    n, value = power_law(-0.5, seeds=2, sigma=0.0, rng=np.random.default_rng(1))
    good = tidy(n, value, seeds=2, status="ok")
    broken = good.iloc[:2].assign(value=np.nan, metric="", status="failed")
    matrix = good.assign(metric="attn_map", row=0).pipe(
        lambda f: pd.concat([f, f.assign(row=1)], ignore_index=True)
    )
    frame = pd.concat([good, broken, matrix], ignore_index=True)
    rates = study_rates(frame, declare(non_rate_metrics=("attn_map",)), resamples=200)
    assert list(rates["metric"]) == ["err"]
    assert rates["slope"].iloc[0] == pytest.approx(-0.5, abs=1e-12)
    with pytest.raises(ValueError, match="several rows per"):
        study_rates(frame, declare(), resamples=200)  # attn_map is no curve


def test_one_sided_tests_give_bound_verdicts():
    from toolkit.rates import SlopeFit, split_theory, verdict

    fit = SlopeFit(-0.8, -0.9, -0.7, 100.0, 1000.0, 4)
    assert verdict(fit, -0.6, "at least") == "at least the theory rate"  # faster: fine
    assert verdict(fit, -0.85, "at least") == "at least the theory rate"
    assert verdict(fit, -1.0, "at least") == "slower than theory"
    assert verdict(fit, -0.6, "no faster") == "faster than theory"
    assert verdict(fit, -0.75, "no faster") == "no faster than theory"
    assert verdict(fit, -1.0, "no faster") == "no faster than theory"
    assert verdict(fit, -1.0) == "slower than theory"  # two-sided
    assert split_theory((-0.5, "no faster")) == (-0.5, "no faster")
    assert split_theory(-0.5) == (-0.5, "two-sided") and split_theory(None)[0] is None
    with pytest.raises(ValueError, match="test must be one of"):
        verdict(fit, -1.0, "sideways")


def test_fit_rates_records_the_test_of_each_curve():
    n = np.repeat([100, 300, 1000, 3000], 2)
    frame = pd.DataFrame(
        {"study": "s", "model": "m", "metric": "err", "n": n, "seed": np.tile([0, 1], 4),
         "value": n ** -0.5 * np.tile([1.0, 1.05], 4)}
    )  # fmt: skip
    table = fit_rates(frame, theory_exponent=lambda setting: (-0.4, "at least"))
    assert table[["theory", "test", "verdict"]].values.tolist() == [
        [-0.4, "at least", "at least the theory rate"]
    ]


def test_a_curve_ending_near_its_floor_is_on_its_floor_not_slower():
    """err = n^-1 + f with a constant floor f: its fitted slope is far slower than -1. Near
    the floor (err / f <= 2 at the largest n) the verdict says so; far above it (a small f)
    the same slope test gives "slower than theory". A faster or consistent curve keeps its
    verdict whatever the floor, and so does a lower-bound test."""
    from toolkit.rates import NEAR_FLOOR, floor_ratio

    n = np.repeat([100, 300, 1000, 3000, 10000], 2)
    seed = np.tile([0, 1], 5)
    wobble = np.tile([1.0, 1.02], 5)

    def frame(floor: float, slope: float = -1.0) -> pd.DataFrame:
        err = (1e-2 * (n / 100.0) ** slope + floor) * wobble
        rows = {"study": "s", "model": "m", "n": n, "seed": seed}
        return pd.concat([
            pd.DataFrame({**rows, "metric": "err", "value": err}),
            pd.DataFrame({**rows, "metric": "err_floor", "value": floor}),
        ])  # fmt: skip

    def fit(f: pd.DataFrame, test: str = "two-sided") -> pd.Series:
        table = fit_rates(f, theory_exponent=lambda s: (-1.0, test), floors={"err": "err_floor"})
        return table.iloc[0]

    near = fit(frame(1e-4))  # err at 10^4: 1e-4 + 1e-4: ratio 2.02 (mean of the two seeds)
    assert near.slope > -0.9 and near.floor_ratio == pytest.approx(2.02, rel=1e-3)
    assert near.verdict == "slower than theory"  # just above NEAR_FLOOR: still a verdict
    on = fit(frame(2e-4))
    assert on.floor_ratio == pytest.approx(1.515, rel=1e-3) and on.floor_ratio <= NEAR_FLOOR
    assert on.verdict == "on its floor"
    assert fit(frame(2e-4), "at least").verdict == "on its floor"
    assert fit(frame(2e-4), "no faster").verdict == "no faster than theory"
    far = fit(frame(1e-7))
    assert far.floor_ratio > 100 and far.verdict == "consistent"
    slow = fit(frame(1e-7, slope=-0.5))
    assert slow.floor_ratio > 100 and slow.verdict == "slower than theory"
    # without a floor there is no ratio, and no floor verdict
    plain = fit_rates(frame(2e-4).query("metric == 'err'"), theory_exponent=lambda s: -1.0)
    assert np.isnan(plain.iloc[0].floor_ratio) and plain.iloc[0].verdict == "slower than theory"
    assert np.isnan(floor_ratio(frame(0.0).query("metric == 'err'"), None))
    fit0 = SlopeFit(-0.3, -0.35, -0.25, 100, 10000, 5)
    assert verdict(fit0, -1.0, floor=1.9) == "on its floor"
    assert verdict(fit0, -1.0, floor=2.1) == "slower than theory"
    assert verdict(fit0, -0.2, floor=1.0) == "faster than theory"  # a floor never speeds up
