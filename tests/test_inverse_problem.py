"""Inverse-problem study: CLI, smoke run, estimators and the m-comparison [CDM]."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from studies import inverse_problem as study
from toolkit.cli import main
from toolkit.data.linear_inverse import LinearInverse
from toolkit.diffusion import OUProcess
from toolkit.kernel_score import KernelScore
from toolkit.metrics import log_uniform_design, weighted_score_error
from toolkit.rng import generator

METRICS = {"score_error", "rel_score_error", "score_error_se", "tv", "tv_exact_score"}


@pytest.fixture(autouse=True)
def _in_process_cli(monkeypatch) -> None:
    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--meas-dim", "0"], "--meas-dim"),
        (["--meas-dim", "1,x"], "--meas-dim"),
        (["--meas-dim", "4,4"], "--meas-dim"),
        (["--meas-dim", "2.5"], "--meas-dim"),
        (["--noise-level", "0"], "--noise-level"),
        (["--estimators", "neural,oracle"], "--estimators"),
        (["--kernel-order", "3"], "--kernel-order"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, flags, needle) -> None:
    out = tmp_path / "out"
    code = main(["run", "inverse-problem", "--profile", "smoke", "--out", str(out), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists()


@pytest.mark.slow
def test_smoke_profile_writes_every_metric(tmp_path) -> None:
    from toolkit.rates import study_rates

    args = ["run", "inverse-problem", "--profile", "smoke", "--out", str(tmp_path), "--quiet"]
    assert main(args) == 0
    frame = pd.read_csv(tmp_path / "inverse_problem.csv")
    assert set(frame["model"]) == set(study.ESTIMATORS) == {"neural", "kernel", "oracle-stat"}
    assert set(frame["meas_dim"]) == {1, 4} and set(frame["n"]) == {200, 800}
    assert (frame["status"] == "ok").all()
    for _, cell in frame.groupby(["model", "meas_dim", "n"]):
        assert set(cell["metric"]) == METRICS and len(cell) == len(METRICS)
    assert frame["value"].notna().all() and (frame["value"] > 0).all()
    # The Fokker-Planck law of the exact score: the solver's own error, far below any TV.
    exact = frame[frame.metric == "tv_exact_score"]["value"]
    assert exact.max() < 1e-3 < frame[frame.metric == "tv"]["value"].min()
    # At m = 1, a = +-1 and s = +-y: the product kernel is the oracle-stat kernel.
    m1 = frame[frame.meas_dim == 1].pivot_table(
        index=["n", "metric"], columns="model", values="value"
    )
    assert np.allclose(m1["kernel"], m1["oracle-stat"], rtol=1e-9, atol=0)
    kernels = frame[frame.model != "neural"]
    assert set(kernels["net_width"]) == {0} and kernels["fallback_rate"].eq(0).all()
    neural = frame[frame.model == "neural"]
    assert set(neural["train_steps"]) == {150} and (neural["best_step"] <= 150).all()
    # rates: one curve per (model, m, metric), the m-free exponent as an upper bound
    rates = study_rates(frame, study.STUDY)
    score = rates[rates.metric == "score_error"]
    assert len(score) == 3 * 2 and np.allclose(score["theory"], -0.75)
    assert set(score["claim"]) == {"upper bound"}
    assert "tv_exact_score" not in set(rates["metric"])
    table = study.comparisons(frame)
    assert len(table) == 2 * 3  # metrics x models: one agreement row each
    assert set(table["verdict"]) <= {"inconclusive"}  # two n, one seed: nothing to judge


def test_theory_exponents_do_not_depend_on_m() -> None:
    for m in (1, 4, 16):
        setting = {"beta": 1.5, "meas_dim": m, "model": "kernel"}
        assert study.theory({**setting, "metric": "score_error"}).theta == -0.75
        assert study.theory({**setting, "metric": "tv"}).theta == -0.375
        assert study.theory({**setting, "metric": "tv"}).kind == "upper bound"
        assert study.theory({**setting, "metric": "tv_exact_score"}) is None
    cells = [
        {"n": 3162, "beta": 1.5, "width": 64, "max_width": 128, "meas_dim": m} for m in (1, 16)
    ]
    assert study.net_width(cells[0]) == study.net_width(cells[1]) == round(64 * 3.162**0.4)


def test_oracle_statistic_beats_the_product_kernel_at_m_16() -> None:
    """At n = 4000 and m = 16 the kernel given a^T y has several times smaller score error
    than the product kernel over y, and it is close to its own m = 1 error (= the product
    kernel's at m = 1)."""
    process, beta, n = OUProcess(), 1.5, 4000
    errors = {}
    for m in (1, 16):
        data = LinearInverse(beta, m, seed=m, process=process)
        x, y = data.sample_joint(n, generator(0, "train", m))
        g = generator(0, "test", m)
        x_test, y_test = data.sample_joint(2048, g)
        s_test = data.statistic(y_test)
        times, weights = log_uniform_design(process, 2048, g)
        state = g.get_state()
        for name, cond, cond_test in (
            ("kernel", y, y_test),
            ("oracle-stat", data.statistic(y).unsqueeze(1), s_test.unsqueeze(1)),
        ):
            h = n ** (-1 / (1 + cond.shape[1] + 2 * beta))
            est = KernelScore(x, cond, h, h, process)
            g.set_state(state)  # the same noise for both estimators
            errors[name, m] = weighted_score_error(
                lambda xs, t, est=est, c=cond_test: est.score(xs, c, t),
                lambda xs, t, s=s_test, data=data: data.score(xs, s, t),
                x_test, process, g, times, weights,
            )["score_error"]  # fmt: skip
    assert errors["kernel", 1] == pytest.approx(errors["oracle-stat", 1], rel=1e-9)
    assert errors["oracle-stat", 16] < errors["kernel", 16] / 4, errors
    assert errors["oracle-stat", 16] < 2 * errors["oracle-stat", 1], errors


def _synthetic(slopes: dict[tuple[str, int], float], seeds: int = 3) -> pd.DataFrame:
    """Rows value = n^slope exp(noise) for each (model, m), 4 n, `seeds` seeds."""
    rng = np.random.default_rng(0)
    rows = []
    for (model, m), slope in slopes.items():
        for n in (316, 1000, 3162, 10000):
            for seed in range(seeds):
                for metric, factor in (("score_error", 1.0), ("tv", 0.5)):
                    value = n ** (factor * slope) * np.exp(0.03 * rng.standard_normal())
                    rows.append({"study": study.NAME, "model": model, "n": n, "seed": seed,
                                 "metric": metric, "value": value, "beta": 1.5, "meas_dim": m,
                                 "status": "ok"})  # fmt: skip
    return pd.DataFrame(rows)


def test_comparisons_judge_whether_the_slopes_depend_on_m() -> None:
    from toolkit.rates import study_rates

    slopes = {("neural", m): -0.7 for m in (1, 4, 16)}
    slopes |= {("kernel", 1): -0.6, ("kernel", 4): -0.35, ("kernel", 16): -0.15}
    slopes |= {("oracle-stat", 1): -0.7, ("oracle-stat", 4): -0.7, ("oracle-stat", 16): -0.3}
    table = study.comparisons(_synthetic(slopes))
    agree = table[table["claim"].str.contains("independent of m|degrades")]
    verdicts = {
        (r.setting.split(",")[0], r.claim.split()[0]): r.verdict for r in agree.itertuples()
    }
    for metric in ("score_error", "tv"):
        assert verdicts["model=neural", metric] == "holds"
        assert verdicts["model=kernel", metric] == "holds"  # degrades with m
        assert verdicts["model=oracle-stat", metric] == "fails"  # m = 16 is slower
    # the per-m slopes are rate rows: the kernel at m = 16 fails the m-free upper bound
    columns = {"noise_level": 1.0, "p_uncond": 0.5, "guidance": 0.0, "kernel_order": 2}
    rates = study_rates(_synthetic(slopes).assign(**columns), study.STUDY)
    kernel = rates[(rates.model == "kernel") & (rates.metric == "score_error")]
    kernel = kernel[kernel.setting.str.contains("meas_dim=16")].iloc[0]
    assert kernel.slope == pytest.approx(-0.15, abs=0.03)
    assert kernel.verdict == "fails"  # -0.15 against the m-free -0.75
    diff = agree[agree.setting.str.startswith("model=kernel") & agree.claim.str.startswith("score")]
    assert diff["value"].iloc[0] == pytest.approx(0.45, abs=0.05)
    assert diff["ci_low"].iloc[0] > 0.3
