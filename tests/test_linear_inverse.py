"""The linear inverse problem's ground truth, LinearInverse [CDM, applications].

Every closed form is checked against an independent computation: the posterior against
prior x likelihood and scipy's quad (normalisation), the OU marginal and its score against
scipy's quad of the convolution, autograd of a dense trapezoid log-density and finite
differences; the samplers against quad-integrated bin masses and the measurement model.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.integrate import quad

from toolkit.data.linear_inverse import LinearInverse
from toolkit.rng import generator

F64 = torch.float64


def _t(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=F64)


def _posterior(data: LinearInverse, s: float):
    """x -> p(x | s) from the definition: prior times N(s; x, sigma^2), normalised by quad."""
    sigma, a, c = data.noise_level, data.amplitude, data.kink

    def unnormalised(x: float) -> float:
        prior = math.exp(-(x**2) / 2) * (
            1 + a * abs(x - c) ** data.beta * math.exp(-((x - c) ** 2))
        )
        return prior * math.exp(-((s - x) ** 2) / (2 * sigma**2))

    z = quad(unnormalised, -20, 20, points=[c], limit=400, epsabs=1e-14, epsrel=1e-13)[0]
    return lambda x: unnormalised(x) / z


def _convolved(data: LinearInverse, x: float, s: float, t: float) -> tuple[float, float]:
    """(p_t(x | s), d/dx p_t(x | s)) by quad of p(x0 | s) N(x; alpha x0, sigma_t^2) over x0."""
    p0 = _posterior(data, s)
    alpha, sd = math.exp(-t / 2), math.sqrt(-math.expm1(-t))

    def kernel(x0: float) -> float:
        return math.exp(-((x - alpha * x0) ** 2) / (2 * sd**2)) / (sd * math.sqrt(2 * math.pi))

    centre = x / alpha
    lo, hi = max(-20.0, centre - 14 * sd / alpha), min(20.0, centre + 14 * sd / alpha)
    points = [data.kink] if lo < data.kink < hi else None
    kw = {"points": points, "limit": 400, "epsabs": 1e-14, "epsrel": 1e-12}
    value = quad(lambda u: p0(u) * kernel(u), lo, hi, **kw)[0]
    slope = quad(lambda u: p0(u) * kernel(u) * -(x - alpha * u) / sd**2, lo, hi, **kw)[0]
    return value, slope


@pytest.mark.parametrize("beta", [0.5, 1.5, 2.5])
def test_prior_and_posterior_integrate_to_one(beta: float) -> None:
    data = LinearInverse(beta, meas_dim=3, noise_level=0.7, kink=0.4)

    def prior(x: float) -> float:
        return math.exp(float(data.log_prior(_t(x).view(1, 1))[0]))

    assert abs(quad(prior, -15, 15, points=[0.4], limit=200, epsabs=1e-13)[0] - 1) < 1e-9
    for s in (-2.0, 0.1, 1.3):

        def post(x: float, s=s) -> float:
            return math.exp(float(data.log_density(_t(x).view(1, 1), _t(s))[0]))

        assert abs(quad(post, -15, 15, points=[0.4], limit=200, epsabs=1e-13)[0] - 1) < 1e-9


def test_posterior_is_prior_times_likelihood() -> None:
    """log p(x | s) - log p(x) - log N(s; x, sigma^2) is constant in x (checks mu_s, tau)."""
    data = LinearInverse(1.5, noise_level=0.6, kink=-0.3)
    x = torch.linspace(-3, 3, 41, dtype=F64).view(-1, 1)
    for s in (-1.0, 0.5, 2.0):
        ss = torch.full((41,), s, dtype=F64)
        lik = -((s - x[:, 0]) ** 2) / (2 * 0.36)
        diff = data.log_density(x, ss) - data.log_prior(x) - lik
        assert float(diff.max() - diff.min()) < 1e-12
    # and p(x | s) = p(x | y) for every y with a^T y = s: the statistic is a^T y
    multi = LinearInverse(1.5, meas_dim=5, seed=7)
    y = torch.randn(4, 5, generator=generator(0, "y"), dtype=F64)
    assert torch.allclose(multi.statistic(y), (y * multi.direction).sum(1), atol=1e-14)


@pytest.mark.parametrize("beta", [0.5, 1.5, 2.5])
def test_marginal_density_and_score_match_scipy_quadrature(beta: float) -> None:
    data = LinearInverse(beta, meas_dim=2, noise_level=0.8, kink=0.3)
    points = [(0.3, 0.5, 1e-3), (0.25, -0.4, 1e-3), (-1.0, 1.5, 0.05), (1.2, 0.0, 0.7),
              (-2.0, -1.0, 4.0), (0.31, 0.9, 0.01)]  # fmt: skip
    x = torch.tensor([[p[0]] for p in points], dtype=F64)
    s = torch.tensor([p[1] for p in points], dtype=F64)
    t = torch.tensor([p[2] for p in points], dtype=F64)
    want = np.array([_convolved(data, *p) for p in points])  # (points, 2)
    got_density = data.density(x, s, t).numpy()
    got_score = data.score(x, s, t)[:, 0].numpy()
    assert np.abs(got_density / want[:, 0] - 1).max() < 1e-8
    assert np.abs(got_score - want[:, 1] / want[:, 0]).max() < 1e-7
    # t = 0: the posterior itself
    zero = torch.zeros(len(points), dtype=F64)
    assert torch.allclose(data.density(x, s, zero), data.log_density(x, s).exp(), rtol=1e-12)


@pytest.mark.parametrize("beta", [0.5, 2.5])
def test_score_matches_autograd_and_finite_differences(beta: float) -> None:
    """Autograd of log p_t(x | s) by a dense trapezoid rule over x0; centred differences."""
    data = LinearInverse(beta, meas_dim=4, noise_level=1.0, kink=0.2)
    x = torch.tensor([-1.3, -0.2, 0.4, 1.1], dtype=F64, requires_grad=True)
    s = torch.tensor([0.3, -0.8, 0.5, 1.9], dtype=F64)
    t = torch.tensor([0.05, 0.3, 1.0, 3.0], dtype=F64)
    alpha, sd = torch.exp(-t / 2), torch.sqrt(-torch.expm1(-t))
    u = torch.linspace(-10, 10, 200_001, dtype=F64)  # x0 grid
    # the unnormalised posterior from its definition, prior x likelihood (Z(s) cancels)
    prior = torch.exp(-(u**2) / 2) * (1 + data.amplitude * (u - 0.2).abs() ** beta
                                      * torch.exp(-((u - 0.2) ** 2)))  # fmt: skip
    post = prior * torch.exp(-((s.view(-1, 1) - u) ** 2) / 2)  # (4, grid)
    gauss = torch.exp(-((x.view(-1, 1) - alpha.view(-1, 1) * u) ** 2) / (2 * sd.view(-1, 1) ** 2))
    log_p = torch.log(torch.trapezoid(post * gauss, u, dim=1))
    (grad,) = torch.autograd.grad(log_p.sum(), x)
    got = data.score(x.detach().unsqueeze(1), s, t)[:, 0]
    assert torch.allclose(got, grad, atol=1e-7), (got - grad).tolist()

    h = 1e-5
    xd = x.detach().unsqueeze(1)
    fd = (data.density(xd + h, s, t).log() - data.density(xd - h, s, t).log()) / (2 * h)
    assert torch.allclose(got, fd, atol=1e-7)
    # a wrong posterior variance (tau^2 = sigma^2) is far off: the test has power
    wrong = LinearInverse(beta, meas_dim=4, noise_level=math.sqrt(2), kink=0.2)
    assert (wrong.score(xd, s * 2 / 3, t)[:, 0] - grad).abs().max() > 1e-2


def test_posterior_sampler_fits_the_density() -> None:
    data = LinearInverse(0.5, meas_dim=8, noise_level=0.7, kink=0.2)
    s = 0.6
    x = data.sample(torch.full((40_000,), s, dtype=F64), generator(0, "gof"))[:, 0].numpy()
    p0 = _posterior(data, s)
    edges = np.concatenate([[-np.inf], np.linspace(-2.5, 3, 23), [np.inf]])
    cdf = np.array([0.0] + [quad(p0, -20, e, points=[0.2] if e > 0.2 else None, limit=400)[0]
                            for e in edges[1:-1]] + [1.0])  # fmt: skip
    expected = np.diff(cdf) * x.size
    observed = np.histogram(x, edges)[0]
    expected *= observed.sum() / expected.sum()
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    # power: the Gaussian factor alone (A = 0) is rejected on the same samples
    mu, tau = data.posterior_gaussian(torch.tensor(s))
    gauss = np.diff(stats.norm.cdf(edges, float(mu), tau)) * x.size
    assert stats.chisquare(observed, gauss * observed.sum() / gauss.sum()).pvalue < 1e-12


def test_joint_sampler_follows_the_measurement_model() -> None:
    data = LinearInverse(1.5, meas_dim=6, noise_level=0.5, kink=0.0, seed=3)
    a = data.direction
    assert abs(float(a.norm()) - 1) < 1e-14
    assert torch.equal(a, LinearInverse(1.5, meas_dim=6, seed=3).direction)
    assert not torch.allclose(a, LinearInverse(1.5, meas_dim=6, seed=4).direction)
    x, y = data.sample_joint(50_000, generator(0, "joint"))
    assert x.shape == (50_000, 1) and y.shape == (50_000, 6)

    # the prior: KS against its CDF by quad of the definition
    def prior(u: float) -> float:
        return math.exp(-(u**2) / 2) * (1 + 2 * abs(u) ** 1.5 * math.exp(-(u**2)))

    total = quad(prior, -20, 20, points=[0.0])[0]

    def cdf(v: float) -> float:
        return quad(prior, -20, v, points=[0.0] if v > 0 else None)[0] / total

    grid = np.linspace(-3, 3, 61)
    emp = np.searchsorted(np.sort(x[:, 0].numpy()), grid) / x.shape[0]
    assert np.abs(emp - np.array([cdf(v) for v in grid])).max() < 0.012  # KS 1% ~ 0.0073
    # the noise: y - a x ~ N(0, sigma^2 I), independent of x
    noise = (y - x * a).numpy() / 0.5
    assert np.abs(noise.mean(0)).max() < 0.02 and np.abs(noise.std(0) - 1).max() < 0.02
    assert np.abs(np.corrcoef(np.c_[x.numpy(), noise].T)[0, 1:]).max() < 0.02
    # s = a^T y = x + sigma N(0, 1)
    resid = (data.statistic(y) - x[:, 0]).numpy()
    assert abs(resid.std() - 0.5) < 0.01


def test_bad_parameters_are_refused() -> None:
    for kwargs in ({"beta": 0.0}, {"beta": 1.0, "meas_dim": 0}, {"beta": 1.0, "noise_level": 0.0},
                   {"beta": 1.0, "amplitude": -1.0}):  # fmt: skip
        with pytest.raises(ValueError):
            LinearInverse(**kwargs)
