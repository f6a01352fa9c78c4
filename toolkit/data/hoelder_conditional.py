"""Conditional densities of known Hoelder smoothness beta, with their exact OU scores [CDM].

Two families: HoelderConditional (one fixed kinked bump, p(x | y) ∝ phi(x) (1 + a
psi_beta(x_1 - m(y))), psi_beta(u) = |u|^beta exp(-u^2): the upper-bound experiments) and
HardConditional (the minimax lower-bound family, n-dependent Gaussian bumps with random
signs). Densities, samplers, OU scores and TV bin masses are exact: closed form, or a
kink-aware Gauss-Jacobi quadrature (~1e-13).

Derivations and the quadrature: docs/studies/conditional-diffusion.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
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


def _rejection_on_first_axis(
    factor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    bound: float,
    batch: int,
    dim: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Exact draws from phi(x) factor(x_1) / Z, one per row: (batch, dim) float64 (CPU).

    x_1 is proposed from N(0, 1) and accepted with probability factor(x_1, rows) / bound
    (rows: the indices of the rows still pending, for a factor that depends on y); the
    other coordinates are N(0, 1)."""
    x1 = torch.empty(batch, dtype=torch.float64)
    pending = torch.arange(batch)
    while pending.numel():
        prop = torch.randn(pending.numel(), generator=generator, dtype=torch.float64)
        u = torch.rand(pending.numel(), generator=generator, dtype=torch.float64)
        ok = u * bound < factor(prop, pending)
        x1[pending[ok]] = prop[ok]
        pending = pending[~ok]
    rest = torch.randn(batch, dim - 1, generator=generator, dtype=torch.float64)
    return torch.cat([x1.unsqueeze(1), rest], dim=1)


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
        m = self.center(y)
        bound = 1 + self.amplitude * self.psi_max()

        def factor(x1: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return 1 + self.amplitude * self.psi(x1 - m[rows])

        return _rejection_on_first_axis(factor, bound, y.shape[0], self.dim, generator)

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

    def density(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """p_t(x | y) = phi(x) (1 + a G_t(x_1, y)) / Z(y), G_0 = psi: x (batch, d), y (batch,
        d_y), t (batch,) -> (batch,)."""
        dtype = x.dtype
        x, y, t = (v.to(torch.float64) for v in (x, y, t))
        alpha, sigma = self.process.alpha(t), self.process.sigma(t)
        m = self.center(y)
        g, _ = self.smoothed(alpha * x[:, 0], torch.where(t > 0, sigma, 1.0), m)
        g = torch.where(t > 0, g, self.psi(x[:, 0] - m))  # sigma = 0: no smoothing
        phi = torch.exp(-0.5 * (x**2).sum(1)) / (2 * math.pi) ** (self.dim / 2)
        return (phi * (1 + self.amplitude * g) / self.normaliser(y)).to(dtype)

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


def _lattice_sum(ratio: float) -> float:
    """Theta(r) = sum_{m in Z} exp(-m^2 / (2 r^2)) = sup_u sum_m exp(-(u - m)^2 / (2 r^2)).

    The sup of a Gaussian lattice sum is at the lattice points (its Fourier coefficients are
    all positive), so Theta bounds the sum over any finite set of centres spaced 1 apart.
    """
    m = np.arange(-math.ceil(12 * ratio) - 1, math.ceil(12 * ratio) + 2)
    return float(np.exp(-(m**2) / (2 * ratio**2)).sum())


@dataclass(frozen=True)
class HardConditional:
    """The minimax lower-bound family for sample size n and smoothness beta [CDM].

    p(x | y) = phi(x) (1 + A sum_k eps_k psi_k(x_1, y)) / Z(y), A = c h^beta, Gaussian bumps
    psi_k of width w = width_ratio h on a grid of side h = n^{-1/(d + d_y + 2 beta)} over
    [-half_width, half_width] x [0, 1]^{d_y}, signs eps_k = +-1 from `seed`; c is as large as
    keeps the factor >= floor for every h <= 1. Only x_1 is perturbed. Density, OU score and
    sampling are exact (Gaussian products; no truncation of the bump sum).

    Derivation: docs/studies/conditional-diffusion.md.
    """

    beta: float
    n: float  # the sample size the family is built for (>= 1, so h <= 1)
    dim: int = 1
    cond_dim: int = 1
    seed: int = 0  # of the signs
    process: OUProcess = OUProcess()
    half_width: float = 2.0  # L: the x_1-centres fill [-L, L]
    width_ratio: float = 0.5  # r = w / h
    floor: float = 0.1  # the factor 1 + A sum eps psi stays >= floor
    # eps: (K_x, K_y, ..., K_y) float64, d_y axes of y-centres; a function of the fields above
    signs: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0 (got {self.beta})")
        if not self.n >= 1:
            raise ValueError(f"n must be >= 1 (got {self.n})")
        if self.dim < 1 or self.cond_dim < 1:
            raise ValueError(f"dim and cond_dim must be >= 1 (got {self.dim}, {self.cond_dim})")
        if not self.half_width > 0:
            raise ValueError(f"half_width must be > 0 (got {self.half_width})")
        if not self.width_ratio > 0:
            raise ValueError(f"width_ratio must be > 0 (got {self.width_ratio})")
        if not 0 < self.floor < 1:
            raise ValueError(f"floor must be in (0, 1) (got {self.floor})")
        shape = (self.x_centres.numel(),) + (self.y_centres.numel(),) * self.cond_dim
        g = torch.Generator().manual_seed(self.seed)
        eps = 2 * torch.randint(0, 2, shape, generator=g) - 1
        object.__setattr__(self, "signs", eps.to(torch.float64))

    # -- the constants ---------------------------------------------------------------------
    @property
    def bump_scale(self) -> float:
        """h = n^{-1/(d + d_y + 2 beta)}: the cell side and the spacing of the centres."""
        return float(self.n) ** (-1 / (self.dim + self.cond_dim + 2 * self.beta))

    @property
    def width(self) -> float:
        """w = r h, the standard deviation of each Gaussian bump (in x_1 and in each y_j)."""
        return self.width_ratio * self.bump_scale

    @property
    def constant(self) -> float:
        """c = (1 - floor) / Theta(r)^{1 + d_y}, independent of n."""
        return (1 - self.floor) / _lattice_sum(self.width_ratio) ** (1 + self.cond_dim)

    @property
    def amplitude(self) -> float:
        """A = c h^beta, the height of one bump in the factor."""
        return self.constant * self.bump_scale**self.beta

    @staticmethod
    def _cell_centres(lo: float, hi: float, h: float) -> torch.Tensor:
        """Centres of the floor((hi - lo) / h) cells of side h that fit in [lo, hi], centred."""
        k = max(1, math.floor((hi - lo) / h + 1e-9))
        return (lo + hi) / 2 + (torch.arange(k, dtype=torch.float64) - (k - 1) / 2) * h

    @property
    def x_centres(self) -> torch.Tensor:
        """a_i: (K_x,)."""
        return self._cell_centres(-self.half_width, self.half_width, self.bump_scale)

    @property
    def y_centres(self) -> torch.Tensor:
        """b_j along each y axis: (K_y,)."""
        return self._cell_centres(0.0, 1.0, self.bump_scale)

    # -- the ingredients -------------------------------------------------------------------
    def _weights(self, y: torch.Tensor) -> torch.Tensor:
        """v_i(y) = sum_j eps_ij g_j(y), j over the product grid of y-centres: (batch, K_x)."""
        b = self.y_centres.to(y)
        g = torch.ones(y.shape[0], 1, dtype=y.dtype, device=y.device)
        for j in range(self.cond_dim):  # the Kronecker product, first axis slowest like eps
            gj = torch.exp(-((y[:, j : j + 1] - b) ** 2) / (2 * self.width**2))  # (batch, K_y)
            g = (g.unsqueeze(2) * gj.unsqueeze(1)).flatten(1)
        return g @ self.signs.to(y).flatten(1).T

    def _log_mass(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(log C_i, mu_i, tau^2) of phi(x_1) exp(-(x_1 - a_i)^2 / (2 w^2)) = C_i N(mu_i, tau^2)."""
        a, w2 = self.x_centres, self.width**2
        log_c = 0.5 * math.log(w2 / (1 + w2)) - a**2 / (2 * (1 + w2))
        return log_c, a / (1 + w2), w2 / (1 + w2)

    def _ratios(self, x1: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """R_i(x_1, t) and dR_i/dx_1: x1, t (batch,) -> (batch, K_x) each."""
        log_c, mu, tau2 = self._log_mass()
        log_c, mu = log_c.to(x1), mu.to(x1)  # (K_x,)
        alpha = self.process.alpha(t).unsqueeze(1)  # (batch, 1)
        var = self.process.alpha2(t).unsqueeze(1) * tau2 + self.process.sigma2(t).unsqueeze(1)
        x1 = x1.unsqueeze(1)
        u = x1 - alpha * mu  # (batch, K_x)
        r = torch.exp(log_c - 0.5 * torch.log(var) - u**2 / (2 * var) + x1**2 / 2)
        return r, r * (x1 - u / var)

    def factor(self, x1: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """F_t(x_1, y) = p_t(x | y) Z(y) / phi(x): x1 (batch,), y (batch, d_y), t (batch,)."""
        r, _ = self._ratios(x1, t)
        return 1 + self.amplitude * (r * self._weights(y)).sum(1)

    def normaliser(self, y: torch.Tensor) -> torch.Tensor:
        """Z(y) = 1 + A sum_i C_i v_i(y): (batch,)."""
        c = torch.exp(self._log_mass()[0]).to(y)
        return 1 + self.amplitude * self._weights(y) @ c

    def min_factor(self, points_per_width: int = 8) -> float:
        """min F_0 over a grid of spacing w / points_per_width on x_1 in [a_1 - 4w, a_K + 4w]
        (beyond, F_0 is within A e^{-8} Theta^{d_y} of 1) and y in [0, 1]^{d_y}; >= floor by
        the choice of c. For d_y >= 2 and small h the grid is large (columns are chunked)."""
        step = self.width / points_per_width
        a, b = self.x_centres, self.y_centres
        lo, hi = float(a[0]) - 4 * self.width, float(a[-1]) + 4 * self.width
        x1 = torch.arange(lo, hi + step, step, dtype=torch.float64)
        ys = torch.linspace(0, 1, math.ceil(1 / step) + 1, dtype=torch.float64)
        psi_x = torch.exp(-((x1.unsqueeze(1) - a) ** 2) / (2 * self.width**2))  # (grid, K_x)
        g_y = torch.exp(-((ys.unsqueeze(1) - b) ** 2) / (2 * self.width**2))  # (grid, K_y)
        v = self.signs
        for _ in range(self.cond_dim):  # contract each y axis with its bumps on the grid
            v = torch.tensordot(v, g_y, dims=([1], [1]))  # axis 1 -> a grid axis at the end
        v = v.flatten(1)  # (K_x, grid^{d_y})
        chunk = max(1, (1 << 24) // x1.numel())
        low = min(float((psi_x @ v[:, i : i + chunk]).min()) for i in range(0, v.shape[1], chunk))
        return 1 + self.amplitude * low

    # -- density, sampling, score ---------------------------------------------------------
    def density(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """p_t(x | y): x (batch, d), y (batch, d_y), t (batch,) -> (batch,)."""
        dtype = x.dtype
        x, y, t = (v.to(torch.float64) for v in (x, y, t))
        phi = torch.exp(-0.5 * (x**2).sum(1)) / (2 * math.pi) ** (self.dim / 2)
        return (phi * self.factor(x[:, 0], y, t) / self.normaliser(y)).to(dtype)

    def log_density(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p(x | y) at t = 0: x (batch, d), y (batch, d_y) -> (batch,)."""
        log_phi = -0.5 * (x**2).sum(1) - 0.5 * self.dim * math.log(2 * math.pi)
        f = self.factor(x[:, 0], y, torch.zeros_like(x[:, 0]))
        return log_phi + torch.log(f) - torch.log(self.normaliser(y))

    def sample_conditions(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """y ~ Uniform[0, 1]^{d_y}: (n, d_y) float64 on the CPU."""
        return torch.rand(n, self.cond_dim, generator=generator, dtype=torch.float64)

    def sample(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One exact draw of x | y for each row of y (CPU): (batch, d), by rejection on x_1.

        Proposal N(0, 1) for x_1, accepted with probability F_0(x_1, y) / (1 + A Theta^{1+d_y})
        (at least 1 / (2 - floor)); x_2..x_d are N(0, 1) and independent of y.
        """
        bound = 1 + self.amplitude * _lattice_sum(self.width_ratio) ** (1 + self.cond_dim)

        def factor(x1: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return self.factor(x1, y[rows], torch.zeros_like(x1))

        return _rejection_on_first_axis(factor, bound, y.shape[0], self.dim, generator)

    def score(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """grad_x log p_t(x | y): x (batch, d), y (batch, d_y), t (batch,) -> (batch, d)."""
        dtype = x.dtype
        x, y, t = (v.to(torch.float64) for v in (x, y, t))
        r, dr = self._ratios(x[:, 0], t)
        v = self._weights(y)
        out = -x.clone()
        out[:, 0] += self.amplitude * (dr * v).sum(1) / (1 + self.amplitude * (r * v).sum(1))
        return out.to(dtype)

    @staticmethod
    def base_score(x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The bump-blind score, that of phi under the OU process: -x (batch, d)."""
        return -x

    # -- bin masses for the TV metric -----------------------------------------------------
    def first_axis_masses(self, edges: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """P(e_k < x_1 < e_{k+1} | y) for sorted edges (bins + 1,), in closed form:
        (Phi(e) + A sum_i v_i(y) C_i Phi((e - mu_i) / tau)) / Z(y), differenced: (batch, bins)."""
        log_c, mu, tau2 = self._log_mass()
        edges = edges.to(torch.float64)
        bump = _normal_cdf((edges.unsqueeze(1) - mu) / math.sqrt(tau2))  # (bins + 1, K_x)
        bump = (bump[1:] - bump[:-1]) * torch.exp(log_c)  # (bins, K_x)
        gauss = _normal_cdf(edges[1:]) - _normal_cdf(edges[:-1])  # (bins,)
        masses = gauss + self.amplitude * self._weights(y) @ bump.T  # (batch, bins)
        return masses / self.normaliser(y).unsqueeze(1)

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
