"""KL divergences of Gaussian laws without a Monte Carlo floor, for zero-mean samples.

Three tools, none knowing any study: the exact law of the exponential-integrator sampler
driven by an exact linear score (`linear_chain_covariance`; per eigenvalue
`exact_chain_variances`, `chain_kl`); the exact Wishart bias of the plug-in KL
(`wishart_kl_bias`, `wishart_debiased_kl`); and the common-random-number KL of two chains
driven by the same noise, debiased to second order (`crn_kl`). Standard errors are
delete-a-group jackknife over `groups` contiguous groups of samples.

Derivations: docs/studies/st-dit.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

SAMPLERS = ("sde", "ode")


def _check_grid(grid: torch.Tensor) -> torch.Tensor:
    grid = torch.as_tensor(grid, dtype=torch.float64).flatten()
    if grid.numel() < 2 or not bool((grid[1:] < grid[:-1]).all()) or grid[-1] <= 0:
        raise ValueError("grid must hold at least 2 positive times, decreasing (T to t0)")
    return grid


def _check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)} (got {sampler!r})")


def exact_chain_variances(
    lam: torch.Tensor, grid: torch.Tensor, sampler: str = "sde"
) -> torch.Tensor:
    """Per-direction variances v of the sampler driven by the exact score of N(0, diag(lam)).

    lam: (...,) eigenvalues of the data covariance (at t = 0); grid: (K + 1,) the sampler's
    times from T down to t0 (e.g. OUProcess.time_grid(K)). Returns v: lam's shape, float64.
    """
    _check_sampler(sampler)
    grid = _check_grid(grid)
    lam = torch.as_tensor(lam, dtype=torch.float64)
    if not bool((lam > 0).all()):
        raise ValueError("lam must be positive (the eigenvalues of a covariance)")
    v = torch.ones_like(lam)
    pull = 2.0 if sampler == "sde" else 1.0
    for t_now, t_next in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        h = t_now - t_next
        lam_t = math.exp(-t_now) * lam - math.expm1(-t_now)
        a = math.exp(h / 2) - pull * math.expm1(h / 2) / lam_t
        v = a**2 * v + (math.expm1(h) if sampler == "sde" else 0.0)
    return v


def chain_kl(lam: torch.Tensor, grid: torch.Tensor, sampler: str = "sde") -> float:
    """KL(law of the exact-score sampler || N(0, diag lam(t0))), exactly (docs/studies/st-dit.md):
    the discretisation error of `sampler` on `grid`, t0 = grid[-1]."""
    grid = _check_grid(grid)
    lam = torch.as_tensor(lam, dtype=torch.float64)
    v = exact_chain_variances(lam, grid, sampler)
    t0 = float(grid[-1])
    r = v / (math.exp(-t0) * lam - math.expm1(-t0))
    return float(0.5 * (r - 1 - r.log()).sum())


def linear_chain_covariance(
    score_matrix: Callable[[float], torch.Tensor], grid: torch.Tensor, sampler: str = "sde"
) -> torch.Tensor:
    """Covariance of the sampler driven by the linear score s(x, t) = S_t x, from N(0, I).

    score_matrix(t) -> S_t: (p, p); grid: (K + 1,) from T down to t0. Dense: (p, p) float64.
    """
    _check_sampler(sampler)
    grid = _check_grid(grid)
    cov = None
    pull = 2.0 if sampler == "sde" else 1.0
    for t_now, t_next in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        h = t_now - t_next
        s = torch.as_tensor(score_matrix(t_now), dtype=torch.float64)
        if cov is None:
            cov = torch.eye(s.shape[0], dtype=torch.float64)
        a = math.exp(h / 2) * torch.eye(s.shape[0], dtype=torch.float64)
        a = a + pull * math.expm1(h / 2) * s
        cov = a @ cov @ a.T + (math.expm1(h) if sampler == "sde" else 0.0) * torch.eye(
            s.shape[0], dtype=torch.float64
        )
    return cov


def wishart_kl_bias(p: int, m: int) -> float:
    """b(p, m) = E KL(N(0, S) || N(0, W)) for S the second moment of m draws of N(0, W)
    in p dimensions: 1/2 [p log(m / 2) - sum_{i=1..p} digamma((m - i + 1) / 2)]."""
    if p < 1 or m < p:
        raise ValueError(f"need 1 <= p <= m (got p={p}, m={m}): the KL is infinite")
    i = torch.arange(1, p + 1, dtype=torch.float64)
    return float(0.5 * (p * math.log(m / 2) - torch.special.digamma((m - i + 1) / 2).sum()))


def _whiten(x: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """L^{-1} x_i for cov = L L^T: x (m, p) -> (m, p) float64."""
    chol = torch.linalg.cholesky(cov.to(torch.float64))
    return torch.linalg.solve_triangular(chol, x.to(torch.float64).T, upper=False).T


def _kl_to_identity(w: torch.Tensor) -> tuple[float, torch.Tensor | None]:
    """KL(N(0, w) || N(0, I)) and w^{-1}; (inf, None) when w is not positive definite."""
    ev, vec = torch.linalg.eigh((w + w.T) / 2)
    if not bool(torch.isfinite(ev).all()) or ev.min() <= 0:
        return math.inf, None
    return float(0.5 * (ev - 1 - ev.log()).sum()), (vec / ev) @ vec.T


def _jackknife(values: list[float], full: float) -> float:
    """Delete-a-group jackknife standard error from the leave-one-group-out values."""
    if not math.isfinite(full) or not all(math.isfinite(v) for v in values):
        return math.inf
    v = torch.tensor(values, dtype=torch.float64)
    g = v.numel()
    return float(((g - 1) / g * ((v - v.mean()) ** 2).sum()).sqrt())


def _groups(m: int, groups: int) -> list[torch.Tensor]:
    if groups < 2 or m < 2 * groups:
        raise ValueError(f"need groups >= 2 and at least 2 samples per group (got m={m})")
    return list(torch.arange(m).chunk(groups))


def _crn_estimate(a: torch.Tensor, b: torch.Tensor) -> float:
    """The debiased KL(I + mean(a a^T - b b^T) || I) of whitened paired samples a, b: (m, p)."""
    m = a.shape[0]
    zbar = (a.T @ a - b.T @ b) / m  # (p, p)
    kl, inv = _kl_to_identity(torch.eye(a.shape[1], dtype=torch.float64) + zbar)
    if inv is None:
        return math.inf
    # sum_i tr(A D_i A D_i), D_i = Z_i - Zbar, Z_i = a_i a_i^T - b_i b_i^T, A = W_hat^{-1}:
    # tr(A Z_i A Z_i) = (a^T A a)^2 + (b^T A b)^2 - 2 (a^T A b)^2; the centring removes
    # m tr((A Zbar)^2).
    aa, bb = a @ inv, b @ inv
    qa, qb, qab = (aa * a).sum(1), (bb * b).sum(1), (aa * b).sum(1)
    spread = (qa**2 + qb**2 - 2 * qab**2).sum() - m * ((inv @ zbar) ** 2).sum()
    return kl - float(spread) / (4 * m * (m - 1))


def crn_kl(
    y: torch.Tensor, e: torch.Tensor, cov_e: torch.Tensor, groups: int = 8
) -> tuple[float, float]:
    """Debiased KL(N(0, E y y^T) || N(0, cov_e)) from common-random-number pairs.

    y, e: (m, p) paired draws of two chains sharing their randomness (row i of each from
    the same start and noise), e's law having covariance cov_e: (p, p) (docs/studies/st-dit.md).
    Returns (estimate, jackknife standard error over `groups` groups); (inf, inf) when the
    estimated covariance is not positive definite or the samples are not finite.
    """
    if y.shape != e.shape or y.dim() != 2 or cov_e.shape != (y.shape[1], y.shape[1]):
        raise ValueError(
            f"need y, e: (m, p) and cov_e: (p, p) (got {tuple(y.shape)}, {tuple(e.shape)}, "
            f"{tuple(cov_e.shape)})"
        )
    parts = _groups(y.shape[0], groups)
    if not (torch.isfinite(y).all() and torch.isfinite(e).all()):
        return math.inf, math.inf
    a, b = _whiten(y, cov_e), _whiten(e, cov_e)
    full = _crn_estimate(a, b)
    keep = torch.ones(y.shape[0], dtype=torch.bool)
    values = []
    for part in parts:
        keep[part] = False
        values.append(_crn_estimate(a[keep], b[keep]))
        keep[part] = True
    return full, _jackknife(values, full)


def wishart_debiased_kl(x: torch.Tensor, cov: torch.Tensor, groups: int = 8) -> tuple[float, float]:
    """KL(N(0, S) || N(0, cov)) - b(p, m), S = x^T x / m, with its jackknife standard error.

    Unbiased for KL(N(0, E x x^T) || N(0, cov)) when the rows of x: (m, p) are Gaussian
    (docs/studies/st-dit.md). (inf, inf) when S is singular or x is not finite."""
    m, p = x.shape
    parts = _groups(m, groups)
    if not torch.isfinite(x).all():
        return math.inf, math.inf
    z = _whiten(x, cov)

    def estimate(rows: torch.Tensor) -> float:
        k = rows.shape[0]
        return _kl_to_identity(rows.T @ rows / k)[0] - wishart_kl_bias(p, k)

    full = estimate(z)
    keep = torch.ones(m, dtype=torch.bool)
    values = []
    for part in parts:
        keep[part] = False
        values.append(estimate(z[keep]))
        keep[part] = True
    return full, _jackknife(values, full)
