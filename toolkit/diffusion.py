"""The diffusion process, its training objective and its samplers, apart from any network.

Forward process (Ornstein-Uhlenbeck): dX_t = -X_t / 2 dt + dW_t, so
    X_t = alpha_t X_0 + sigma_t eps,  alpha_t = exp(-t/2),  sigma_t^2 = 1 - exp(-t).

Training is denoising score matching with t ~ Uniform[t0, T]: a network eps_hat(x_t, t, ...)
predicts the noise, loss = E ||eps_hat - eps||^2, and the score is -eps_hat / sigma_t.
With a condition y, classifier-free guidance training replaces y by a learned null token
with probability p_uncond (`token_drop`); the network receives the drop mask.

Samplers take a score function score(x, t) -> (batch, ...), not a model, and run the
reverse-time dynamics from N(0, I) at T down to t0 (early stopping, as in the theory):
- "sde": reverse SDE with the exponential integrator (the linear drift x/2 is integrated
  exactly, the score frozen over a step):
      x <- e^{h/2} x + 2 (e^{h/2} - 1) s + sqrt(e^h - 1) z
- "ode": probability-flow ODE dx/dt = -x/2 - s/2, same integrator:
      x <- e^{h/2} x + (e^{h/2} - 1) s
The time grid is geometric between T and t0 (the score changes fastest near t0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SAMPLERS = ("sde", "ode")


@dataclass(frozen=True)
class OUProcess:
    """The forward process on [t0, horizon]; t is a tensor of times, broadcast from the left."""

    t0: float = 1e-3
    horizon: float = 8.0

    def __post_init__(self) -> None:
        if not 0.0 < self.t0 < self.horizon:
            raise ValueError(f"need 0 < t0 < horizon (got t0={self.t0}, horizon={self.horizon})")

    @staticmethod
    def alpha(t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-t / 2)

    @staticmethod
    def sigma(t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(-t))

    def sample_times(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """t ~ Uniform[t0, T]: (batch,) float64 on the CPU."""
        u = torch.rand(batch, generator=generator, dtype=torch.float64)
        return self.t0 + (self.horizon - self.t0) * u

    def perturb(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = alpha_t x0 + sigma_t eps, with t: (batch,) broadcast over x0's other axes."""
        shape = (-1,) + (1,) * (x0.dim() - 1)
        t = t.to(x0).view(shape)
        return self.alpha(t) * x0 + self.sigma(t) * eps

    def time_grid(self, steps: int) -> torch.Tensor:
        """steps + 1 times from T down to t0, geometrically spaced: (steps + 1,) float64."""
        return torch.logspace(
            math.log10(self.horizon), math.log10(self.t0), steps + 1, dtype=torch.float64
        )


def token_drop(batch: int, p_uncond: float, generator: torch.Generator) -> torch.Tensor:
    """Classifier-free-guidance masking: True where the condition is replaced by the null token."""
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must be in [0, 1] (got {p_uncond})")
    return torch.rand(batch, generator=generator) < p_uncond


def dsm_loss(
    eps_model: Callable[..., torch.Tensor],
    process: OUProcess,
    x0: torch.Tensor,
    generator: torch.Generator,
    *cond: torch.Tensor,
) -> torch.Tensor:
    """Denoising score matching (noise prediction) on a batch x0: (batch, ...).

    eps_model(x_t, t, *cond) predicts eps; t: (batch,) in x0's dtype and device. Noise and
    times are drawn on the CPU from `generator`, so training is reproducible on any device.
    """
    t = process.sample_times(x0.shape[0], generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64).to(x0)
    xt = process.perturb(x0, t, eps)
    return ((eps_model(xt, t.to(x0), *cond) - eps) ** 2).flatten(1).sum(1).mean()


def eps_to_score(eps: torch.Tensor, t: torch.Tensor, process: OUProcess) -> torch.Tensor:
    """score = -eps_hat / sigma_t, with t: (batch,) broadcast over eps's other axes."""
    shape = (-1,) + (1,) * (eps.dim() - 1)
    return -eps / process.sigma(t.to(eps)).view(shape)


def guided_score(cond_score: ScoreFn, null_score: ScoreFn, w: float) -> ScoreFn:
    """Classifier-free guidance: s = (1 + w) s(x, y) - w s(x, null); w = 0 is plain s(x, y)."""
    if w == 0:
        return cond_score
    return lambda x, t: (1 + w) * cond_score(x, t) - w * null_score(x, t)


@torch.no_grad()
def sample(
    score: ScoreFn,
    process: OUProcess,
    shape: tuple[int, ...],
    steps: int,
    generator: torch.Generator,
    sampler: str = "sde",
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Draw `shape` samples by the reverse dynamics from N(0, I) at T down to t0."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)} (got {sampler!r})")
    if steps < 1:
        raise ValueError(f"steps must be >= 1 (got {steps})")
    x = torch.randn(shape, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    grid = process.time_grid(steps).tolist()
    for t_now, t_next in zip(grid[:-1], grid[1:], strict=True):
        h = t_now - t_next
        s = score(x, torch.full((shape[0],), t_now, dtype=dtype, device=device))
        growth = math.exp(h / 2)
        if sampler == "sde":
            z = torch.randn(shape, generator=generator, dtype=torch.float64).to(x)
            x = growth * x + 2 * (growth - 1) * s + math.sqrt(math.expm1(h)) * z
        else:
            x = growth * x + (growth - 1) * s
    return x


# --- Training-time distributions (st-dit) -----------------------------------------------------


@dataclass(frozen=True)
class LogUniformTimes(OUProcess):
    """The same process, with training times log-uniform on [t0, T] instead of uniform.

    Any positive weighting of t in the DSM loss has the true score as its minimiser; this
    one gives each decade of t the same share of the training batch, so the small times the
    reverse sampler passes through near t0 are trained as often as the large ones. Score
    errors are still reported under the uniform time average of the plain OUProcess."""

    def sample_times(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(batch, generator=generator, dtype=torch.float64)
        return self.t0 * (self.horizon / self.t0) ** u
