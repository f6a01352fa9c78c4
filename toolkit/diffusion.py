"""The diffusion process, its training objective and its samplers, apart from any network.

Forward process (Ornstein-Uhlenbeck) X_t = alpha_t X_0 + sigma_t eps, alpha_t = exp(-t/2),
sigma_t^2 = 1 - exp(-t), defined once in OUProcess. Training is denoising score matching
(`train_dsm`, the one trainer of every study), its choices named entries of TIME_SAMPLERS,
PARAMETRISATIONS and SCHEDULES; classifier-free guidance drops the condition with
`token_drop`. Samplers take a score function, not a model, and run the reverse SDE or the
probability-flow ODE (exponential integrator) on a geometric time grid from T to t0.

The conventions written out: docs/studies/conditional-diffusion.md (shared diffusion
conventions), used also by docs/studies/st-dit.md and docs/studies/inverse-problem.md.
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
        """alpha_t = exp(-t/2), the scale of x_0 in x_t."""
        return torch.exp(-t / 2)

    @staticmethod
    def alpha2(t: torch.Tensor) -> torch.Tensor:
        """alpha_t^2 = exp(-t)."""
        return torch.exp(-t)

    @staticmethod
    def sigma2(t: torch.Tensor) -> torch.Tensor:
        """sigma_t^2 = 1 - exp(-t), the variance of the added noise (expm1: exact at small t)."""
        return -torch.expm1(-t)

    @classmethod
    def sigma(cls, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(cls.sigma2(t))

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


# --- Training times ------------------------------------------------------------------------


def uniform_times(process: OUProcess, batch: int, generator: torch.Generator) -> torch.Tensor:
    """t ~ Uniform[t0, T]: (batch,) float64 on the CPU."""
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    return process.t0 + (process.horizon - process.t0) * u


def log_uniform_times(process: OUProcess, batch: int, generator: torch.Generator) -> torch.Tensor:
    """log t ~ Uniform[log t0, log T]: each decade of t gets the same share of the batch, so
    the small times the reverse sampler crosses near t0 are trained as often as large ones."""
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    return process.t0 * (process.horizon / process.t0) ** u


def inverse_variance_times(
    process: OUProcess, batch: int, generator: torch.Generator
) -> torch.Tensor:
    """t with density ∝ 1 / sigma_t^2 = 1 / (1 - e^{-t}) on [t0, T]: (batch,) float64.

    The eps loss weights the score error at t by sigma_t^2, so under these times the DSM
    loss is, up to a constant, the uniform time average of the score error that the
    studies report ((1/(T - t0)) int R_t dt): like 1/t (log-uniform) at small t, flat at
    large t. The CDF is log(e^t - 1) (normalised), inverted in closed form:
    t = log(1 + (e^{t0} - 1) ((e^T - 1) / (e^{t0} - 1))^u).
    """
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    low, high = math.expm1(process.t0), math.expm1(process.horizon)
    return torch.log1p(low * torch.exp(u * math.log(high / low)))


TimeSampler = Callable[[OUProcess, int, torch.Generator], torch.Tensor]
TIME_SAMPLERS: dict[str, TimeSampler] = {
    "uniform": uniform_times,
    "log-uniform": log_uniform_times,
    "inverse-variance": inverse_variance_times,
}


# --- Training ------------------------------------------------------------------------------


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
    times: TimeSampler = uniform_times,
) -> torch.Tensor:
    """Denoising score matching (noise prediction) on a batch x0: (batch, ...).

    eps_model(x_t, t, *cond) predicts eps; t: (batch,) in x0's dtype and device, drawn by
    `times`. Noise and times are drawn on the CPU from `generator`, so training is
    reproducible on any device.
    """
    t = times(process, x0.shape[0], generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64).to(x0)
    xt = process.perturb(x0, t, eps)
    return ((eps_model(xt, t.to(x0), *cond) - eps) ** 2).flatten(1).sum(1).mean()


def eps_to_score(eps: torch.Tensor, t: torch.Tensor, process: OUProcess) -> torch.Tensor:
    """score = -eps_hat / sigma_t, with t: (batch,) broadcast over eps's other axes."""
    shape = (-1,) + (1,) * (eps.dim() - 1)
    return -eps / process.sigma(t.to(eps)).view(shape)


PARAMETRISATIONS = ("eps", "score")


def eps_prediction(
    net: Callable[..., torch.Tensor], process: OUProcess, parametrisation: str = "eps"
) -> Callable[..., torch.Tensor]:
    """eps_hat(x_t, t, *cond) of a network: its output ("eps"), or sigma_t times it
    ("score": the network predicts minus the score)."""
    if parametrisation not in PARAMETRISATIONS:
        raise ValueError(
            f"parametrisation must be one of {', '.join(PARAMETRISATIONS)} "
            f"(got {parametrisation!r})"
        )
    if parametrisation == "eps":
        return net

    def eps(x: torch.Tensor, t: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (x.dim() - 1)
        return process.sigma(t).view(shape) * net(x, t, *cond)

    return eps


SCHEDULES = {
    "linear": lambda opt, steps: torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 - k / steps),
    "cosine": lambda opt, steps: torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps),
}


@dataclass
class Training:
    """What train_dsm did: the loss of every step run, and where early stopping kept the
    network (best_step = steps when there was no validation)."""

    losses: list[float]
    steps: int  # steps run (fewer than asked when early stopping ended training)
    best_step: int  # the step whose weights the network holds at the end
    best_validation: float = math.nan


def train_dsm(
    net: torch.nn.Module,
    process: OUProcess,
    batches: Callable[[int], tuple[torch.Tensor, ...]],
    steps: int,
    lr: float,
    generator: torch.Generator,
    *,
    times: str = "uniform",
    parametrisation: str = "eps",
    schedule: str = "linear",
    validation: Callable[[], float] | None = None,
    check_every: int = 100,
    patience: int = 10,
) -> Training:
    """Adam on the DSM loss for at most `steps` steps.

    batches(step) -> (x0, *cond): the step's minibatch on the network's device (cond is
    passed to the network after x_t and t, e.g. y and the guidance mask). Times and noise
    come from `generator` (CPU), after whatever batches(step) draws; times, parametrisation
    and schedule name entries of TIME_SAMPLERS, PARAMETRISATIONS and SCHEDULES (the
    schedule spans `steps`). Early stopping: with `validation` (a held-out loss of the
    network as it is, e.g. held_out_dsm_loss), it is evaluated every `check_every` steps;
    training stops after `patience` evaluations without improvement and the network is
    restored to the weights of the best one.
    """
    for name, value, table in (
        ("times", times, TIME_SAMPLERS),
        ("schedule", schedule, SCHEDULES),
    ):
        if value not in table:
            raise ValueError(f"{name} must be one of {', '.join(table)} (got {value!r})")
    eps_model = eps_prediction(net, process, parametrisation)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = SCHEDULES[schedule](opt, steps)
    losses = []
    best = (math.inf, 0, None)  # (validation loss, step, weights)
    net.train()
    for step in range(steps):
        x0, *cond = batches(step)
        loss = dsm_loss(eps_model, process, x0, generator, *cond, times=TIME_SAMPLERS[times])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.detach())
        if validation is not None and ((step + 1) % check_every == 0 or step + 1 == steps):
            value = validation()
            if value < best[0]:
                weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
                best = (value, step + 1, weights)
            elif step + 1 - best[1] >= patience * check_every:
                break
    net.eval()
    run = len(losses)
    if best[2] is not None:
        net.load_state_dict(best[2])
        return Training(torch.stack(losses).tolist(), run, best[1], best[0])
    return Training(torch.stack(losses).tolist() if losses else [], run, run)


def held_out_dsm_loss(
    net: torch.nn.Module,
    process: OUProcess,
    x0: torch.Tensor,
    generator: torch.Generator,
    *cond: torch.Tensor,
    times: str = "uniform",
    parametrisation: str = "eps",
    repeats: int = 4,
) -> Callable[[], float]:
    """The DSM loss of `net` on held-out data x0 with times and noise drawn once (`repeats`
    draws per point), so that successive evaluations differ only by the network: a
    validation loss for early stopping with no Monte Carlo noise between checks."""
    x0 = x0.repeat((repeats,) + (1,) * (x0.dim() - 1))
    cond = tuple(c.repeat((repeats,) + (1,) * (c.dim() - 1)) for c in cond)
    t = TIME_SAMPLERS[times](process, x0.shape[0], generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64).to(x0)
    xt = process.perturb(x0, t, eps)
    t = t.to(x0)
    eps_model = eps_prediction(net, process, parametrisation)

    @torch.no_grad()
    def loss() -> float:
        was_training = net.training
        net.eval()
        value = float(((eps_model(xt, t, *cond) - eps) ** 2).flatten(1).sum(1).mean())
        net.train(was_training)
        return value

    return loss


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
