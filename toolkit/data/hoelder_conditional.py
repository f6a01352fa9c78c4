"""Conditional densities of known Hoelder smoothness beta, with their exact OU scores [CDM].

y ~ Uniform[0, 1]^{d_y};  x in R^d;
    p(x | y) = phi(x) (1 + a psi_beta(x_1 - m(y))) / Z(y),
    psi_beta(u) = |u|^beta exp(-u^2),  m(y) = mu (2 y_1 - 1),
    Z(y) = 1 + a E_{u ~ N(0, 1)} psi_beta(u - m(y)).
psi_beta is exactly beta-Hoelder at u = 0 (for beta not an even integer). Under the OU
process the phi factor is invariant, so
    p_t(x | y) = phi(x) (1 + a G_t(x_1, y)) / Z(y),
    G_t(x_1, y) = E_{u ~ N(alpha_t x_1, sigma_t^2)} psi_beta(u - m(y)),
    grad log p_t(x | y) = -x + e_1 a dG_t/dx_1 / (1 + a G_t),
    dG_t/dx_1 = (alpha_t / sigma_t) E_z[z psi_beta(alpha_t x_1 + sigma_t z - m(y))].

Quadrature. With u = alpha x_1 + sigma z, z ~ N(0, 1), the integrand psi_beta(sigma (z - z*))
has its kink at z* = (m - alpha x_1) / sigma, where Gauss-Hermite converges slowly. We
integrate over z in [-L, L] (L = 10, phi(L) < 1e-21), split at c = clip(z*, -L, L), with
Gauss-Jacobi rules whose weight |z - c|^beta carries the kink exactly; the rest,
exp(-sigma^2 (z - z*)^2) phi(z) z^k, is entire, so 80 nodes a side give ~1e-13. (When the
kink lies outside [-L, L] the weight sits where phi < 1e-21.) Bin masses for the TV metric
use Gauss-Legendre on the pieces of each bin split at the kink.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.special import roots_jacobi, roots_legendre

from toolkit.diffusion import OUProcess

HALF_WIDTH = 10.0  # z-range of the quadrature: [-L, L]
NODES = 80  # Gauss-Jacobi nodes on each side of the kink
BIN_NODES = 64  # Gauss-Legendre nodes on each piece of a bin


@lru_cache(maxsize=16)
def _jacobi(beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights on [-1, 1] for the weight (1 + x)^beta."""
    return roots_jacobi(NODES, 0.0, beta)


@lru_cache(maxsize=1)
def _legendre() -> tuple[np.ndarray, np.ndarray]:
    return roots_legendre(BIN_NODES)


def _normal_pdf(z: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)


def _normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-z / math.sqrt(2))


@dataclass(frozen=True)
class HoelderConditional:
    """The family p(x | y) above; all tensors float64, batched along the first axis."""

    beta: float
    dim: int = 1
    cond_dim: int = 1
    amplitude: float = 2.0  # a
    shift: float = 1.0  # mu
    process: OUProcess = OUProcess()  # the forward process whose marginals `score` gives

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0 (got {self.beta})")
        if self.dim < 1 or self.cond_dim < 1:
            raise ValueError(f"dim and cond_dim must be >= 1 (got {self.dim}, {self.cond_dim})")
        if self.amplitude < 0:
            raise ValueError(f"amplitude must be >= 0 (got {self.amplitude})")

    # -- the ingredients -------------------------------------------------------------------
    def psi(self, u: torch.Tensor) -> torch.Tensor:
        return u.abs() ** self.beta * torch.exp(-(u**2))

    def psi_max(self) -> float:
        """sup_u psi_beta(u), attained at u^2 = beta / 2."""
        return (self.beta / 2) ** (self.beta / 2) * math.exp(-self.beta / 2)

    def center(self, y: torch.Tensor) -> torch.Tensor:
        """m(y) = mu (2 y_1 - 1): (batch,)."""
        return self.shift * (2 * y[:, 0] - 1)

    def smoothed(
        self, mean: torch.Tensor, scale: torch.Tensor, m: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(E psi(mean + scale z - m), E z psi(mean + scale z - m)) over z ~ N(0, 1): (batch,)."""
        nodes, weights = (
            torch.as_tensor(a, dtype=mean.dtype, device=mean.device) for a in _jacobi(self.beta)
        )
        mean, scale, m = (v.unsqueeze(1) for v in (mean, scale, m))  # (batch, 1)
        kink = (m - mean) / scale
        c = kink.clamp(-HALF_WIDTH, HALF_WIDTH)
        total, first = 0.0, 0.0
        for side in (1.0, -1.0):  # [c, L] and [-L, c]
            length = HALF_WIDTH - side * c  # (batch, 1)
            z = c + side * length * (1 + nodes) / 2  # (batch, nodes)
            dist = (z - kink).abs()
            # psi(scale (z - kink)) phi(z) / |z - c|^beta, times the Jacobi weight's scale
            g = (scale * dist / (z - c).abs()) ** self.beta
            g = g * torch.exp(-((scale * dist) ** 2)) * _normal_pdf(z)
            g = torch.where(length > 0, g, 0.0)  # an empty side (kink clipped to its end)
            w = weights * (length / 2) ** (self.beta + 1)
            total = total + (w * g).sum(1)
            first = first + (w * g * z).sum(1)
        return total, first

    def normaliser(self, y: torch.Tensor) -> torch.Tensor:
        """Z(y) = 1 + a E_{u ~ N(0,1)} psi(u - m(y)): (batch,)."""
        m = self.center(y)
        zeros, ones = torch.zeros_like(m), torch.ones_like(m)
        return 1 + self.amplitude * self.smoothed(zeros, ones, m)[0]

    # -- density, sampling, score ---------------------------------------------------------
    def log_density(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p(x | y): x (batch, d), y (batch, d_y) -> (batch,)."""
        log_phi = -0.5 * (x**2).sum(1) - 0.5 * self.dim * math.log(2 * math.pi)
        bump = 1 + self.amplitude * self.psi(x[:, 0] - self.center(y))
        return log_phi + torch.log(bump) - torch.log(self.normaliser(y))

    def sample_conditions(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """y ~ Uniform[0, 1]^{d_y}: (n, d_y) float64 on the CPU."""
        return torch.rand(n, self.cond_dim, generator=generator, dtype=torch.float64)

    def sample(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One exact draw of x | y for each row of y (CPU): (batch, d), by rejection on x_1.

        Proposal N(0, 1) for x_1, accepted with probability (1 + a psi) / (1 + a sup psi)
        (at least 1 / (1 + a sup psi)); x_2..x_d are N(0, 1) and independent of y.
        """
        batch = y.shape[0]
        m = self.center(y)
        bound = 1 + self.amplitude * self.psi_max()
        x1 = torch.empty(batch, dtype=torch.float64)
        pending = torch.arange(batch)
        while pending.numel():
            prop = torch.randn(pending.numel(), generator=generator, dtype=torch.float64)
            u = torch.rand(pending.numel(), generator=generator, dtype=torch.float64)
            ok = u * bound < 1 + self.amplitude * self.psi(prop - m[pending])
            x1[pending[ok]] = prop[ok]
            pending = pending[~ok]
        rest = torch.randn(batch, self.dim - 1, generator=generator, dtype=torch.float64)
        return torch.cat([x1.unsqueeze(1), rest], dim=1)

    def score(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """grad_x log p_t(x | y): x (batch, d), y (batch, d_y), t (batch,) -> (batch, d)."""
        dtype = x.dtype
        x, y, t = (v.to(torch.float64) for v in (x, y, t))
        alpha, sigma = self.process.alpha(t), self.process.sigma(t)
        g, gz = self.smoothed(alpha * x[:, 0], sigma, self.center(y))
        grad_g = alpha / sigma * gz
        out = -x.clone()
        out[:, 0] += self.amplitude * grad_g / (1 + self.amplitude * g)
        return out.to(dtype)

    # -- bin masses for the TV metric -----------------------------------------------------
    def first_axis_masses(self, edges: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """P(e_k < x_1 < e_{k+1} | y) for sorted edges (bins + 1,): (batch, bins)."""
        nodes, weights = (torch.as_tensor(a, dtype=torch.float64) for a in _legendre())
        m = self.center(y).view(-1, 1, 1)  # (batch, 1, 1)
        finite = edges.clamp(-2 * HALF_WIDTH, 2 * HALF_WIDTH)  # phi psi is nil beyond
        lo, hi = finite[:-1].view(1, -1, 1), finite[1:].view(1, -1, 1)  # (1, bins, 1)
        c = torch.minimum(torch.maximum(m, lo), hi)  # kink clipped into each bin
        bump = 0.0
        for a, b in ((lo, c), (c, hi)):
            u = a + (b - a) * (1 + nodes) / 2  # (batch, bins, nodes)
            f = _normal_pdf(u) * self.psi(u - m)
            bump = bump + (f * weights).sum(-1) * (b - a).squeeze(-1) / 2
        gauss = _normal_cdf(edges[1:]) - _normal_cdf(edges[:-1])  # (bins,)
        return (gauss + self.amplitude * bump) / self.normaliser(y).unsqueeze(1)

    def bin_masses(self, edges: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Masses of the product grid edges^d given y: (batch, bins^d), x_1 the slowest axis."""
        masses = self.first_axis_masses(edges, y)
        gauss = _normal_cdf(edges[1:]) - _normal_cdf(edges[:-1])
        for _ in range(self.dim - 1):
            masses = (masses.unsqueeze(2) * gauss.view(1, 1, -1)).flatten(1)
        return masses


def histogram(x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Empirical masses of samples x: (m, d) on the product grid edges^d: (bins^d,).

    The outer edges should be +-inf (or beyond every sample); x_1 is the slowest axis.
    """
    bins = edges.numel() - 1
    idx = torch.bucketize(x.contiguous(), edges[1:-1].to(x), right=True)  # (m, d) in 0..bins-1
    flat = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for j in range(x.shape[1]):
        flat = flat * bins + idx[:, j]
    counts = torch.bincount(flat, minlength=bins ** x.shape[1])
    return counts.to(torch.float64) / x.shape[0]


def tv_grid(bins: int, half_width: float = 4.0) -> torch.Tensor:
    """Edges -inf, bins - 2 equal cells on [-w, w], +inf: (bins + 1,) float64."""
    inner = torch.linspace(-half_width, half_width, bins - 1, dtype=torch.float64)
    inf = torch.tensor([math.inf], dtype=torch.float64)
    return torch.cat([-inf, inner, inf])
