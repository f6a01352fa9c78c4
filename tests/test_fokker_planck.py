"""Fokker-Planck law of the reverse SDE in d = 1 against exact laws [FP].

Ground truths: with a linear score the reverse SDE keeps a Gaussian law whose mean and
variance solve ODEs (integrated here by scipy's DOP853 to 1e-12), and the OU marginals
p_t of Gaussian and Gaussian-mixture data are closed forms (their scores by autograd of
log p_t, not by a hand-written formula).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad, solve_ivp
from scipy.stats import norm

from toolkit.diffusion import OUProcess
from toolkit.fokker_planck import (
    Grid,
    bernoulli,
    cell_averages,
    normal_cell_averages,
    reverse_sde_law,
    total_variation,
)

F64 = torch.float64
PROCESS = OUProcess(t0=1e-3, horizon=8.0)
T0 = torch.tensor(PROCESS.t0, dtype=F64)
MEAN, VAR = 1.0, 0.25  # Gaussian data N(MEAN, VAR)
WEIGHTS = torch.tensor([0.3, 0.7], dtype=F64)  # two-component mixture data
MEANS = torch.tensor([-1.5, 1.0], dtype=F64)
STDS = torch.tensor([0.2, 0.5], dtype=F64)


def gaussian_var(t: torch.Tensor) -> torch.Tensor:
    """Variance of p_t for N(MEAN, VAR) data: alpha^2 VAR + sigma^2."""
    return PROCESS.alpha2(t) * VAR + PROCESS.sigma2(t)


def gaussian_score(scale: float = 1.0):
    """scale times the exact score of p_t = N(alpha MEAN, alpha^2 VAR + sigma^2)."""

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -scale * (x - PROCESS.alpha(t) * MEAN) / gaussian_var(t)

    return score


def mixture_log_density(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """log p_t(x) of the mixture data: each component is carried by the OU marginals."""
    mean = PROCESS.alpha(t) * MEANS
    var = PROCESS.alpha2(t) * STDS**2 + PROCESS.sigma2(t)
    log_parts = (
        torch.log(WEIGHTS)
        - 0.5 * torch.log(2 * math.pi * var)
        - (x[..., None] - mean) ** 2 / (2 * var)
    )
    return torch.logsumexp(log_parts, -1)


def mixture_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(mixture_log_density(x, t).sum(), x)[0]


def linear_law(scale: float) -> tuple[float, float]:
    """Mean and variance at t0 of the reverse SDE with score scale * exact Gaussian score.

    Drift x/2 + a x + c with a = -scale / V_t, c = scale alpha_t MEAN / V_t: in tau = T - t,
    m' = (1/2 + a) m + c and v' = 2 (1/2 + a) v + 1, from N(0, 1) at tau = 0."""
    horizon = PROCESS.horizon

    def rhs(tau: float, y: np.ndarray) -> list[float]:
        t = torch.tensor(horizon - tau, dtype=F64)
        var, alpha = float(gaussian_var(t)), float(PROCESS.alpha(t))
        a, c = -scale / var, scale * alpha * MEAN / var
        return [(0.5 + a) * y[0] + c, 2 * (0.5 + a) * y[1] + 1]

    sol = solve_ivp(
        rhs, (0.0, horizon - PROCESS.t0), [0.0, 1.0], method="DOP853", rtol=1e-12, atol=1e-14
    )
    assert sol.success
    return float(sol.y[0, -1]), float(sol.y[1, -1])


def gaussian_tv(m1: float, v1: float, m2: float, v2: float) -> float:
    """Continuous TV between N(m1, v1) and N(m2, v2) by adaptive quadrature, split at the
    (at most two) points where the densities cross."""
    a = 1 / (2 * v2) - 1 / (2 * v1)
    b = m1 / v1 - m2 / v2
    c = m2**2 / (2 * v2) - m1**2 / (2 * v1) - 0.5 * math.log(v1 / v2)
    roots = [r.real for r in np.roots([a, b, c]) if abs(r.imag) < 1e-12]
    s1, s2 = math.sqrt(v1), math.sqrt(v2)

    def gap(x: float) -> float:
        return abs(norm.pdf(x, m1, s1) - norm.pdf(x, m2, s2))

    total, _ = quad(gap, -12, 12, points=sorted(roots), limit=200, epsabs=1e-14, epsrel=1e-12)
    return total / 2


@pytest.fixture(scope="module")
def gaussian_law() -> torch.Tensor:
    return reverse_sde_law(gaussian_score(), PROCESS, batch=1)  # (1, 1000)


@pytest.fixture(scope="module")
def mixture_law() -> torch.Tensor:
    return reverse_sde_law(mixture_score, PROCESS, batch=1)


@pytest.fixture(scope="module")
def perturbed_law() -> torch.Tensor:
    return reverse_sde_law(gaussian_score(1.2), PROCESS, batch=1)


def test_grid_geometry() -> None:
    grid = Grid(lo=-2.0, hi=3.0, cells=10)
    assert grid.width == pytest.approx(0.5)
    assert grid.faces.shape == (11,) and grid.centers.shape == (10,)
    assert grid.faces[0] == -2.0 and grid.faces[-1] == 3.0
    assert torch.allclose(grid.centers, torch.arange(10, dtype=F64) * 0.5 - 1.75)


def test_cell_averages_match_cdf_differences() -> None:
    # Gauss-Legendre (8 nodes) against exact CDF differences; batch dimensions pass through.
    grid = Grid(lo=-4.0, hi=5.0, cells=60)
    means = torch.tensor([[0.3], [-1.0]], dtype=F64)  # (2, 1)
    quad_avg = cell_averages(
        lambda x: torch.exp(-((x - means) ** 2) / 2) / math.sqrt(2 * math.pi), grid
    )
    assert quad_avg.shape == (2, 60)
    for row, m in zip(quad_avg, (0.3, -1.0), strict=True):
        assert torch.allclose(row, normal_cell_averages(grid, m), rtol=0, atol=1e-13)
    # One node is the midpoint rule: off by O(width^2) on this coarse grid.
    midpoint = cell_averages(lambda x: torch.exp(-(x**2) / 2) / math.sqrt(2 * math.pi), grid, 1)
    assert (midpoint - normal_cell_averages(grid)).abs().max() > 1e-4


def test_bernoulli_is_stable_and_exact() -> None:
    z = torch.tensor([0.0, 1e-9, -1e-9, 1e-3, -0.7, 2.0, 40.0, -40.0, 800.0, -800.0], dtype=F64)
    b = bernoulli(z)
    assert torch.isfinite(b).all() and b[0] == 1.0
    # B(-z) = B(z) + z, and B(z) = 1 - z/2 + z^2/12 - z^4/720 + ... near 0.
    assert torch.allclose(bernoulli(-z) - b, z, rtol=1e-15, atol=1e-13)
    series = 1 - z[:4] / 2 + z[:4] ** 2 / 12 - z[:4] ** 4 / 720
    assert torch.allclose(b[:4], series, rtol=1e-15, atol=0)
    assert b[4] == pytest.approx(-0.7 / math.expm1(-0.7), rel=1e-15)
    assert b[8] == 0.0 and b[9] == 800.0  # the pure-upwind limits


def test_zero_drift_is_the_heat_equation() -> None:
    # score = -x/2 cancels the drift exactly (b = 0, every face at z = 0): the law is
    # N(0, 1 + T - t0), on a grid wide enough that the walls hold < 1e-10 of its mass.
    grid = Grid(lo=-20.0, hi=20.0, cells=400)
    law = reverse_sde_law(lambda x, t: -x / 2, PROCESS, 1, grid, steps=200)
    exact = normal_cell_averages(grid, 0.0, math.sqrt(1 + PROCESS.horizon - PROCESS.t0))
    assert float(total_variation(law, exact, grid)[0]) < 1e-4  # measured 3.4e-5


def test_exact_gaussian_score_recovers_p_t0(gaussian_law: torch.Tensor) -> None:
    grid = Grid()
    var_t0 = float(gaussian_var(T0))
    p_t0 = normal_cell_averages(grid, float(PROCESS.alpha(T0)) * MEAN, math.sqrt(var_t0))
    # Measured 7.6e-5: 1.8e-5 of discretisation, the rest the start N(0, 1) != p_T.
    assert float(total_variation(gaussian_law, p_t0, grid)[0]) < 2e-4
    # Against the exact law of the sampler (from N(0, 1), Gaussian by the moment ODEs) only
    # the discretisation is left: measured 1.8e-5, second order in cells and in steps.
    m, v = linear_law(1.0)
    law = normal_cell_averages(grid, m, math.sqrt(v))
    assert float(total_variation(gaussian_law, law, grid)[0]) < 4e-5
    # That start mismatch is real and resolved: exact law vs p_t0 is 6.7e-5.
    assert 5e-5 < gaussian_tv(m, v, float(PROCESS.alpha(T0)) * MEAN, var_t0) < 9e-5


def test_exact_mixture_score_recovers_p_t0(mixture_law: torch.Tensor) -> None:
    grid = Grid()
    p_t0 = cell_averages(lambda x: mixture_log_density(x, T0).exp(), grid)
    assert abs(float(p_t0.sum()) * grid.width - 1) < 1e-12
    # Measured 5.8e-5 (4.5e-5 with 2000 cells and 400 steps: the start mismatch).
    assert float(total_variation(mixture_law, p_t0, grid)[0]) < 2e-4


def test_perturbed_linear_score_matches_moment_odes(perturbed_law: torch.Tensor) -> None:
    grid = Grid()
    m, v = linear_law(1.2)
    m_t0, v_t0 = float(PROCESS.alpha(T0)) * MEAN, float(gaussian_var(T0))
    exact_tv = gaussian_tv(m, v, m_t0, v_t0)
    fp_tv = float(
        total_variation(perturbed_law, normal_cell_averages(grid, m_t0, math.sqrt(v_t0)), grid)[0]
    )
    assert exact_tv > 0.01  # a 20% score error is far from the exact law
    assert fp_tv == pytest.approx(exact_tv, rel=0.02)
    # The law itself, not just its distance to p_t0.
    law = normal_cell_averages(grid, m, math.sqrt(v))
    assert float(total_variation(perturbed_law, law, grid)[0]) < 1e-4


def test_mass_conserved_and_nonnegative(
    gaussian_law: torch.Tensor, mixture_law: torch.Tensor, perturbed_law: torch.Tensor
) -> None:
    grid = Grid()

    def stiff(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # A steep score (|b| dx / D up to ~3, upwinding regime) that piles the mass near 1.
        return -100 * torch.tanh(5 * (x - 1)) - x / 2

    laws = torch.cat([gaussian_law, mixture_law, perturbed_law, reverse_sde_law(stiff, PROCESS, 1)])
    assert torch.allclose(laws.sum(1) * grid.width, torch.ones(4, dtype=F64), rtol=0, atol=1e-10)
    assert float(laws.min()) > -1e-12
    assert float(laws[3].max()) > 10  # the stiff problem did concentrate


def test_batch_rows_are_independent() -> None:
    grid, steps = Grid(cells=200), 50
    gaussian = gaussian_score()

    def both(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # row 0 Gaussian, row 1 mixture
        return torch.cat([gaussian(x[:1], t), mixture_score(x[1:], t)])

    together = reverse_sde_law(both, PROCESS, 2, grid, steps)
    alone = torch.cat(
        [
            reverse_sde_law(gaussian, PROCESS, 1, grid, steps),
            reverse_sde_law(mixture_score, PROCESS, 1, grid, steps),
        ]
    )
    assert (together - alone).abs().max() < 1e-12
    assert (together[0] - together[1]).abs().max() > 0.1  # two genuinely different problems


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: Grid(cells=9), "cells"),
        (lambda: Grid(lo=1.0, hi=1.0), "lo"),
        (lambda: reverse_sde_law(gaussian_score(), PROCESS, 1, Grid(cells=20), steps=0), "steps"),
        (lambda: reverse_sde_law(gaussian_score(), PROCESS, 0, Grid(cells=20)), "batch"),
        (lambda: reverse_sde_law(lambda x, t: x[:, :-1], PROCESS, 1, Grid(cells=20)), "score"),
        (lambda: reverse_sde_law(lambda x, t: x / 0, PROCESS, 1, Grid(cells=20)), "score"),
        (lambda: cell_averages(torch.exp, Grid(cells=20), nodes=0), "nodes"),
        (
            lambda: total_variation(torch.zeros(3, 20), torch.zeros(3, 21), Grid(cells=20)),
            "cells",
        ),
    ],
)
def test_bad_arguments_raise(call, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        call()
