"""Rate fits of a study's curves: setting, floors, resolutions, failed cells, verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from toolkit.rates import fit_rates
from toolkit.stats import Claim

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


def test_theory_gets_the_curve_setting_and_verdicts_follow_from_the_fit():
    rng = np.random.default_rng(4)
    frames = []
    for beta in (1.0, 2.0):
        n, value = power_law(-beta, 4, 0.01, rng)
        frames.append(tidy(n, value, 4, beta=beta, dim=3, runtime_s=rng.random(n.size)))
    seen = []

    def theory(setting):
        seen.append(setting)
        return Claim(-1.0, "exact rate")  # right for beta=1, too fast for 2

    rates = fit_rates(pd.concat(frames), ("beta",), theory)
    assert list(rates["setting"]) == ["beta=1", "beta=2"]
    assert list(rates["verdict"]) == ["holds", "fails"]
    assert list(rates["claim"]) == ["exact rate"] * 2 and list(rates["margin"]) == [0.1, 0.1]
    assert seen[0] == {"model": "m", "metric": "err", "study": "synthetic", "beta": 1, "dim": 3}


def test_a_curve_mixing_settings_is_an_error_naming_the_column():
    n, value = power_law(-1.0, 4, 0.1, np.random.default_rng(5))
    frame = pd.concat([tidy(n, value, 4, beta=1.0), tidy(n, value, 4, beta=2.0)])
    with pytest.raises(ValueError, match="columns that differ: beta"):
        fit_rates(frame)


def test_an_additive_floor_is_subtracted_and_its_slope_recovered():
    """err = n^-1 + f: log(err) is flattened by the floor; log(err - f) gives -1 back, and a
    floor recorded per seed with noise enters the interval (wider, still covering)."""
    n = np.repeat(N_GRID, 3)
    seed = np.tile(np.arange(3), len(N_GRID))
    rng = np.random.default_rng(0)
    floor = 0.5 / 1600 * (1 + 0.05 * rng.standard_normal(n.size))
    err = 1.0 / n * (1 + 0.01 * rng.standard_normal(n.size)) + floor
    rows = {"study": "s", "model": "m", "n": n, "seed": seed}
    frame = pd.concat([
        pd.DataFrame({**rows, "metric": "err", "value": err}),
        pd.DataFrame({**rows, "metric": "err_floor", "value": floor}),
    ])  # fmt: skip
    theory = lambda s: Claim(-1.0, "upper bound")  # noqa: E731
    plain = fit_rates(frame[frame["metric"] == "err"], theory=theory).iloc[0]
    assert plain.slope > -0.9  # flattened
    floored = fit_rates(frame, theory=theory, floors={"err": "err_floor"})
    assert len(floored) == 1  # the floor metric is not a curve
    row = floored.iloc[0]
    assert row.slope == pytest.approx(-1.0, abs=0.03)
    assert row.ci_low <= -1.0 <= row.ci_high
    assert row.floor == "subtracted err_floor" and row.floor_ratio == pytest.approx(3, rel=0.05)


def test_a_curve_below_its_floor_everywhere_is_inconclusive_on_its_floor():
    n, value = power_law(-1.0, 2, 0.0, np.random.default_rng(0))
    frame = tidy(n, value, 2)
    floor = frame.assign(metric="err_floor", value=frame["value"] * 1.1)
    rates = fit_rates(
        pd.concat([frame, floor]), theory=lambda s: Claim(-1.0), floors={"err": "err_floor"}
    )
    assert rates.iloc[0].verdict == "inconclusive"
    assert rates.iloc[0].reason.startswith("on its floor")


def test_points_within_their_resolution_are_not_fitted():
    seeds = 3
    n, value = power_law(-1.0, seeds, 0.0, np.random.default_rng(0))
    frame = tidy(n, value, seeds)
    se = frame.assign(metric="err_se", value=1e-9)
    se.loc[se["n"] == 100, "value"] = frame.loc[frame["n"] == 100, "value"].to_numpy()
    rates = fit_rates(pd.concat([frame, se]), resolutions={"err": "err_se"})
    assert len(rates) == 1
    row = rates.iloc[0]
    assert (row.n_min, row.n_max, row.n_points) == (200, 1600, 4)
    assert row.slope == pytest.approx(-1.0, abs=1e-12)


def test_a_model_free_metric_is_fitted_once():
    n, value = power_law(-0.5, 2, 0.01, np.random.default_rng(1))
    frame = pd.concat([tidy(n, value, 2, model=m) for m in ("a", "b")])
    rates = fit_rates(frame, model_free_metrics=("err",))
    assert list(rates["model"]) == ["any"]
    assert len(fit_rates(frame)) == 2


def test_failed_cells_make_a_decided_curve_inconclusive():
    n, value = power_law(-0.5, 2, 0.001, np.random.default_rng(1))
    good = tidy(n, value, 2, status="ok")
    assert fit_rates(good, theory=lambda s: Claim(-0.5)).iloc[0].verdict == "holds"
    broken = pd.DataFrame(
        {"study": "synthetic", "model": "m", "n": [3200], "seed": [0], "metric": [np.nan],
         "value": [np.nan], "status": ["failed"]}
    )  # fmt: skip
    row = fit_rates(pd.concat([good, broken]), theory=lambda s: Claim(-0.5)).iloc[0]
    assert (row.verdict, row.reason, row.failed_cells) == ("inconclusive", "failed cells (1)", 1)


def test_study_rates_skips_non_rate_metrics():
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
    matrix = good.assign(metric="attn_map", row=0).pipe(
        lambda f: pd.concat([f, f.assign(row=1)], ignore_index=True)
    )
    frame = pd.concat([good, matrix], ignore_index=True)
    rates = study_rates(frame, declare(non_rate_metrics=("attn_map",)))
    assert list(rates["metric"]) == ["err"]
    assert rates["slope"].iloc[0] == pytest.approx(-0.5, abs=1e-12)
    with pytest.raises(ValueError, match="several rows per"):
        study_rates(frame, declare())  # attn_map is no curve
