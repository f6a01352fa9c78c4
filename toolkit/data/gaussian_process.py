"""Gaussian-process sequences with separable covariance Gamma (x) Sigma [DiT-GP].

A sequence X in R^{N x d} (N frames, d features per frame) has vec(X) ~ N(0, Gamma (x) Sigma)
(row-major vec: Cov(X_ia, X_jb) = Gamma_ij Sigma_ab), Gamma from a temporal kernel (exp or
poly, `temporal_covariance`) and Sigma spatial (ar1 or identity, `spatial_covariance`);
out-of-range parameters raise ValueError. GaussianProcessSequences samples exactly and
gives the exact OU score through the eigendecompositions of Gamma and Sigma, never an
(Nd) x (Nd) solve; temporal_correlation is the empirical gamma_hat(h).

Kernels, positive definiteness and the eigenbasis formulas: docs/studies/st-dit.md.
"""

from __future__ import annotations

import math

import torch

from toolkit.diffusion import OUProcess

KERNELS = ("exp", "poly")
SPATIAL = ("ar1", "identity")


def temporal_covariance(kernel: str, nu: float, length: float, frames: int) -> torch.Tensor:
    """Gamma_ij = gamma(|i - j|) for i, j < frames: (frames, frames) float64."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1 (got {frames})")
    if not length > 0 or not math.isfinite(length):
        raise ValueError(f"length l must be a finite number > 0 (got {length})")
    h = torch.arange(frames, dtype=torch.float64)
    lag = (h[:, None] - h[None, :]).abs()
    if kernel == "exp":
        if not 0 < nu <= 2:
            raise ValueError(f"nu must be in (0, 2] for the exp kernel (got {nu})")
        return torch.exp(-(lag**nu) / length)
    if kernel == "poly":
        if not nu > 0 or not math.isfinite(nu):
            raise ValueError(f"nu must be a finite number > 0 for the poly kernel (got {nu})")
        return (1 + lag / length) ** (-nu)
    raise ValueError(f"kernel must be one of {', '.join(KERNELS)} (got {kernel!r})")


def spatial_covariance(spatial: str, rho: float, dim: int) -> torch.Tensor:
    """Sigma: ar1 (Sigma_ab = rho^|a-b|) or identity: (dim, dim) float64."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1 (got {dim})")
    if spatial == "identity":
        return torch.eye(dim, dtype=torch.float64)
    if spatial == "ar1":
        if not -1 < rho < 1:
            raise ValueError(f"rho must be in (-1, 1) for the ar1 spatial covariance (got {rho})")
        a = torch.arange(dim, dtype=torch.float64)
        return rho ** (a[:, None] - a[None, :]).abs()
    raise ValueError(f"spatial must be one of {', '.join(SPATIAL)} (got {spatial!r})")


class GaussianProcessSequences:
    """The law N(0, Gamma (x) Sigma) on (frames, dim) sequences, its OU marginals and scores."""

    def __init__(
        self, gamma: torch.Tensor, sigma: torch.Tensor, process: OUProcess | None = None
    ) -> None:
        self.process = process or OUProcess()  # the forward process of the marginals
        self.gamma = gamma.to(torch.float64)  # (N, N)
        self.sigma = sigma.to(torch.float64)  # (d, d)
        self.g, self.u = torch.linalg.eigh(self.gamma)  # (N,), (N, N)
        self.s, self.v = torch.linalg.eigh(self.sigma)  # (d,), (d, d)
        if self.g.min() <= 0 or self.s.min() <= 0:
            raise ValueError(
                "covariance is not positive definite "
                f"(smallest eigenvalues {self.g.min():.3g}, {self.s.min():.3g})"
            )

    @classmethod
    def build(
        cls,
        kernel: str,
        nu: float,
        length: float,
        frames: int,
        spatial: str = "ar1",
        rho: float = 0.5,
        dim: int = 4,
        process: OUProcess | None = None,
    ) -> GaussianProcessSequences:
        return cls(
            temporal_covariance(kernel, nu, length, frames),
            spatial_covariance(spatial, rho, dim),
            process,
        )

    @property
    def frames(self) -> int:
        return self.gamma.shape[0]

    @property
    def dim(self) -> int:
        return self.sigma.shape[0]

    @property
    def eigenvalues(self) -> torch.Tensor:
        """Eigenvalues g_i s_a of Gamma (x) Sigma in the rotated basis: (N, d)."""
        return self.g[:, None] * self.s[None, :]

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """Y = U^T X V for x: (..., N, d); Cov(Y) is diagonal."""
        u, v = self.u.to(x), self.v.to(x)
        return u.T @ x @ v

    def unrotate(self, y: torch.Tensor) -> torch.Tensor:
        """X = U Y V^T, the inverse of `rotate`."""
        u, v = self.u.to(y), self.v.to(y)
        return u @ y @ v.T

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n exact sequences: (n, N, d) float64 on the CPU."""
        z = torch.randn(n, self.frames, self.dim, generator=generator, dtype=torch.float64)
        return self.unrotate(self.eigenvalues.sqrt() * z)

    def marginal_eigenvalues(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_t^2 g_i s_a + sigma_t^2 for t: (batch,): (batch, N, d)."""
        t = t.to(torch.float64).view(-1, 1, 1)
        alpha2, sigma2 = self.process.alpha2(t), self.process.sigma2(t)
        return alpha2 * self.eigenvalues.to(t.device) + sigma2

    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Exact grad log p_t(x) of the OU marginal at x: (batch, N, d), t: (batch,)."""
        lam = self.marginal_eigenvalues(t).to(x)
        return -self.unrotate(self.rotate(x) / lam)

    def log_density(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log p_t(x): (batch,), for x: (batch, N, d), t: (batch,)."""
        lam = self.marginal_eigenvalues(t).to(x)
        quad = (self.rotate(x) ** 2 / lam).flatten(1).sum(1)
        logdet = lam.log().flatten(1).sum(1)
        return -0.5 * (quad + logdet + lam[0].numel() * math.log(2 * math.pi))

    def covariance(self) -> torch.Tensor:
        """The dense (Nd, Nd) covariance Gamma (x) Sigma (for small problems and tests)."""
        return torch.kron(self.gamma, self.sigma)


def temporal_correlation(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Empirical gamma_hat(h), h = 0..N-1, of zero-mean sequences x: (m, N, d).

    gamma_hat(h) = mean over samples s, features a and frame pairs (i, i + h) of
    X_sia X_s(i+h)a / Sigma_aa, an unbiased estimate of gamma(h)."""
    x = x.to(torch.float64) / sigma.diagonal().to(x.device, torch.float64).sqrt()
    m = torch.einsum("sia,sja->ij", x, x) / (x.shape[0] * x.shape[2])  # (N, N)
    return torch.stack([m.diagonal(h).mean() for h in range(m.shape[0])])
