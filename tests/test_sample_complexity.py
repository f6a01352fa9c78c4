"""Sample complexity n_eps: closed forms on power laws, censoring, intervals, levels, report."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from toolkit.rates import (
    SAMPLE_COMPLEXITY_COLUMNS,
    default_levels,
    first_reach,
    samples_to_reach,
    study_sample_complexity,
)
from toolkit.study import Study

N_GRID = np.array([100, 200, 400, 800, 1600])
C, SLOPE = 3.0, -0.5  # error = C n^SLOPE, so n_eps = (eps / C)^(1 / SLOPE)


def n_true(eps: float) -> float:
    return (eps / C) ** (1 / SLOPE)


def points(seeds: int, sigma: float, rng: np.random.Generator | None = None):
    """Per-seed points of C n^SLOPE; with rng, lognormal seed noise of spread sigma."""
    n = np.repeat(N_GRID, seeds)
    noise = 0.0 if rng is None else sigma * rng.standard_normal(n.size)
    return n, C * n**SLOPE * np.exp(noise)


def test_a_power_law_gives_n_eps_in_closed_form():
    # Between grid points log-log interpolation is exact for a power law: eps = 0.2 lies
    # between n = 200 (0.212) and 400 (0.15) and is reached at (0.2 / 3)^-2 = 225.
    n, value = points(seeds=1, sigma=0.0)
    (row,) = samples_to_reach(n, value, [0.2])
    assert row["n_eps"] == pytest.approx(225.0, rel=1e-12)
    assert row["status"] == "reached"
    assert (row["n_min"], row["n_max"], row["n_points"]) == (100, 1600, 5)
    assert np.isnan(row["ci_low"])  # one seed per n: no interval
    # Seeds spread symmetrically in log around the law: the seed mean is still the law.
    n = np.repeat(N_GRID, 2)
    value = C * n**SLOPE * np.exp(np.tile([0.1, -0.1], N_GRID.size))
    rows = samples_to_reach(n, value, [0.25, 0.1, C * 400**SLOPE])
    assert [r["n_eps"] for r in rows] == pytest.approx([144.0, 900.0, 400.0], rel=1e-12)
    assert all(r["ci_low"] <= r["n_eps"] <= r["ci_high"] for r in rows)


def test_first_reach_interpolates_between_the_bracketing_n_and_takes_the_first_crossing():
    grid = np.array([100.0, 400.0, 1600.0, 6400.0])
    curve = np.log([1.0, 0.5, 0.1, 0.4])  # falls below 0.2 between 400 and 1600, rises again
    # log-linear between (log 400, log 0.5) and (log 1600, log 0.1):
    frac = np.log(0.5 / 0.2) / np.log(0.5 / 0.1)
    assert first_reach(grid, curve, 0.2) == pytest.approx(400 * 4**frac, rel=1e-12)
    assert first_reach(grid, curve, 0.3) < 1600  # the first crossing, not the last
    assert first_reach(grid, curve, 1.0) == 100.0  # exactly at n_min: already reached
    assert np.isinf(first_reach(grid, curve, 0.05))
    batch = np.stack([curve, curve - np.log(10)])  # rows are curves (bootstrap draws)
    inf, n_eps = first_reach(grid, batch, 0.08)
    assert np.isinf(inf)
    assert n_eps == pytest.approx(100 * 4 ** (np.log(0.1 / 0.08) / np.log(2)), rel=1e-12)


def test_a_level_below_every_seed_mean_is_not_reached_and_never_extrapolated():
    n, value = points(seeds=3, sigma=0.05, rng=np.random.default_rng(0))
    (row,) = samples_to_reach(n, value, [0.01])  # the law reaches 0.01 only at n = 90000
    assert row["status"] == "not reached"
    assert np.isnan(row["n_eps"])
    assert row["ci_low"] == np.inf and row["ci_high"] == np.inf


def test_a_level_above_the_seed_mean_at_n_min_is_already_reached_there():
    n, value = points(seeds=3, sigma=0.05, rng=np.random.default_rng(0))
    (row,) = samples_to_reach(n, value, [1.0])  # C 100^-0.5 = 0.3 < 1
    assert row["status"] == "already reached"
    assert row["n_eps"] == 100.0 and row["ci_low"] == 100.0 and row["ci_high"] == 100.0


def test_the_interval_contains_the_true_n_eps_and_a_rerun_gives_the_same_digits():
    rng = np.random.default_rng(3)
    n, value = points(seeds=4, sigma=0.1, rng=rng)
    levels = [0.25, 0.15, 0.09]  # true n_eps 144, 400, 1111
    rows = samples_to_reach(n, value, levels, resamples=1000)
    for eps, row in zip(levels, rows, strict=True):
        assert row["status"] == "reached"
        assert row["ci_low"] <= n_true(eps) <= row["ci_high"]
        assert row["n_eps"] == pytest.approx(n_true(eps), rel=0.15)
        assert row["ci_high"] / row["ci_low"] < 2.0  # informative, not the whole grid
    again = samples_to_reach(n, value, levels, resamples=1000)
    assert [r["ci_low"] for r in again] == [r["ci_low"] for r in rows]


def test_an_interval_end_beyond_the_largest_n_is_inf():
    # eps = 0.075 is reached (by the seed mean) only near n_max = 1600 (true n_eps 1600):
    # a good share of the seed draws never reach it, so the upper end is not finite.
    n, value = points(seeds=3, sigma=0.15, rng=np.random.default_rng(5))
    (row,) = samples_to_reach(n, value, [C * 1600**SLOPE])
    assert row["ci_high"] == np.inf


def test_default_levels_are_geometric_inside_the_common_range_of_the_curves():
    a = np.array([1.0, 0.5, 0.1])  # range [0.1, 1]
    b = np.array([2.0, 0.8, 0.4])  # range [0.4, 2]: common [0.4, 1]
    levels = default_levels([a, b])
    expected = [0.4 * 2.5 ** (i / 4) for i in (3, 2, 1)]
    assert levels == pytest.approx(expected, rel=5e-3)  # to 3 significant digits
    # Disjoint curves: between the medians of the curves' minima and maxima.
    c = np.array([10.0, 8.0, 6.0])
    levels = default_levels([a, b, c])  # minima 0.1, 0.4, 6: median 0.4; maxima 1, 2, 10: 2
    assert levels == pytest.approx([0.4 * 5 ** (i / 4) for i in (3, 2, 1)], rel=5e-3)
    assert default_levels([]) == []


@dataclass(frozen=True)
class Config:
    n: tuple[int, ...] = tuple(N_GRID)
    beta: tuple[float, ...] = (1.0, 2.0)
    seeds: int = 2


def toy_study(**hooks) -> Study:
    return Study(
        name="toy",
        summary="A toy study.",
        config=Config,
        axes={"n": "n", "beta": "beta"},
        run_cell=lambda cell, device: [],
        profiles={"default": {}},
        memory=lambda cell: 0.0,
        rate_groups=("beta",),
        **hooks,
    )


def toy_frame() -> pd.DataFrame:
    """err = C n^(-beta/2) (seed mean exactly; seeds 10% either side), a floor at 0.005
    and a sampler error that does not change with n."""
    rows = []
    for beta in (1.0, 2.0):
        for n in N_GRID:
            for seed in range(2):
                key = {"study": "toy", "model": "m", "n": n, "seed": seed, "beta": beta}
                err = C * n ** (-beta / 2) * (1.1 if seed else 1 / 1.1)
                rows += [
                    {**key, "metric": "err", "value": err, "status": "ok"},
                    {**key, "metric": "err_floor", "value": 0.005, "status": "ok"},
                    {**key, "metric": "sampler", "value": 0.5, "status": "ok"},
                ]
    return pd.DataFrame(rows)


def test_study_sample_complexity_uses_the_rate_curves_and_their_noise_floor():
    study = toy_study(floors={"err": "err_floor"}, non_rate_metrics=("sampler",))
    table = study_sample_complexity(toy_frame(), study, levels={"err": [0.2, 0.01, 0.004]})
    assert list(table.columns[: len(SAMPLE_COMPLEXITY_COLUMNS)]) == list(SAMPLE_COMPLEXITY_COLUMNS)
    assert set(table["metric"]) == {"err"}  # no floor, no non-rate metric
    by = table.set_index(["beta", "eps"])
    assert by.loc[(1.0, 0.2), "n_eps"] == pytest.approx(225.0, rel=1e-9)  # (0.2 / 3)^-2
    assert by.loc[(1.0, 0.01), "status"] == "not reached"  # only at n = 90000
    assert by.loc[(2.0, 0.2), "status"] == "already reached"  # 3 / 100 = 0.03
    assert by.loc[(2.0, 0.2), "n_eps"] == 100
    assert by.loc[(2.0, 0.01), "n_eps"] == pytest.approx(300.0, rel=1e-9)  # 3 / 0.01
    # 3 / n = 0.004 at n = 750, but the seed mean at 800 (0.00375) is below the floor:
    # that n measures the floor, so the level is not reached within the data.
    assert by.loc[(2.0, 0.004), "status"] == "not reached"
    assert by.loc[(2.0, 0.004), "n_max"] == 400
    # Default levels: beta = 1 spans [0.075, 0.3], beta = 2 [0.0075, 0.03] above the
    # floor; disjoint, so they lie between the medians of the minima and of the maxima.
    default = study_sample_complexity(toy_frame(), study)
    lo, hi = (0.075 + 0.0075) / 2, (0.3 + 0.03) / 2
    assert sorted(default["eps"].unique()) == pytest.approx(
        [lo * (hi / lo) ** (i / 4) for i in (1, 2, 3)], rel=5e-3
    )
