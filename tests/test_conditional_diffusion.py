"""Conditional-diffusion study: exact ground truth, samplers, estimators, CLI [CDM]."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.integrate import quad

from studies import conditional_diffusion as study
from toolkit.cli import main
from toolkit.data.hoelder_conditional import HoelderConditional, histogram, tv_grid
from toolkit.diffusion import OUProcess, sample, token_drop
from toolkit.kernel_score import KernelScore, select_bandwidth_y
from toolkit.metrics import score_error
from toolkit.params import build, training_steps
from toolkit.rng import generator
from toolkit.score_network import ConditionalScoreNet

torch.set_num_threads(1)
F64 = torch.float64


@pytest.fixture(autouse=True)
def _in_process_cli(monkeypatch) -> None:
    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")


def _t(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=F64)


@pytest.mark.parametrize("beta", [0.5, 1.5, 2.5, 3.7])
def test_density_integrates_to_one(beta: float) -> None:
    data = HoelderConditional(beta)
    for y1 in (0.05, 0.5, 0.8):
        y = _t(y1).view(1, 1)
        m = float(data.center(y)[0])

        def p(x: float, y=y) -> float:
            return math.exp(float(data.log_density(_t(x).view(1, 1), y)[0]))

        total = quad(p, -15, 15, points=[m], limit=200, epsabs=1e-13)[0]
        assert abs(total - 1) < 1e-9


def _quad_score(beta: float, x1: float, y1: float, t: float) -> float:
    """The exact score by scipy's adaptive quadrature in u, split at the kink."""
    alpha, sigma = math.exp(-t / 2), math.sqrt(-math.expm1(-t))
    m = 2 * y1 - 1

    def g(u: float) -> float:
        gauss = math.exp(-((u - alpha * x1) ** 2) / (2 * sigma**2)) / (
            sigma * math.sqrt(2 * math.pi)
        )
        return abs(u - m) ** beta * math.exp(-((u - m) ** 2)) * gauss

    lo, hi = alpha * x1 - 14 * sigma, alpha * x1 + 14 * sigma
    pts = [m] if lo < m < hi else None
    kw = {"points": pts, "limit": 400, "epsabs": 1e-13, "epsrel": 1e-12}
    big_g = quad(g, lo, hi, **kw)[0]
    dg = quad(lambda u: g(u) * (u - alpha * x1) * alpha / sigma**2, lo, hi, **kw)[0]
    return -x1 + 2 * dg / (1 + 2 * big_g)


@pytest.mark.parametrize("beta", [0.5, 1.5, 2.5])
def test_score_matches_scipy_quadrature(beta: float) -> None:
    data = HoelderConditional(beta)
    points = [
        (0.3, 0.2, 1e-3),
        (-0.2, 0.4, 1e-3),
        (1.0, 0.9, 0.5),
        (-2.0, 0.1, 4.0),
        (0.1, 0.45, 0.01),
    ]
    x = torch.tensor([[p[0], 0.7] for p in points], dtype=F64)
    y = torch.tensor([[p[1]] for p in points], dtype=F64)
    t = torch.tensor([p[2] for p in points], dtype=F64)
    data2 = HoelderConditional(beta, dim=2)
    got = data2.score(x, y, t)
    want = torch.tensor([_quad_score(beta, *p) for p in points], dtype=F64)
    assert (got[:, 0] - want).abs().max() < 1e-8, (got[:, 0] - want).tolist()
    assert torch.equal(got[:, 1], -x[:, 1])  # the phi factor's score in the other axes
    assert torch.allclose(data.score(x[:, :1], y, t)[:, 0], want, atol=1e-9)


@pytest.mark.parametrize("beta", [0.5, 2.5])
def test_score_matches_autograd_and_finite_differences(beta: float) -> None:
    """Autograd of log p_t(x | y) by a dense trapezoid rule in u; centred differences."""
    data = HoelderConditional(beta)
    x1 = torch.tensor([-1.3, -0.2, 0.4, 1.1], dtype=F64, requires_grad=True)
    y = torch.tensor([[0.3], [0.6], [0.5], [0.95]], dtype=F64)
    t = torch.tensor([0.05, 0.3, 1.0, 3.0], dtype=F64)
    alpha, sigma = torch.exp(-t / 2), torch.sqrt(-torch.expm1(-t))
    u = torch.linspace(-9, 9, 360_001, dtype=F64)  # (grid,)
    dens = torch.exp(-((u - (alpha * x1).unsqueeze(1)) ** 2) / (2 * sigma.unsqueeze(1) ** 2))
    dens = dens / (sigma.unsqueeze(1) * math.sqrt(2 * math.pi))
    big_g = torch.trapezoid(dens * data.psi(u - data.center(y).unsqueeze(1)), u, dim=1)
    log_p = -(x1**2) / 2 + torch.log(1 + data.amplitude * big_g)  # up to constants in x
    (grad,) = torch.autograd.grad(log_p.sum(), x1)
    got = data.score(x1.detach().unsqueeze(1), y, t)[:, 0]
    assert torch.allclose(got, grad, atol=1e-7)

    def log_pt(x: torch.Tensor) -> torch.Tensor:
        g, _ = data.smoothed(alpha * x, sigma, data.center(y))
        return -(x**2) / 2 + torch.log(1 + data.amplitude * g)

    h = 1e-5
    fd = (log_pt(x1.detach() + h) - log_pt(x1.detach() - h)) / (2 * h)
    assert torch.allclose(got, fd, atol=1e-7)


def test_rejection_sampler_fits_the_density() -> None:
    data = HoelderConditional(0.5)
    y = torch.full((40_000, 1), 0.8, dtype=F64)
    x = data.sample(y, generator(0, "gof"))
    edges = tv_grid(20)
    observed = (histogram(x, edges) * x.shape[0]).numpy()
    expected = data.bin_masses(edges, y[:1])[0].numpy() * x.shape[0]
    assert abs(expected.sum() / x.shape[0] - 1) < 1e-6  # bin masses sum to 1
    expected *= observed.sum() / expected.sum()  # scipy wants equal totals to 1e-8
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    # the test has power: the same samples against N(0, 1) (a = 0) are rejected
    gauss = HoelderConditional(0.5, amplitude=0.0).bin_masses(edges, y[:1])[0].numpy()
    assert stats.chisquare(observed, gauss * x.shape[0]).pvalue < 1e-12


def test_ou_marginals_and_samplers_on_a_gaussian() -> None:
    """Data N(mu, s^2): p_t = N(alpha mu, alpha^2 s^2 + sigma^2) with a known score."""
    mu, s = 1.0, 0.5
    process = OUProcess(t0=1e-3, horizon=8.0)
    x0 = mu + s * torch.randn(200_000, 1, generator=generator(0, "x0"), dtype=F64)
    t = torch.full((x0.shape[0],), 0.7, dtype=F64)
    eps = torch.randn(x0.shape, generator=generator(0, "eps"), dtype=F64)
    xt = process.perturb(x0, t, eps)
    a, var = math.exp(-0.35), math.exp(-0.7) * s**2 - math.expm1(-0.7)
    assert abs(float(xt.mean()) - a * mu) < 0.01 and abs(float(xt.var()) - var) < 0.01

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        al = process.alpha(t).unsqueeze(1)
        v = al**2 * s**2 + process.sigma(t).unsqueeze(1) ** 2
        return -(x - al * mu) / v

    m, edges = 20_000, tv_grid(24)
    t0 = torch.tensor(process.t0, dtype=F64)
    sd = math.sqrt(math.exp(-t0.item()) * s**2 - math.expm1(-t0.item()))
    cdf = stats.norm.cdf(edges.numpy(), loc=mu * math.exp(-t0.item() / 2), scale=sd)
    exact = torch.as_tensor(np.diff(cdf))
    floor_x = mu * math.exp(-t0.item() / 2) + sd * torch.randn(m, 1, generator=generator(1, "f"))
    floor = 0.5 * float((histogram(floor_x, edges) - exact).abs().sum())
    for sampler in ("sde", "ode"):
        x = sample(score, process, (m, 1), 200, generator(2, sampler), sampler=sampler)
        tv = 0.5 * float((histogram(x, edges) - exact).abs().sum())
        assert tv < floor + 0.015, (sampler, tv, floor)
    wrong = sample(lambda x, t: 0.5 * score(x, t), process, (m, 1), 200, generator(2, "sde"))
    assert 0.5 * float((histogram(wrong, edges) - exact).abs().sum()) > floor + 0.1


@pytest.mark.slow
def test_kernel_score_error_falls_at_about_the_theory_rate() -> None:
    beta = 1.5
    data, process = HoelderConditional(beta), OUProcess()
    g = generator(0, "test")
    y_test = data.sample_conditions(2048, g)
    x_test = data.sample(y_test, g)
    ns, errs = (250, 1000, 4000, 16000), []
    for n in ns:
        gd = generator(0, "train", n)
        y = data.sample_conditions(n, gd)
        x = data.sample(y, gd)
        h = n ** (-1 / (2 + 2 * beta))
        est = KernelScore(x, y, h, h, process)
        err, _ = score_error(
            lambda xs, t, est=est: est.score(xs, y_test, t),
            lambda xs, t: data.score(xs, y_test, t),
            x_test, process, generator(0, "times"),
        )  # fmt: skip
        errs.append(err)
    slope = np.polyfit(np.log(ns), np.log(errs), 1)[0]
    setting = {"beta": beta, "dim": 1, "cond_dim": 1, "metric": "score_error"}
    claim = study.STUDY.theory(setting)
    theory = claim.theta
    assert theory == pytest.approx(-0.6) and claim.kind == "upper bound"
    hard = study.STUDY.theory({**setting, "density": "hard"})
    assert (hard.theta, hard.kind) == (pytest.approx(-0.6), "lower bound")
    ratio = study.STUDY.theory({**setting, "density": "hard", "metric": "score_error_ratio"})
    assert (ratio.theta, ratio.kind) == (0.0, "lower bound")
    assert study.STUDY.theory({**setting, "metric": "rel_score_error"}) is None  # duplicate
    signal = study.STUDY.theory({**setting, "density": "hard", "metric": "signal"})
    assert (signal.theta, signal.kind) == (pytest.approx(-0.6), "exact rate")
    assert all(b < a for a, b in zip(errs, errs[1:], strict=False)), errs
    assert abs(slope - theory) < 0.3, (slope, errs)


def test_condition_masking_rate_and_null_token() -> None:
    drop = token_drop(200_000, 0.3, generator(0, "mask"))
    assert abs(float(drop.double().mean()) - 0.3) < 0.005
    assert not token_drop(1000, 0.0, generator(0, "m0")).any()
    assert token_drop(1000, 1.0, generator(0, "m1")).all()
    for fourier in (0, 8):  # masked rows ignore y, also through the Fourier features
        torch.manual_seed(0)
        net = ConditionalScoreNet(dim=1, cond_dim=2, width=16, depth=1, fourier=fourier)
        with torch.no_grad():
            net.embed_y.null.normal_()
        x, t = torch.randn(8, 1), torch.rand(8) + 0.1
        y1, y2 = torch.rand(8, 2), torch.rand(8, 2)
        mask = torch.tensor([True, False] * 4)
        out1, out2 = net(x, t, y1, mask), net(x, t, y2, mask)
        assert torch.equal(out1[mask], out2[mask]), fourier  # the null token
        assert (out1[~mask] - out2[~mask]).abs().min() > 0, fourier


def test_fourier_features_of_the_network() -> None:
    """sin and cos of (x, y) B with B ~ N(0, scale^2) fixed (a buffer, not trained, saved
    with the weights); none when fourier = 0; the scale grows like 1/h_n with n."""
    torch.manual_seed(0)
    net = ConditionalScoreNet(1, 2, 16, 1, fourier=4096, fourier_scale=3.0)
    features = net.embed_xy
    b = features.projection
    assert b.shape == (3, 4096) and not b.requires_grad
    assert "embed_xy.projection" in net.state_dict()
    assert abs(float(b.std()) - 3.0) < 0.05  # 12288 draws: sd of the sd ~0.02
    z = torch.randn(5, 3)
    phase = z.double() @ b.double()
    want = torch.cat([phase.sin(), phase.cos()], 1) @ features.proj.weight.double().T
    want = want + features.proj.bias.double()
    assert torch.allclose(features(z).double(), want, atol=1e-4)
    assert (
        sum(p.numel() for p in net.parameters() if p.requires_grad)
        == sum(p.numel() for p in ConditionalScoreNet(1, 2, 16, 1).parameters())
        + (2 * 4096 + 1) * 16
    )  # the features add only their linear map
    assert ConditionalScoreNet(1, 2, 16, 1).embed_xy is None
    cell = {"dim": 1, "cond_dim": 1, "beta": 1.5, "fourier_scale": 3.0, "n": 1000}
    assert study.feature_scale(cell) == pytest.approx(3.0)
    assert study.feature_scale({**cell, "n": 1000 * 2**5}) == pytest.approx(6.0)  # 1/h_n


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--beta", "0"], "--beta"),
        (["--beta", "1,-0.5"], "--beta"),
        (["--dim", "0"], "--dim"),
        (["--p-uncond", "1.5"], "--p-uncond"),
        (["--p-uncond", "-0.1"], "--p-uncond"),
        (["--t0", "8", "--horizon", "8"], "--t0"),
        (["--bandwidth-y", "0.5,0"], "--bandwidth-y"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, flags, needle) -> None:
    out = tmp_path / "out"
    code = main(["run", "conditional-diffusion", "--profile", "smoke", "--out", str(out), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists()


@pytest.mark.slow
def test_smoke_profile_writes_the_curves(tmp_path) -> None:
    import pandas as pd

    from toolkit.results import LAST_COLUMNS

    assert main(["run", "conditional-diffusion", "--profile", "smoke", "--out", str(tmp_path),
                 "--quiet"]) == 0  # fmt: skip
    frame = pd.read_csv(tmp_path / study.STUDY.output)
    assert study.STUDY.output == "conditional_diffusion.csv"
    assert "estimator" not in frame.columns  # the estimator is the `model` column only
    assert tuple(frame.columns[-len(LAST_COLUMNS) :]) == LAST_COLUMNS  # ... threads, code_hash
    assert set(frame["model"]) == set(study.ESTIMATORS) == {"neural", "kernel"}
    common = {"score_error", "rel_score_error", "score_error_se"}
    kink, hard = frame[frame.density == "kink"], frame[frame.density == "hard"]
    assert set(kink["metric"]) == common | {"tv", "tv_exact_score"}
    assert set(hard["metric"]) == common | {"signal", "score_error_ratio"}
    assert len(frame) == 2 * 2 * (2 * len(common) + 4)  # estimators x n x (kink + hard)
    assert frame["value"].notna().all() and (frame["value"] >= 0).all()
    # The Fokker-Planck law of the exact score: the solver's own error, far below any TV.
    assert frame[frame.metric == "tv_exact_score"]["value"].max() < 1e-3
    assert (hard["min_factor"] >= 0.1).all() and kink["min_factor"].isna().all()
    neural = frame[frame.model == "neural"]
    smoke = build(study.STUDY.config, study.STUDY.profiles["smoke"])
    n_fit = 200 - round(study.VAL_FRACTION * 200)
    steps = training_steps(n_fit, smoke.batch, smoke.epochs, smoke.min_steps, smoke.max_steps)
    assert steps == 150  # the smoke cap (min_steps = max_steps = 150) binds
    assert set(neural[neural.n == 200]["train_steps"]) == {steps}
    assert (neural["best_step"] <= neural["steps_run"]).all()
    assert set(frame[frame.model == "kernel"]["train_steps"]) == {0}
    assert frame[frame.model == "kernel"]["fallback_rate"].between(0, 1).all()
    # h_y: one of the --bandwidth-y constants times n^{-1/(d + d_y + 2 beta)}, h_x = 1 times it
    kernel = frame[frame.model == "kernel"]
    scale = kernel["n"] ** (-1 / (2 + 2 * kernel["beta"]))
    assert np.allclose(kernel["bandwidth_h"], scale)
    ratio = kernel["bandwidth_y_h"] / scale
    assert np.isclose(ratio.to_numpy()[:, None], [0.5, 0.7, 1.0]).any(1).all()
    assert set(kernel["bandwidth_y"]) == {"0.5,0.7,1.0"}
    # the same choice as select_bandwidth_y on the cell's data
    row = kernel[(kernel.density == "kink") & (kernel.n == 800)].iloc[0]
    data = HoelderConditional(1.5, 1, 1, 2.0, 1.0, OUProcess(1e-3, 8.0))
    g = generator(0, "data", "kink", 1.5, 800)
    y = data.sample_conditions(800, g)
    x = data.sample(y, g)
    h = 800 ** (-1 / 5)
    chosen = select_bandwidth_y(x, y, h, [0.5 * h, 0.7 * h, h], 4)
    assert row["bandwidth_y_h"] == pytest.approx([0.5 * h, 0.7 * h, h][chosen], rel=1e-12)


def test_training_budget_and_width_grow_with_n() -> None:
    """200 epochs (at least 1500 steps, no cap), width ~ n^{(d + d_y)/(d + d_y + 2 beta)}."""
    config = study.STUDY.config()
    assert (config.epochs, config.min_steps, config.max_steps) == (200.0, 1500, 0)
    assert (config.batch, config.lr) == (256, 2e-3)

    def steps(n: int) -> int:
        return training_steps(n, config.batch, config.epochs, config.min_steps, config.max_steps)

    assert steps(316) == 1500  # the floor: ceil(200 * 316 / 256) = 247
    assert steps(10000) == 7813  # 200 epochs: ceil(200 * 10000 / 256)
    assert steps(31623) == 24706  # no cap

    def width(n: int, beta: float) -> int:
        cell = {"n": n, "beta": beta, "dim": 1, "cond_dim": 1, "width": 64, "max_width": 256}
        return study.net_width(cell)

    assert width(1000, 1.5) == 64
    assert width(8000, 1.5) == round(64 * 8 ** (2 / 5))  # exponent 2 / (2 + 3)
    assert width(316, 2.5) == round(64 * 0.316 ** (2 / 7))
    assert width(10**6, 0.5) == 256  # clipped


def test_log_uniform_weighted_score_error_agrees_with_uniform_and_is_less_noisy() -> None:
    """The importance-weighted log-uniform design estimates the same time average as
    stratified uniform t, within their standard errors, with a smaller error."""
    from toolkit.metrics import log_uniform_design, squared_errors

    data, process = HoelderConditional(1.5), OUProcess()
    g = generator(0, "is-test")
    y = data.sample_conditions(1000, g)
    est = KernelScore(data.sample(y, g), y, 0.2, 0.2, process)
    size = 8192
    y_test = data.sample_conditions(size, g)
    x_test = data.sample(y_test, g)
    fns = (lambda x, t: est.score(x, y_test, t), lambda x, t: data.score(x, y_test, t))
    strata = (torch.arange(size) + torch.rand(size, generator=g, dtype=F64)) / size
    uniform, _ = squared_errors(*fns, x_test, process, g, process.t0 + (8 - 1e-3) * strata)
    times, weights = log_uniform_design(process, size, g)
    assert weights.mean().item() == pytest.approx(1.0, rel=0.01)  # E w = 1 for log-uniform t
    weighted = squared_errors(*fns, x_test, process, g, times)[0] * weights
    se_u = uniform.std().item() / math.sqrt(size)
    se_w = weighted.std().item() / math.sqrt(size)
    assert abs(uniform.mean().item() - weighted.mean().item()) < 3 * math.hypot(se_u, se_w)
    assert se_w < se_u / 2


def test_inverse_variance_times_have_density_one_over_sigma2() -> None:
    """t ~ p(t) ∝ 1 / (1 - e^{-t}) on [t0, T] (CDF log(e^t - 1), normalised): a KS test
    against scipy's quadrature of the density, and the identity that makes the eps loss the
    uniform time average: E_p[sigma_t^2 g(t)] / E_p[sigma_t^2] = mean of g over U[t0, T]."""
    from toolkit.diffusion import TIME_SAMPLERS, inverse_variance_times

    process = OUProcess(1e-3, 8.0)
    t = inverse_variance_times(process, 200_000, generator(0, "iv"))
    assert TIME_SAMPLERS["inverse-variance"] is inverse_variance_times
    assert t.dtype == F64 and float(t.min()) >= 1e-3 and float(t.max()) <= 8.0
    mass = quad(lambda s: 1 / -math.expm1(-s), 1e-3, 8.0, points=[0.01, 0.1, 1.0])[0]

    def cdf(v: np.ndarray) -> np.ndarray:
        return np.array([quad(lambda s: 1 / -math.expm1(-s), 1e-3, x)[0] for x in v]) / mass

    sub = t[:4000].numpy()
    assert stats.kstest(sub, cdf).pvalue > 0.01
    # a wrong sampler is rejected by the same test (log-uniform: the study's old times)
    from toolkit.diffusion import log_uniform_times

    wrong = log_uniform_times(process, 4000, generator(0, "lu")).numpy()
    assert stats.kstest(wrong, cdf).pvalue < 1e-6
    # half the times fall in [1, 8], where uniform averaging puts 7/8 of its weight
    assert float((t > 1).double().mean()) == pytest.approx(
        (math.log(math.expm1(8.0)) - math.log(math.expm1(1.0))) / (mass), abs=0.005
    )
    g = torch.cos(t) + t  # any function of t
    s2 = OUProcess.sigma2(t)
    uniform = quad(lambda s: math.cos(s) + s, 1e-3, 8.0)[0] / (8.0 - 1e-3)
    assert float((s2 * g).mean() / s2.mean()) == pytest.approx(uniform, rel=0.01)


def test_score_parametrisation_of_the_network() -> None:
    """parametrisation "score": the network outputs minus the score; score() negates it,
    where "eps" divides by -sigma_t. Unknown names are refused."""
    torch.manual_seed(0)
    x, t, y = torch.randn(6, 1, dtype=F64), _t(1e-3, 0.01, 0.1, 1.0, 4.0, 8.0), torch.rand(6, 2)
    process = OUProcess()
    for parametrisation in ("eps", "score"):
        torch.manual_seed(1)
        net = ConditionalScoreNet(1, 2, 16, 1, parametrisation)
        out = net(x.float(), t.float(), y, torch.zeros(6, dtype=torch.bool)).double()
        want = -out if parametrisation == "score" else -out / OUProcess.sigma(t).unsqueeze(1)
        got = net.score(x, t, y, process)
        assert got.dtype == F64 and torch.allclose(got, want, rtol=1e-6), parametrisation
    with pytest.raises(ValueError, match="parametrisation"):
        ConditionalScoreNet(1, 2, 16, 1, "noise")


def test_choice_names_agree_with_the_library() -> None:
    """The study names toolkit.diffusion's choices without importing torch; they agree."""
    from toolkit.diffusion import PARAMETRISATIONS, TIME_SAMPLERS

    assert study.PARAMETRISATIONS == PARAMETRISATIONS
    assert study.TRAIN_TIMES == tuple(TIME_SAMPLERS)
    assert study.STUDY.config().train_times == "inverse-variance"
