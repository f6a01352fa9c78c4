"""Distances between estimates and exact ground truths."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from toolkit.diffusion import OUProcess, uniform_times


def squared_errors(
    score_hat: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    score_true: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    process: OUProcess,
    generator: torch.Generator,
    times: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per test point: ||s_hat(x_t, t) - grad log p_t(x_t)||^2 and ||grad log p_t(x_t)||^2.

    x_t = alpha_t x0 + sigma_t eps with eps from `generator`, one time per point: x0
    (batch, ...) exact data, times (batch,). Returns two (batch,) tensors."""
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64).to(x0)
    xt = process.perturb(x0, times, eps)
    t = times.to(x0)
    with torch.no_grad():
        truth = score_true(xt, t)
        diff = ((score_hat(xt, t) - truth) ** 2).flatten(1).sum(1)
        norm = (truth**2).flatten(1).sum(1)
    return diff, norm


def score_error(
    score_hat: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    score_true: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    process: OUProcess,
    generator: torch.Generator,
    times: torch.Tensor | None = None,
) -> tuple[float, float]:
    """Score error R and its relative version over x_t ~ p_t.

    R = E ||s_hat(X_t, t) - grad log p_t(X_t)||^2 and R / E ||grad log p_t(X_t)||^2, with
    one time per sample: t ~ Uniform[t0, T] (the time average of R_t by Monte Carlo), or
    the given `times`: (batch,) (e.g. a fixed t for R_t). x0: (batch, ...) exact data.
    """
    if times is None:
        times = uniform_times(process, x0.shape[0], generator)
    diff, norm = squared_errors(score_hat, score_true, x0, process, generator, times)
    diff, norm = diff.mean(), norm.mean()
    return float(diff), float(diff / norm)


def log_uniform_design(
    process: OUProcess, size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Times for the uniform time average of R_t, drawn where R_t is large.

    R = (1/(T - t0)) int R_t dt is dominated by small t (40-90% of it from t < 0.1 on the
    conditional-diffusion problem). Drawing log t uniformly, one time per stratum of
    log-width log(T/t0)/size, and weighting by the ratio of densities
    w(t) = t ln(T/t0) / (T - t0) estimates the same average with far less noise.
    Returns (times, weights), both (size,) float64; E w = 1."""
    span = math.log(process.horizon / process.t0)
    u = (torch.arange(size) + torch.rand(size, generator=generator, dtype=torch.float64)) / size
    times = process.t0 * torch.exp(span * u)
    return times, times * span / (process.horizon - process.t0)


def weighted_score_error(
    score_hat: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    score_true: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    process: OUProcess,
    generator: torch.Generator,
    times: torch.Tensor,
    weights: torch.Tensor,
) -> dict[str, float]:
    """The importance-weighted time average of R_t (see log_uniform_design): R, R / E
    ||grad log p_t||^2 and the standard error of R (of i.i.d. draws: stratification only
    makes the true error smaller)."""
    diff, norm = squared_errors(score_hat, score_true, x0, process, generator, times)
    w = weights.to(diff)
    terms = w * diff
    error = float(terms.mean())
    return {
        "score_error": error,
        "rel_score_error": error / float((w * norm).mean()),
        "score_error_se": float(terms.std() / math.sqrt(terms.numel())),
    }


# --- Distribution and attention metrics for Gaussian data (st-dit) ---------------------------


def second_moment(x: torch.Tensor) -> torch.Tensor:
    """Empirical covariance about the known zero mean: x (m, k) -> (k, k) float64."""
    x = x.to(torch.float64)
    return x.T @ x / x.shape[0]


def gaussian_kl(cov_hat: torch.Tensor, cov: torch.Tensor) -> float:
    """KL(N(0, cov_hat) || N(0, cov)) = (tr(cov^-1 cov_hat) - k - log det(cov^-1 cov_hat)) / 2.

    Infinite when cov_hat is singular (fewer samples than dimensions) or not finite."""
    if not torch.isfinite(cov_hat).all():
        return math.inf
    k = cov.shape[0]
    chol = torch.linalg.cholesky(cov.to(torch.float64))
    # W = L^-1 cov_hat L^-T has the eigenvalues of cov^-1 cov_hat.
    a = torch.linalg.solve_triangular(chol, cov_hat.to(torch.float64), upper=False)
    w = torch.linalg.solve_triangular(chol, a.T, upper=False)
    ev = torch.linalg.eigvalsh((w + w.T) / 2)
    if ev.min() <= 0:
        return math.inf
    return float(0.5 * (ev.sum() - k - ev.log().sum()))


def bures_wasserstein(cov_hat: torch.Tensor, cov: torch.Tensor) -> float:
    """W2 between N(0, cov_hat) and N(0, cov):
    sqrt(tr cov + tr cov_hat - 2 tr (cov^1/2 cov_hat cov^1/2)^1/2); infinite if cov_hat is
    not finite."""
    if not torch.isfinite(cov_hat).all():
        return math.inf
    cov, cov_hat = cov.to(torch.float64), cov_hat.to(torch.float64)
    ev, vec = torch.linalg.eigh(cov)
    root = vec @ torch.diag(ev.clamp_min(0).sqrt()) @ vec.T
    middle = torch.linalg.eigvalsh(root @ cov_hat @ root).clamp_min(0).sqrt().sum()
    return math.sqrt(max(float(cov.trace() + cov_hat.trace() - 2 * middle), 0.0))


def relative_error(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    """||estimate - truth||_2 / ||truth||_2 over all entries."""
    truth = truth.to(torch.float64)
    return float((estimate.to(torch.float64) - truth).norm() / truth.norm())


def attention_alignment(maps: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Pearson and Spearman correlation of each map with `target` over entries i != j.

    maps: (layers, heads, N, N) mean attention matrices; target: (N, N), e.g. Gamma.
    Returns the best (max over layers and heads) and mean of each correlation. Spearman
    uses average ranks, since a Toeplitz target has ties."""
    from scipy.stats import pearsonr, spearmanr

    n = target.shape[-1]
    off = ~torch.eye(n, dtype=torch.bool)
    y = target[off].double().cpu().numpy()
    flat = maps.reshape(-1, n, n)[:, off].double().cpu().numpy()  # (layers*heads, N(N-1))
    pearson = [pearsonr(a, y).statistic if a.std() > 0 else 0.0 for a in flat]
    spearman = [spearmanr(a, y).statistic if a.std() > 0 else 0.0 for a in flat]
    return {
        "attn_pearson_best": float(max(pearson)),
        "attn_pearson_mean": float(sum(pearson) / len(pearson)),
        "attn_spearman_best": float(max(spearman)),
        "attn_spearman_mean": float(sum(spearman) / len(spearman)),
    }
