"""The minimax lower-bound family HardConditional, and HoelderConditional.density [CDM].

Every closed form is checked against an independent computation: the density against its
definition and quadrature (normalisation, the OU convolution), the score against autograd
and finite differences, the sampler against a numerically integrated CDF, the constant c
and the Hoelder norm of the perturbation against direct evaluation on fine grids.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.integrate import quad
from scipy.special import roots_legendre

from toolkit.data.hoelder_conditional import HardConditional, HoelderConditional
from toolkit.rng import generator

F64 = torch.float64
THETA = 1 + 2 * sum(math.exp(-2 * m**2) for m in range(1, 10))  # lattice sum at w / h = 1/2


def _t(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=F64)


def _phi(x: np.ndarray) -> np.ndarray:
    return np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)


def _signed_weights(data: HardConditional, y: np.ndarray) -> np.ndarray:
    """sum_j eps_ij prod_l exp(-(y_l - b_jl)^2 / (2 w^2)) for one y: (K_x,), in numpy."""
    b, w = data.y_centres.numpy(), data.width
    v = data.signs.numpy()
    for y_l in y[::-1]:  # contract the last y axis first
        v = v @ np.exp(-((y_l - b) ** 2) / (2 * w**2))
    return v


def _perturbation(data: HardConditional, x1: np.ndarray, y: np.ndarray, order: int = 0):
    """d^order/dx_1^order of A sum_k eps_k psi_k(x_1, y), from the definition: (len(x1),)."""
    a, w = data.x_centres.numpy(), data.width
    u = x1[:, None] - a  # (points, K_x)
    g = np.exp(-(u**2) / (2 * w**2))
    poly = (np.ones_like(u), -u / w**2, u**2 / w**4 - 1 / w**2)[order]
    return data.amplitude * (g * poly) @ _signed_weights(data, y)


def _gauss_legendre(lo: float, hi: float, panel: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of composite 20-node Gauss-Legendre on [lo, hi], panels <= panel."""
    nodes, weights = roots_legendre(20)
    edges = np.linspace(lo, hi, math.ceil((hi - lo) / panel) + 1)
    half = (edges[1:] - edges[:-1])[:, None] / 2
    return ((edges[1:] + edges[:-1])[:, None] / 2 + half * nodes).ravel(), (half * weights).ravel()


def _p0(data: HardConditional, y: np.ndarray):
    """x_1 -> phi(x_1) (1 + A sum eps psi) / Z(y), Z by quadrature: the definition at t = 0."""

    def unnormalised(x: np.ndarray) -> np.ndarray:
        return _phi(x) * (1 + _perturbation(data, x, y))

    nodes, weights = _gauss_legendre(-12, 12, data.width / 2)
    z = float((weights * unnormalised(nodes)).sum())
    return lambda x: unnormalised(x) / z


def _convolve(p0, x: float, t: float, panel: float) -> float:
    """int p0(x0) N(x; alpha x0, sigma^2) dx0 by composite Gauss-Legendre."""
    alpha, sigma = math.exp(-t / 2), math.sqrt(-math.expm1(-t))
    lo, hi = max(-14.0, (x - 13 * sigma) / alpha), min(14.0, (x + 13 * sigma) / alpha)
    x0, w = _gauss_legendre(lo, hi, min(panel, sigma / alpha / 4))
    kernel = np.exp(-((x - alpha * x0) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    return float((w * p0(x0) * kernel).sum())


# -- the constants ---------------------------------------------------------------------------


def test_constants_follow_the_construction() -> None:
    data = HardConditional(1.5, 1e4, dim=1, cond_dim=2)
    h = 1e4 ** (-1 / (1 + 2 + 3))
    assert data.bump_scale == pytest.approx(h, rel=1e-14)
    assert data.width == pytest.approx(h / 2, rel=1e-14)
    assert data.constant == pytest.approx(0.9 / THETA**3, rel=1e-14)
    assert data.amplitude == pytest.approx(0.9 / THETA**3 * h**1.5, rel=1e-14)
    a, b = data.x_centres, data.y_centres  # cells of side h, centred in [-2, 2] and [0, 1]
    assert a.numel() == math.floor(4 / h) and b.numel() == math.floor(1 / h)
    assert torch.allclose(a[1:] - a[:-1], _t(h)) and torch.allclose(a + a.flip(0), _t(0.0))
    assert torch.allclose(b + b.flip(0), _t(1.0))
    assert data.signs.shape == (a.numel(), b.numel(), b.numel())
    assert set(data.signs.unique().tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"beta": 0.0}, "beta"), ({"n": 0.5}, "n"), ({"floor": 1.0}, "floor"),
     ({"cond_dim": 0}, "cond_dim"), ({"width_ratio": -1.0}, "width_ratio")],
)  # fmt: skip
def test_bad_parameters_raise(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        HardConditional(**{"beta": 1.0, "n": 100.0, **kwargs})


def test_signs_are_a_function_of_the_seed() -> None:
    one, again, other = (HardConditional(0.5, 1e3, seed=s) for s in (1, 1, 2))
    assert one == again and hash(one) == hash(again) and one != other
    assert torch.equal(one.signs, again.signs)
    assert 0.3 < float((one.signs != other.signs).double().mean()) < 0.7
    x, y, t = torch.randn(64, 1, dtype=F64), torch.rand(64, 1, dtype=F64), _t(0.1).expand(64)
    assert torch.equal(one.score(x, y, t), again.score(x, y, t))
    assert (one.density(x, y, t) - other.density(x, y, t)).abs().max() > 1e-3


# -- the density --------------------------------------------------------------------------------


@pytest.mark.parametrize("cond_dim", [1, 2])
def test_density_integrates_to_one_and_is_the_definition(cond_dim: int) -> None:
    data = HardConditional(0.5, 1e3, cond_dim=cond_dim, seed=3)
    nodes, weights = _gauss_legendre(-12, 12, data.width / 2)
    for y in ([0.13, 0.5], [0.5, 0.91], [0.77, 0.02]):
        y = np.array(y[:cond_dim])
        yt = torch.as_tensor(y).view(1, -1)
        dens = data.density(torch.as_tensor(nodes).view(-1, 1), yt.expand(nodes.size, -1), _t(0))
        assert abs(float((dens.numpy() * weights).sum()) - 1) < 1e-12
        x = np.linspace(-3, 3, 41)
        got = data.density(torch.as_tensor(x).view(-1, 1), yt.expand(41, -1), torch.zeros(41))
        assert np.allclose(got.numpy(), _p0(data, y)(x), rtol=1e-11, atol=0)
        log_p = data.log_density(torch.as_tensor(x).view(-1, 1), yt.expand(41, -1))
        assert np.allclose(log_p.exp().numpy(), got.numpy(), rtol=1e-13, atol=0)


@pytest.mark.parametrize(("dim", "cond_dim"), [(1, 1), (1, 2), (2, 1)])
def test_marginal_is_the_ou_convolution(dim: int, cond_dim: int) -> None:
    """p_t(x | y) = int p_0(x0 | y) N(x; alpha_t x0, sigma_t^2) dx0 (x_2 stays N(0, 1))."""
    data = HardConditional(0.5, 10 ** (dim + cond_dim + 1), dim, cond_dim, seed=5)
    y = np.array([0.42, 0.6][:cond_dim])
    x1 = np.array([-2.3, -0.71, -0.05, 0.33, 1.02, 1.9])
    x = torch.stack([torch.as_tensor(x1), torch.full((6,), 0.8, dtype=F64)], 1)[:, :dim]
    yt = torch.as_tensor(y).expand(6, -1)
    phi_rest = _phi(0.8) if dim == 2 else 1.0
    p0 = _p0(data, y)

    for t in (1e-3, 0.1, 1.0):
        got = data.density(x, yt, _t(t).expand(6)).numpy() / phi_rest
        want = np.array([_convolve(p0, v, t, data.width / 2) for v in x1])
        assert np.allclose(got, want, rtol=1e-12, atol=0), (t, got / want - 1)
    # the bumps matter at these points: p_0.1 is not phi
    assert np.abs(got / _phi(x1) - 1).max() > 0.01


# -- the score ----------------------------------------------------------------------------------


def test_score_matches_autograd_and_finite_differences() -> None:
    data = HardConditional(1.5, 1e4, dim=2, cond_dim=1, seed=11)
    g = generator(0, "score-test")
    x = torch.randn(32, 2, generator=g, dtype=F64)
    y = data.sample_conditions(32, g)
    t = torch.tensor([1e-3, 0.01, 0.1, 1.0, 4.0], dtype=F64).repeat(7)[:32]
    got = data.score(x, y, t)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.log(data.density(xg, y, t)).sum(), xg)
    assert torch.allclose(got, grad, rtol=1e-10, atol=1e-12)
    step = 1e-6
    for j in range(2):
        e = torch.zeros(1, 2, dtype=F64)
        e[0, j] = step
        fd = (data.density(x + e, y, t).log() - data.density(x - e, y, t).log()) / (2 * step)
        assert torch.allclose(got[:, j], fd, rtol=1e-6, atol=1e-6), (got[:, j] - fd).abs().max()
    assert torch.equal(got[:, 1], -x[:, 1])  # x_2 is N(0, 1) and not perturbed
    signal = (got - data.base_score(x, y, t))[:, 0]  # what a bump-blind score misses
    assert torch.equal(data.base_score(x, y, t), -x) and signal.abs().max() > 0.1


# -- HoelderConditional.density --------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.5, 2.5])
def test_hoelder_density_at_t(beta: float) -> None:
    data = HoelderConditional(beta)
    y = _t(0.7).view(1, 1)
    m = float(data.center(y)[0])  # the kink
    x1 = np.array([-1.7, -0.2, m + 0.15, 1.4])
    xs = torch.as_tensor(x1).view(-1, 1)
    p0 = data.log_density(xs, y.expand(4, 1)).exp()
    at = data.density(xs, y.expand(4, 1), torch.zeros(4))
    assert torch.allclose(at, p0, rtol=1e-14, atol=0)
    near = data.density(xs, y.expand(4, 1), _t(1e-10).expand(4))  # t -> 0 (away from the kink)
    assert torch.allclose(near, p0, rtol=1e-8, atol=0)

    def bumped(x0: float) -> float:  # phi (1 + a psi), the definition
        return math.exp(-(x0**2) / 2) * (1 + 2 * abs(x0 - m) ** beta * math.exp(-((x0 - m) ** 2)))

    z = quad(bumped, -15, 15, points=[m], epsabs=0, epsrel=1e-13, limit=400)[0]
    assert abs(float(p0[0]) / (bumped(x1[0]) / z) - 1) < 1e-12

    def density0(x0: float) -> float:
        return bumped(x0) / z

    for t in (1e-3, 0.1, 1.0):
        alpha, sigma = math.exp(-t / 2), math.sqrt(-math.expm1(-t))
        got = data.density(xs, y.expand(4, 1), _t(t).expand(4)).numpy()
        for x, value in zip(x1, got, strict=True):
            lo, hi = (x - 13 * sigma) / alpha, (x + 13 * sigma) / alpha

            def f(x0: float, x=x, alpha=alpha, sigma=sigma) -> float:
                k = math.exp(-((x - alpha * x0) ** 2) / (2 * sigma**2))
                return density0(x0) * k / (sigma * math.sqrt(2 * math.pi))

            pts = [m] if lo < m < hi else None
            want = quad(f, lo, hi, points=pts, epsabs=0, epsrel=1e-12, limit=400)[0]
            assert abs(value / want - 1) < 1e-10, (beta, t, x, value / want - 1)


# -- sampling -------------------------------------------------------------------------------


def test_sampler_passes_a_ks_test_that_a_wrong_sampler_fails() -> None:
    data = HardConditional(0.5, 100, seed=0)
    y0, m = _t(0.4).view(1, 1), 20_000
    grid = torch.linspace(-9, 9, 180_001, dtype=F64)  # the exact CDF by the trapezoid rule
    dens = data.density(grid.view(-1, 1), y0.expand(grid.numel(), 1), torch.zeros(grid.numel()))
    cdf = torch.cat([_t(0.0), torch.cumulative_trapezoid(dens, grid)]).numpy()
    assert abs(cdf[-1] - 1) < 1e-12

    def exact(x: np.ndarray) -> np.ndarray:
        return np.interp(x, grid.numpy(), cdf)

    # the closed-form bin masses agree with the numerical CDF
    edges = torch.cat([_t(-math.inf), torch.linspace(-3, 3, 25, dtype=F64), _t(math.inf)])
    masses = data.first_axis_masses(edges, y0)[0].numpy()
    assert np.allclose(masses, np.diff(exact(np.clip(edges.numpy(), -9, 9))), atol=1e-9)

    x = data.sample(y0.expand(m, 1), generator(0, "ks"))[:, 0].numpy()
    assert stats.kstest(x, exact).pvalue > 0.01
    base = torch.randn(m, generator=generator(0, "ks-base"), dtype=F64).numpy()
    assert stats.kstest(base, exact).pvalue < 1e-6
    flipped = HardConditional(0.5, 100, seed=1).sample(y0.expand(m, 1), generator(0, "ks"))
    assert stats.kstest(flipped[:, 0].numpy(), exact).pvalue < 1e-6


# -- positivity and the Hoelder norm ----------------------------------------------------------


@pytest.mark.parametrize(("h", "cond_dim"), [(1.0, 1), (0.3, 1), (0.05, 1), (1.0, 2), (0.3, 2)])
def test_factor_stays_above_the_floor(h: float, cond_dim: int) -> None:
    beta = 0.5
    data = HardConditional(beta, h ** -(1 + cond_dim + 2 * beta), cond_dim=cond_dim, seed=2)
    assert data.bump_scale == pytest.approx(h, rel=1e-12)
    low = data.min_factor()
    assert data.floor <= low < 1 - 0.5 * data.amplitude  # reaches well below 1, not below floor
    # random points of the box agree with the grid minimum (to its resolution)
    g = generator(0, "positivity", h)
    x1 = 4.5 * (2 * torch.rand(100_000, generator=g, dtype=F64) - 1)
    y = data.sample_conditions(100_000, g)
    f = data.factor(x1, y, torch.zeros_like(x1))
    assert float(f.min()) >= low - 0.01 * data.amplitude
    # c is the largest that positivity allows: with all signs -1 the factor would reach
    # 1 - A max sum psi, and max sum psi -> Theta^{1 + d_y} as h -> 0
    if h < 0.1:
        a, w = data.x_centres.numpy(), data.width
        sx = np.exp(-((np.linspace(-0.2, 0.2, 801)[:, None] - a) ** 2) / (2 * w**2)).sum(1)
        b = data.y_centres.numpy()
        sy = np.exp(-((np.linspace(0.4, 0.6, 401)[:, None] - b) ** 2) / (2 * w**2)).sum(1)
        peak = sx.max() * sy.max() ** cond_dim
        assert 1 - 1e-9 < peak / THETA ** (1 + cond_dim) < 1 + 1e-12


def _hoelder_seminorm(fk: np.ndarray, dx: float, gamma: float, max_lag: int) -> float:
    """max |f(x) - f(x')| / |x - x'|^gamma over grid pairs at most max_lag steps apart."""
    return max(
        float(np.abs(fk[k:] - fk[:-k]).max()) / (k * dx) ** gamma for k in range(1, max_lag + 1)
    )


@pytest.mark.parametrize("beta", [0.5, 1.5, 2.5])
def test_hoelder_norm_is_bounded_in_n_while_the_sup_vanishes(beta: float) -> None:
    """f_n(x_1) = A sum_k eps_k psi_k(x_1, y0): the beta-seminorm (of f^(floor beta)) stays
    O(1) while sup |f_n| ~ h^beta; the (beta + 1/2)-seminorm grows (the test can fail)."""
    order = int(beta)
    ns = (1e2, 1e3, 1e4, 1e5)
    hs, semi, wrong, sup = [], [], [], []
    for n in ns:
        data = HardConditional(beta, n, seed=0)
        h, w = data.bump_scale, data.width
        assert h == pytest.approx(n ** (-1 / (2 + 2 * beta)), rel=1e-12)
        y0 = data.y_centres[data.y_centres.numel() // 2 : data.y_centres.numel() // 2 + 1].numpy()
        dx = w / 20
        x1 = np.arange(-2 - 5 * w, 2 + 5 * w, dx)
        f = _perturbation(data, x1, y0)
        fk = _perturbation(data, x1, y0, order)
        if order:  # the analytic derivative against a difference quotient of f
            fd = np.gradient(_perturbation(data, x1, y0, order - 1), dx)
            assert np.abs(fd - fk)[2:-2].max() < 1e-2 * np.abs(fk).max()
        else:  # f is the factor minus one
            xt = torch.as_tensor(x1[::50])
            factor = data.factor(
                xt, torch.as_tensor(y0).expand(xt.numel(), 1), torch.zeros_like(xt)
            )
            assert np.allclose(factor.numpy() - 1, f[::50], rtol=1e-12, atol=1e-15)
        hs.append(h)
        semi.append(_hoelder_seminorm(fk, dx, beta - order, int(6 * h / dx)))
        wrong.append(_hoelder_seminorm(fk, dx, beta - order + 0.5, int(6 * h / dx)))
        sup.append(float(np.abs(f).max()))
    semi, wrong, sup, hs = map(np.array, (semi, wrong, sup, hs))
    c = 0.9 / THETA**2
    assert semi.max() / semi.min() < 3, semi
    assert abs(np.polyfit(np.log(hs), np.log(semi), 1)[0]) < 0.35, semi
    assert np.polyfit(np.log(hs), np.log(wrong), 1)[0] < -0.45, wrong  # ~ h^{-1/2}
    assert np.all(np.diff(sup) < 0)
    assert np.all((0.3 * c < sup / hs**beta) & (sup / hs**beta <= c * THETA**2)), sup / hs**beta
