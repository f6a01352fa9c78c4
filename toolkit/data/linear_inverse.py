"""A linear inverse problem with a Hoelder prior: exact posterior, sampler and OU score [CDM].

x in R (d = 1) has the prior p(x) ∝ phi(x) (1 + A psi_beta(x - c)) (the kink family of
toolkit.data.hoelder_conditional without its condition) and is observed through
y = a x + sigma eps in R^m, a a unit vector drawn once from `seed`. s = a^T y is
sufficient, so the posterior, its OU marginal and score are a Gaussian times a kink-aware
1-D quadrature (HoelderConditional.smoothed, ~1e-13), batched over (x, s, t); the
posterior, the prior and the joint (x, y) are sampled exactly by rejection.

Derivation: docs/studies/inverse-problem.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from toolkit.data.hoelder_conditional import HoelderConditional, _rejection_on_first_axis
from toolkit.diffusion import OUProcess

F64 = torch.float64


@dataclass(frozen=True)
class LinearInverse:
    """The prior, measurement model and posterior above; tensors float64, batched along the
    first axis; x: (batch, 1), y: (batch, m), s = a^T y: (batch,), t: (batch,)."""

    beta: float
    meas_dim: int = 1  # m
    noise_level: float = 1.0  # sigma
    amplitude: float = 2.0  # A
    kink: float = 0.0  # c
    seed: int = 0  # of the direction a
    process: OUProcess = OUProcess()  # the forward process whose marginals `score` gives
    # a: (m,) unit vector, a function of meas_dim and seed
    direction: torch.Tensor = field(init=False, repr=False, compare=False)
    # the kink family of the conditional-diffusion study: its psi and its quadrature
    bump: HoelderConditional = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.meas_dim < 1:
            raise ValueError(f"meas_dim must be >= 1 (got {self.meas_dim})")
        if not self.noise_level > 0:
            raise ValueError(f"noise_level must be > 0 (got {self.noise_level})")
        bump = HoelderConditional(self.beta, amplitude=self.amplitude)  # checks beta, A
        g = torch.Generator().manual_seed(self.seed)
        a = torch.randn(self.meas_dim, generator=g, dtype=F64)
        object.__setattr__(self, "direction", a / a.norm())
        object.__setattr__(self, "bump", bump)

    # -- the ingredients -------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """d = 1: the dimension of x."""
        return 1

    def psi(self, u: torch.Tensor) -> torch.Tensor:
        return self.bump.psi(u)

    def statistic(self, y: torch.Tensor) -> torch.Tensor:
        """The sufficient statistic s = a^T y: y (batch, m) -> (batch,)."""
        return y.to(F64) @ self.direction.to(y.device)

    def posterior_gaussian(self, s: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(mu_s, tau) of the Gaussian factor N(x; mu_s, tau^2) of p(x | s): (batch,), float."""
        var = self.noise_level**2
        return s / (1 + var), math.sqrt(var / (1 + var))

    def _smoothed(self, mean: torch.Tensor, scale: torch.Tensor):
        """(E psi(mean + scale z - c), E z psi(mean + scale z - c)), z ~ N(0, 1): (batch,)."""
        return self.bump.smoothed(mean, scale, torch.full_like(mean, self.kink))

    def prior_normaliser(self) -> float:
        """Z_0 = 1 + A E_{u ~ N(0, 1)} psi(u - c)."""
        zero = torch.zeros(1, dtype=F64)
        return float(1 + self.amplitude * self._smoothed(zero, zero + 1)[0][0])

    def normaliser(self, s: torch.Tensor) -> torch.Tensor:
        """Z(s) = 1 + A E_{u ~ N(mu_s, tau^2)} psi(u - c): (batch,)."""
        mu, tau = self.posterior_gaussian(s.to(F64))
        return 1 + self.amplitude * self._smoothed(mu, torch.full_like(mu, tau))[0]

    # -- densities -------------------------------------------------------------------------
    def log_prior(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x): x (batch, 1) -> (batch,)."""
        x1 = x[:, 0].to(F64)
        log_phi = -0.5 * x1**2 - 0.5 * math.log(2 * math.pi)
        bump = torch.log(1 + self.amplitude * self.psi(x1 - self.kink))
        return log_phi + bump - math.log(self.prior_normaliser())

    def log_density(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """log p(x | s) at t = 0: x (batch, 1), s (batch,) -> (batch,)."""
        x1, s = x[:, 0].to(F64), s.to(F64)
        mu, tau = self.posterior_gaussian(s)
        log_gauss = -0.5 * ((x1 - mu) / tau) ** 2 - math.log(tau * math.sqrt(2 * math.pi))
        bump = torch.log(1 + self.amplitude * self.psi(x1 - self.kink))
        return log_gauss + bump - torch.log(self.normaliser(s))

    def _marginal(self, x1: torch.Tensor, s: torch.Tensor, t: torch.Tensor):
        """(alpha mu_s, v_t, mean_t(x), r_t, alpha tau^2 / v_t) for t > 0: each (batch,)."""
        mu, tau = self.posterior_gaussian(s)
        alpha, sigma2 = self.process.alpha(t), self.process.sigma2(t)
        v = alpha**2 * tau**2 + sigma2
        mean = (sigma2 * mu + alpha * tau**2 * x1) / v
        r = torch.sqrt(tau**2 * sigma2 / v)
        return alpha * mu, v, mean, r, alpha * tau**2 / v

    def density(self, x: torch.Tensor, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """p_t(x | s) (t = 0: the posterior itself): x (batch, 1), s, t (batch,) -> (batch,)."""
        dtype = x.dtype
        x1, s, t = x[:, 0].to(F64), s.to(F64), t.to(F64)
        positive = t > 0
        centre, v, mean, r, _ = self._marginal(x1, s, torch.where(positive, t, 1.0))
        g = torch.where(positive, self._smoothed(mean, r)[0], self.psi(x1 - self.kink))
        mu, tau = self.posterior_gaussian(s)
        centre = torch.where(positive, centre, mu)
        v = torch.where(positive, v, tau**2)
        gauss = torch.exp(-((x1 - centre) ** 2) / (2 * v)) / torch.sqrt(2 * math.pi * v)
        return (gauss * (1 + self.amplitude * g) / self.normaliser(s)).to(dtype)

    def score(self, x: torch.Tensor, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """d/dx log p_t(x | s) for t > 0: x (batch, 1), s (batch,), t (batch,) -> (batch, 1)."""
        dtype = x.dtype
        x1, s, t = x[:, 0].to(F64), s.to(F64), t.to(F64)
        centre, v, mean, r, slope = self._marginal(x1, s, t)
        g, gz = self._smoothed(mean, r)
        grad_g = slope * gz / r
        out = -(x1 - centre) / v + self.amplitude * grad_g / (1 + self.amplitude * g)
        return out.unsqueeze(1).to(dtype)

    # -- sampling --------------------------------------------------------------------------
    def _draw(self, mu: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
        """Exact draws from N(x; mu, tau^2) (1 + A psi(x - c)) / Z, one per entry of mu:
        (batch, 1), by rejection (proposal N(mu, tau^2), acceptance (1 + A psi) / (1 + A sup
        psi), at least 1 / (1 + A sup psi))."""
        bound = 1 + self.amplitude * self.bump.psi_max()

        def factor(z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return 1 + self.amplitude * self.psi(mu[rows] + tau * z - self.kink)

        z = _rejection_on_first_axis(factor, bound, mu.shape[0], 1, generator)
        return mu.unsqueeze(1) + tau * z

    def sample(self, s: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One exact draw of x | s for each entry of s (CPU): (batch, 1)."""
        mu, tau = self.posterior_gaussian(s.to(F64).cpu())
        return self._draw(mu, tau, generator)

    def sample_prior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n exact draws of x ~ p(x) (CPU): (n, 1)."""
        return self._draw(torch.zeros(n, dtype=F64), 1.0, generator)

    def sample_joint(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n pairs: x ~ p(x), y = a x + sigma eps (CPU): x (n, 1), y (n, m)."""
        x = self.sample_prior(n, generator)
        eps = torch.randn(n, self.meas_dim, generator=generator, dtype=F64)
        return x, x * self.direction + self.noise_level * eps
