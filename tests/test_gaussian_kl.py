"""toolkit.gaussian_kl: exact sampler laws, the Wishart bias and the common-random-number KL,
each against an independent computation (a dense recursion, simulation, a closed-form law)."""

import math

import pytest
import torch

from toolkit.data.gaussian_process import GaussianProcessSequences
from toolkit.diffusion import OUProcess, sample
from toolkit.gaussian_kl import (
    chain_kl,
    crn_kl,
    exact_chain_variances,
    linear_chain_covariance,
    wishart_debiased_kl,
    wishart_kl_bias,
)
from toolkit.metrics import gaussian_kl, second_moment
from toolkit.rng import generator

PROCESS = OUProcess(1e-3, 8.0)


def _gp(frames=5, dim=2, length=2.0):
    return GaussianProcessSequences.build("exp", 1.0, length, frames, "ar1", 0.5, dim, PROCESS)


def _marginal(gp, t):
    """Dense C_t = e^{-t} Gamma (x) Sigma + (1 - e^{-t}) I."""
    p = gp.frames * gp.dim
    return math.exp(-t) * gp.covariance() - math.expm1(-t) * torch.eye(p, dtype=torch.float64)


def _perturbed(gp, delta):
    """A linear score -C_t^{-1/2} (I + delta B) C_t^{-1/2} x, B a fixed dense symmetric
    matrix (not diagonal in the eigenbasis of the data): a relative score error of order
    delta at every t, and a sampler law that is Gaussian with a closed-form covariance."""
    p = gp.frames * gp.dim
    g = torch.randn(p, p, generator=generator(7, "B"), dtype=torch.float64)
    b = (g + g.T) / (2 * p**0.5)

    def matrix(t):
        ev, vec = torch.linalg.eigh(_marginal(gp, t))
        root = (vec / ev.sqrt()) @ vec.T  # C_t^{-1/2}
        return -root @ (torch.eye(p, dtype=torch.float64) + delta * b) @ root

    def score(x, t):  # x: (m, N, d), t: (m,) all equal
        return (x.flatten(1) @ matrix(float(t[0])).T).view_as(x)

    return matrix, score


def test_chain_kl_of_the_default_problem_matches_the_issue_numbers():
    # exp, nu = 1, l = 1, N = 16, d = 4, ar1 0.5: 0.146 at K = 50 and 0.0083 at K = 200
    # (about 365 / K^2), the probability-flow ODE about 5x smaller at equal K.
    gp = GaussianProcessSequences.build("exp", 1.0, 1.0, 16, "ar1", 0.5, 4, PROCESS)
    lam = gp.eigenvalues.flatten()
    assert chain_kl(lam, PROCESS.time_grid(50)) == pytest.approx(0.1460, abs=5e-4)
    assert chain_kl(lam, PROCESS.time_grid(200)) == pytest.approx(0.00832, abs=5e-5)
    ratio = chain_kl(lam, PROCESS.time_grid(50)) / chain_kl(lam, PROCESS.time_grid(50), "ode")
    assert 4 < ratio < 7


@pytest.mark.parametrize("sampler", ["sde", "ode"])
def test_eigen_recursion_equals_the_dense_covariance_recursion(sampler):
    gp = _gp()
    grid = PROCESS.time_grid(30)
    dense = linear_chain_covariance(lambda t: -torch.linalg.inv(_marginal(gp, t)), grid, sampler)
    u = torch.kron(gp.u, gp.v)  # row-major vec: the eigenvectors of Gamma (x) Sigma
    rotated = u.T @ dense @ u
    v = exact_chain_variances(gp.eigenvalues.flatten(), grid, sampler)
    assert torch.allclose(rotated, torch.diag(v), atol=1e-10)
    c_t0 = _marginal(gp, PROCESS.t0)
    assert chain_kl(gp.eigenvalues.flatten(), grid, sampler) == pytest.approx(
        gaussian_kl(dense, c_t0), rel=1e-8
    )


def test_chain_law_matches_the_simulated_sampler():
    gp = _gp()
    grid_steps = 10  # coarse: a discretisation KL of about 0.2, far above the noise
    truth = chain_kl(gp.eigenvalues.flatten(), PROCESS.time_grid(grid_steps))
    x = sample(gp.score, PROCESS, (8192, 5, 2), grid_steps, generator(0, "s"), dtype=torch.float64)
    est, se = wishart_debiased_kl(x.flatten(1), _marginal(gp, PROCESS.t0))
    assert truth > 0.1
    assert abs(est - truth) < 4 * se and se < 0.02 * truth


def test_wishart_bias_matches_simulation_for_any_true_covariance():
    assert wishart_kl_bias(64, 2048) == pytest.approx(0.51323, abs=1e-5)
    p, m, reps = 6, 24, 4000
    a = torch.randn(p, p, generator=generator(0, "w"), dtype=torch.float64)
    w = a @ a.T / p + 0.5 * torch.eye(p, dtype=torch.float64)  # the samples' law
    c = torch.eye(p, dtype=torch.float64) + 0.3  # the reference law
    x = torch.randn(reps, m, p, generator=generator(0, "x"), dtype=torch.float64)
    x = x @ torch.linalg.cholesky(w).T
    kls = torch.tensor([gaussian_kl(second_moment(xi), c) for xi in x])
    expected = gaussian_kl(w, c) + wishart_kl_bias(p, m)
    assert float(kls.mean()) == pytest.approx(expected, abs=3 * float(kls.std()) / reps**0.5)
    assert wishart_kl_bias(p, m) > 0.2 * float(kls.mean())  # the bias is not negligible here


@pytest.mark.slow
def test_crn_kl_recovers_the_closed_form_law_of_a_perturbed_score():
    """20 replicates of m = 1024 pairs: unbiased (plain plug-in is not), SE calibrated."""
    gp = _gp(16, 4)
    steps, m = 25, 1024
    grid = PROCESS.time_grid(steps)
    matrix, score = _perturbed(gp, 0.05)
    cov_y = linear_chain_covariance(matrix, grid)
    u = torch.kron(gp.u, gp.v)
    cov_e = u @ torch.diag(exact_chain_variances(gp.eigenvalues.flatten(), grid)) @ u.T
    truth = gaussian_kl(cov_y, cov_e)
    assert 0.02 < truth < 0.5
    est, ses, plain = [], [], []
    for rep in range(20):
        shape = (m, 16, 4)
        y = sample(score, PROCESS, shape, steps, generator(rep, "c"), dtype=torch.float64)
        e = sample(gp.score, PROCESS, shape, steps, generator(rep, "c"), dtype=torch.float64)
        value, se = crn_kl(y.flatten(1), e.flatten(1), cov_e)
        est.append(value)
        ses.append(se)
        plain.append(gaussian_kl(second_moment(y.flatten(1)), cov_e))
    est, ses, plain = torch.tensor(est), torch.tensor(ses), torch.tensor(plain)
    sd = float(est.std())
    assert float(est.mean()) == pytest.approx(truth, abs=max(4 * sd / 20**0.5, 1e-4))
    assert sd < 0.05 * truth  # no Monte Carlo floor: the noise scales with the KL
    assert 0.5 < float(ses.mean()) / sd < 2  # the jackknife SE has the right size
    assert abs(float(plain.mean()) - truth) > 20 * sd  # the plug-in is biased by ~p^2 / 4m


@pytest.mark.slow
def test_wishart_debiased_kl_is_unbiased_for_a_perturbed_sampler():
    gp = _gp(16, 4)
    steps, m = 25, 1024
    grid = PROCESS.time_grid(steps)
    matrix, score = _perturbed(gp, 0.05)
    truth = gaussian_kl(linear_chain_covariance(matrix, grid), _marginal(gp, PROCESS.t0))
    est, ses = [], []
    for rep in range(20):
        y = sample(score, PROCESS, (m, 16, 4), steps, generator(rep, "w"), dtype=torch.float64)
        value, se = wishart_debiased_kl(y.flatten(1), _marginal(gp, PROCESS.t0))
        est.append(value)
        ses.append(se)
    est, ses = torch.tensor(est), torch.tensor(ses)
    sd = float(est.std())
    assert float(est.mean()) == pytest.approx(truth, abs=4 * sd / 20**0.5)
    assert 0.5 < float(ses.mean()) / sd < 2
    assert wishart_kl_bias(64, m) > 4 * sd / 20**0.5  # the test could see a missing bias


def test_bad_input_and_divergence():
    with pytest.raises(ValueError, match="sampler must be one of sde, ode"):
        chain_kl(torch.ones(3), PROCESS.time_grid(5), "euler")
    with pytest.raises(ValueError, match="decreasing"):
        chain_kl(torch.ones(3), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="lam must be positive"):
        exact_chain_variances(torch.tensor([1.0, 0.0]), PROCESS.time_grid(5))
    with pytest.raises(ValueError, match="need 1 <= p <= m"):
        wishart_kl_bias(10, 5)
    with pytest.raises(ValueError, match="at least 2 samples per group"):
        crn_kl(torch.ones(10, 2), torch.ones(10, 2), torch.eye(2, dtype=torch.float64))
    y = torch.randn(64, 2, dtype=torch.float64)
    bad = y.clone()
    bad[0, 0] = math.nan
    eye = torch.eye(2, dtype=torch.float64)
    assert crn_kl(bad, y, eye) == (math.inf, math.inf)
    assert wishart_debiased_kl(bad, eye) == (math.inf, math.inf)
