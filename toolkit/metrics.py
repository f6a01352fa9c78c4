"""Distances between estimates and exact ground truths."""

from __future__ import annotations

from collections.abc import Callable

import torch

from toolkit.diffusion import OUProcess


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
        times = process.sample_times(x0.shape[0], generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64).to(x0)
    xt = process.perturb(x0, times, eps)
    t = times.to(x0)
    with torch.no_grad():
        truth = score_true(xt, t)
        diff = ((score_hat(xt, t) - truth) ** 2).flatten(1).sum(1).mean()
        norm = (truth**2).flatten(1).sum(1).mean()
    return float(diff), float(diff / norm)
