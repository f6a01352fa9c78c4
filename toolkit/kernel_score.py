"""The kernel estimator of a conditional score: a closed form, no training [CDM].

From n pairs (x_i, y_i) the estimate of p(x | y) is the Nadaraya-Watson-weighted,
Gaussian-smoothed empirical conditional distribution
    p_hat(x | y) = sum_i w_i(y) N(x; x_i, h_x^2 I),  w_i(y) ∝ exp(-||y - y_i||^2 / (2 h_y^2)).
Under the OU process it stays a Gaussian mixture,
    p_hat_t(x | y) = sum_i w_i(y) N(x; alpha_t x_i, v_t I),  v_t = alpha_t^2 h_x^2 + sigma_t^2,
so its score is exact: (alpha_t sum_i r_i x_i - x) / v_t with the posterior responsibilities
r_i ∝ w_i(y) exp(-||x - alpha_t x_i||^2 / (2 v_t)). The unconditional ("null") score has
equal weights w_i = 1/n, which is what classifier-free guidance pairs it with.
"""

from __future__ import annotations

import torch

from toolkit.diffusion import OUProcess, ScoreFn

MAX_ELEMENTS = 1 << 22  # batch x n entries per chunk of the responsibility matrix
NEGLIGIBLE = 40.0  # log-weights this far below the largest are dropped (e^-40 < 1e-17)


class KernelScore:
    """Closed-form score of the smoothed Nadaraya-Watson conditional density estimate."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, h_x: float, h_y: float, process: OUProcess
    ) -> None:
        if not (h_x > 0 and h_y > 0):
            raise ValueError(f"bandwidths must be > 0 (got h_x={h_x}, h_y={h_y})")
        self.x, self.y = x, y  # (n, d), (n, d_y)
        self.h_x, self.h_y, self.process = h_x, h_y, process

    def _log_weights(self, y: torch.Tensor, data_y: torch.Tensor) -> torch.Tensor:
        """Unnormalised log w_i(y): y (batch, d_y) -> (batch, n)."""
        return -torch.cdist(y, data_y).square() / (2 * self.h_y**2)

    def _mixture_score(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        data_x: torch.Tensor,
        log_w: torch.Tensor | None,
    ) -> torch.Tensor:
        """x (batch, d), t (batch,), log_w (batch, n) or None for equal weights -> (batch, d)."""
        data_x = data_x.to(x.dtype)
        log_w = None if log_w is None else log_w.to(x.dtype)
        alpha = self.process.alpha(t).unsqueeze(1)  # (batch, 1)
        var = alpha**2 * self.h_x**2 + self.process.sigma(t).unsqueeze(1) ** 2
        # ||x - alpha x_i||^2 without the term constant in i
        sq = alpha**2 * data_x.square().sum(1) - 2 * alpha * (x @ data_x.T)  # (batch, n)
        logits = -sq / (2 * var) if log_w is None else log_w - sq / (2 * var)
        resp = torch.softmax(logits, dim=1)
        return (alpha * (resp @ data_x) - x) / var

    def _chunked(self, fn, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        size = max(1, MAX_ELEMENTS // self.x.shape[0])
        parts = [fn(*(a[i : i + size] for a in (x, *rest))) for i in range(0, x.shape[0], size)]
        return torch.cat(parts)

    def score(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Conditional score: x (batch, d), y (batch, d_y), t (batch,) -> (batch, d)."""

        def part(x, y, t):
            return self._mixture_score(x, t, self.x, self._log_weights(y, self.y))

        return self._chunked(part, x, y, t)

    def null_score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Unconditional score (equal weights): x (batch, d), t (batch,) -> (batch, d)."""
        return self._chunked(lambda x, t: self._mixture_score(x, t, self.x, None), x, t)

    def at_condition(self, y0: torch.Tensor) -> ScoreFn:
        """The conditional score at one condition y0: (d_y,), as a score(x, t) for samplers.

        Pairs whose weight is below e^-40 of the largest are dropped once (a numerical no-op
        that makes sampling at small bandwidths cheaper).
        """
        log_w = self._log_weights(y0.view(1, -1), self.y)[0]  # (n,)
        keep = log_w > log_w.max() - NEGLIGIBLE
        data_x, log_w = self.x[keep], log_w[keep]
        size = max(1, MAX_ELEMENTS // data_x.shape[0])

        def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            parts = [
                self._mixture_score(x[i : i + size], t[i : i + size], data_x, log_w.unsqueeze(0))
                for i in range(0, x.shape[0], size)
            ]
            return torch.cat(parts)

        return score
