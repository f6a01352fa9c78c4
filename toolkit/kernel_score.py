"""The kernel estimator of a conditional score: a closed form, no training [CDM].

From n pairs (x_i, y_i), the Nadaraya-Watson-weighted, Gaussian-smoothed empirical
conditional distribution p_hat(x | y) stays a Gaussian mixture under the OU process, so
its score is exact; the null score (equal weights) is what classifier-free guidance pairs
it with. `order=4` uses the fourth-order product kernel 2 K_h - K_{sqrt2 h} (FOURTH_ORDER,
FOURTH_ORDER_X) and falls back to the order-2 score where the signed estimate has cancelled
(CANCELLATION); `fallbacks` / `evaluations` count those points (a study's `fallback_rate`).
select_bandwidth_y chooses h_y by leave-one-out likelihood.

Formulas, the fallback threshold and its measurements: docs/studies/conditional-diffusion.md
(used also by docs/studies/inverse-problem.md).
"""

from __future__ import annotations

import math

import torch

from toolkit.diffusion import OUProcess, ScoreFn

MAX_ELEMENTS = 1 << 22  # batch x n entries per chunk of the responsibility matrix
CV_ELEMENTS = 1 << 18  # rows x n entries per chunk of the cross-validation (2 MiB: no page
# faults, which made chunks of 1 << 22 several times slower per entry)
NEGLIGIBLE = 40.0  # log-weights this far below the largest are dropped (e^-40 < 1e-17)
CANCELLATION = 0.05  # order 4: fall back where N <= this fraction of sum_c |weight_c| N_c

SQRT2 = math.sqrt(2.0)
# (weight, x-bandwidth factor, y-bandwidth factor): (2 K_h - K_{sqrt2 h}) on x times the same
# on y. The first component alone (order 2, clamped variance) is the fallback.
FOURTH_ORDER = ((4.0, 1.0, 1.0), (-2.0, SQRT2, 1.0), (-2.0, 1.0, SQRT2), (1.0, SQRT2, SQRT2))
FOURTH_ORDER_X = ((2.0, 1.0, None), (-1.0, SQRT2, None))  # y integrated out
ORDERS = (2, 4)


class KernelScore:
    """Closed-form score of the smoothed Nadaraya-Watson conditional density estimate."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        h_x: float,
        h_y: float,
        process: OUProcess,
        order: int = 2,
    ) -> None:
        if not (h_x > 0 and h_y > 0):
            raise ValueError(f"bandwidths must be > 0 (got h_x={h_x}, h_y={h_y})")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS} (got {order})")
        self.x, self.y = x, y  # (n, d), (n, d_y)
        self.h_x, self.h_y, self.process, self.order = h_x, h_y, process, order
        # order 4: points where the fallback was used, out of all points evaluated (tensors
        # on the data's device once counted: no host sync per call)
        self._fallbacks: torch.Tensor | int = 0
        self._evaluations = 0

    @property
    def fallbacks(self) -> int:
        """Order 4: points so far whose score fell back to the first component's."""
        return int(self._fallbacks)

    @property
    def evaluations(self) -> int:
        """Order 4: points so far at which a score was evaluated (0 for order 2)."""
        return self._evaluations

    @property
    def fallback_rate(self) -> float:
        """fallbacks / evaluations (NaN before any order-4 evaluation)."""
        return self.fallbacks / self._evaluations if self._evaluations else math.nan

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

    def _variance(self, alpha: torch.Tensor, sigma2: torch.Tensor, factor: float) -> torch.Tensor:
        """v_c of a component with x-bandwidth factor * h_x (order 4 clamps, order 2 sums)."""
        smoothing = alpha**2 * (factor * self.h_x) ** 2
        return torch.maximum(sigma2, smoothing) if self.order == 4 else smoothing + sigma2

    def _components(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        data_x: torch.Tensor,
        y_dist2: torch.Tensor | None,
        components: tuple,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """log N_c and the component scores s_c of each component (weight, x factor, y factor).

        N_c(x, y) = sum_i K_{y,c}(y - y_i) N(x; alpha x_i, v_c I), all normalising constants
        included (they differ between components). x (batch, d), t (batch,), y_dist2
        (batch or 1, n) = ||y - y_i||^2, or None for no y-kernel -> (batch, C), C x (batch, d).
        """
        data_x = data_x.to(x.dtype)
        d = x.shape[1]
        alpha = self.process.alpha(t).unsqueeze(1)  # (batch, 1)
        sigma2 = self.process.sigma2(t).unsqueeze(1)
        # ||x - alpha x_i||^2 - ||x||^2: the ||x||^2 term, constant in i, is added per component
        sq = alpha**2 * data_x.square().sum(1) - 2 * alpha * (x @ data_x.T)  # (batch, n)
        x2 = x.square().sum(1, keepdim=True)
        log_mass, scores = [], []
        for _, fx, fy in components:
            var = self._variance(alpha, sigma2, fx)  # (batch, 1)
            log_norm = -0.5 * d * torch.log(2 * math.pi * var) - x2 / (2 * var)
            logits = -sq / (2 * var)
            if y_dist2 is not None:
                hy2 = (fy * self.h_y) ** 2
                logits = logits - y_dist2.to(x.dtype) / (2 * hy2)
                log_norm = log_norm - 0.5 * self.y.shape[1] * math.log(2 * math.pi * hy2)
            lse = torch.logsumexp(logits, dim=1, keepdim=True)  # (batch, 1)
            resp = torch.exp(logits - lse)  # softmax over i (not in place: joint_density's grad)
            log_mass.append(lse + log_norm)
            scores.append((alpha * (resp @ data_x) - x) / var)
        return torch.cat(log_mass, dim=1), scores

    def _condition_constants(self, data_x: torch.Tensor, d2: torch.Tensor) -> tuple:
        """What _fixed_condition_components needs of one condition, computed once: data_x
        (n, d) the kept pairs, d2 (n,) their ||y0 - y_i||^2."""
        dy = self.y.shape[1]
        features = torch.cat([data_x.T, data_x.square().sum(1).unsqueeze(0)])  # (d + 1, n)
        columns, offsets = [], {}
        for fy in sorted({fy for _, _, fy in FOURTH_ORDER}):
            hy2 = (fy * self.h_y) ** 2
            log_k = -d2 / (2 * hy2) - 0.5 * dy * math.log(2 * math.pi * hy2)  # normalised
            top = log_k.max()
            offsets[fy] = (sum(c.shape[1] for c in columns), top)
            k = torch.exp(log_k - top).unsqueeze(1)
            columns += [k, k * data_x]
        return features, torch.cat(columns, dim=1), offsets

    def _fixed_condition_components(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        condition: tuple[torch.Tensor, torch.Tensor, dict[float, tuple[int, torch.Tensor]]],
        components: tuple,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """_components at one condition y0, where each y-kernel is a fixed vector over i.

        condition = (features, columns, offsets), built once by at_condition: features
        (d + 1, n) = [x_i; ||x_i||^2]; columns (n, (1 + d) F) = [K, K x_i] for each of the F
        y-factors, K = K_{y,c}(y0 - y_i) relative to its largest; offsets[fy] = (first
        column, log of that largest). Then N_c = e^{m} sum_i E_i K_i with E_i = exp(x-logit_i
        - m) (m the row's largest x-logit), so each distinct x-variance costs one exp over
        (batch, n) and one matrix product: 2 exps instead of ~30 passes for the four
        components. Underflow loses nothing: the pruning in at_condition keeps every K_i
        within e^-80 of its largest, so the row maximum's term is >= e^-80 of the sum and
        the terms that underflow (< e^-745) are below e^-665 of it. The x-logits use the
        expanded square, as _components does; in the far tails of a grid (|x| = 8, small
        variance) the two routes' rounding differs by up to ~1e-9 relative.
        """
        features, columns, offsets = condition
        features, columns = features.to(x.dtype), columns.to(x.dtype)  # no-ops in float64
        d = x.shape[1]
        alpha = self.process.alpha(t).unsqueeze(1)  # (batch, 1)
        sigma2 = self.process.sigma2(t).unsqueeze(1)
        x2 = x.square().sum(1, keepdim=True)
        moments = {}  # x-factor -> (var, log_norm, row max, (batch, (1 + d) F))
        for fx in {fx for _, fx, _ in components}:
            var = self._variance(alpha, sigma2, fx)  # (batch, 1)
            # -||x - alpha x_i||^2 / (2 v) + ||x||^2 / (2 v) = [alpha x / v, -alpha^2 / (2 v)]
            # . [x_i, ||x_i||^2]: the x-logits are one (batch, d + 1) @ (d + 1, n) product
            logits = torch.cat([alpha * x / var, -(alpha**2) / (2 * var)], dim=1) @ features
            top = logits.max(dim=1, keepdim=True).values
            log_norm = -0.5 * d * torch.log(2 * math.pi * var) - x2 / (2 * var)
            moments[fx] = (var, log_norm, top, logits.sub_(top).exp_() @ columns)  # in place
        log_mass, scores = [], []
        for _, fx, fy in components:
            var, log_norm, top, m = moments[fx]
            j, log_top = offsets[fy]
            mass = m[:, j : j + 1]
            log_mass.append(torch.log(mass) + top + log_top + log_norm)
            scores.append((alpha * m[:, j + 1 : j + 1 + d] / mass - x) / var)
        return torch.cat(log_mass, dim=1), scores

    def _composite_score(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        data_x: torch.Tensor,
        y_dist2: torch.Tensor | None,
        components: tuple,
        condition: tuple | None = None,
    ) -> torch.Tensor:
        """grad_x log sum_c weight_c N_c, or s_1 where that sum is not safely positive
        (condition: at one condition, see _fixed_condition_components; data_x and y_dist2
        are then unused)."""
        if condition is None:
            log_mass, scores = self._components(x, t, data_x, y_dist2, components)
        else:
            log_mass, scores = self._fixed_condition_components(x, t, condition, components)
        weight = torch.tensor([c[0] for c in components], dtype=x.dtype, device=x.device)
        rel = torch.exp(log_mass - log_mass.max(dim=1, keepdim=True).values)  # (batch, C)
        signed = rel * weight
        total = signed.sum(1)  # N / max_c N_c
        combined = sum(signed[:, c : c + 1] * s for c, s in enumerate(scores)) / total.unsqueeze(1)
        ok = (total > CANCELLATION * (rel * weight.abs()).sum(1)) & torch.isfinite(combined).all(1)
        self._fallbacks = self._fallbacks + (~ok).sum()
        self._evaluations += x.shape[0]
        return torch.where(ok.unsqueeze(1), combined, scores[0])

    def joint_density(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The (signed, for order 4) estimate of the joint density of (X_t, y): N(x, y) / n.

        x (batch, d), y (batch, d_y), t (batch,) -> (batch,). Its log's x-gradient is the
        score; for order 2 it is (1/n) sum_i K_y(y - y_i) N(x; alpha x_i, v I).
        """
        components = FOURTH_ORDER if self.order == 4 else ((1.0, 1.0, 1.0),)

        def part(x, y, t):
            y_dist2 = torch.cdist(y, self.y).square()
            log_mass, _ = self._components(x, t, self.x, y_dist2, components)
            weight = torch.tensor([c[0] for c in components], dtype=x.dtype, device=x.device)
            top = log_mass.max(dim=1, keepdim=True).values
            signed = (torch.exp(log_mass - top) * weight).sum(1, keepdim=True)
            return (signed * torch.exp(top)).squeeze(1) / self.x.shape[0]

        return self._chunked(part, x, y, t)

    def _chunked(self, fn, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        size = max(1, MAX_ELEMENTS // self.x.shape[0])
        parts = [fn(*(a[i : i + size] for a in (x, *rest))) for i in range(0, x.shape[0], size)]
        return torch.cat(parts)

    def score(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Conditional score: x (batch, d), y (batch, d_y), t (batch,) -> (batch, d)."""

        def part(x, y, t):
            if self.order == 4:
                y_dist2 = torch.cdist(y, self.y).square()
                return self._composite_score(x, t, self.x, y_dist2, FOURTH_ORDER)
            return self._mixture_score(x, t, self.x, self._log_weights(y, self.y))

        return self._chunked(part, x, y, t)

    def null_score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Unconditional score (equal weights): x (batch, d), t (batch,) -> (batch, d)."""
        if self.order == 4:
            return self._chunked(
                lambda x, t: self._composite_score(x, t, self.x, None, FOURTH_ORDER_X), x, t
            )
        return self._chunked(lambda x, t: self._mixture_score(x, t, self.x, None), x, t)

    def at_condition(self, y0: torch.Tensor) -> ScoreFn:
        """The conditional score at one condition y0: (d_y,), as a score(x, t) for samplers.

        Pairs whose weight is below e^-40 of the largest are dropped once (a numerical no-op
        that makes sampling at small bandwidths cheaper); for order 4 only pairs below it in
        every component's y-kernel (all of them relative to their own largest).
        """
        if self.order == 4:
            y_dist2 = torch.cdist(y0.view(1, -1), self.y).square()  # (1, n)
            d2 = y_dist2[0]
            # -d2 / (2 h_{y,c}^2) > max - NEGLIGIBLE  <=>  d2 < min + 2 h_{y,c}^2 NEGLIGIBLE
            widest = max(fy for _, _, fy in FOURTH_ORDER) * self.h_y
            keep = d2 < d2.min() + 2 * widest**2 * NEGLIGIBLE
            data_x, d2 = self.x[keep], d2[keep]
            condition = self._condition_constants(data_x, d2)
            size = max(1, MAX_ELEMENTS // data_x.shape[0])

            def score4(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                parts = [
                    self._composite_score(
                        x[i : i + size], t[i : i + size], None, None, FOURTH_ORDER, condition
                    )
                    for i in range(0, x.shape[0], size)
                ]
                return torch.cat(parts)

            return score4

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


def _log_conditional(
    dx2: torch.Tensor, dy2: torch.Tensor, h_x: float, h_y: float, d: int, dy: int, order: int
) -> torch.Tensor:
    """log p_hat(x_j | y_j) from the squared distances dx2, dy2 (m, n) of m query pairs to
    the n data pairs (an infinite distance leaves a pair out), by log-sum-exp."""
    components = FOURTH_ORDER if order == 4 else ((1.0, 1.0, 1.0),)
    log_kx = {f: _log_gauss(dx2, f * h_x, d) for f in {c[1] for c in components}}
    log_ky = {f: _log_gauss(dy2, f * h_y, dy) for f in {c[2] for c in components}}
    log_n = torch.stack(
        [torch.logsumexp(log_kx[fx] + log_ky[fy], 1) for _, fx, fy in components], 1
    )
    log_d = torch.stack([torch.logsumexp(log_ky[fy], 1) for _, _, fy in components], 1)
    return _signed_ratio(log_n, log_d, components)


def _log_gauss(dist2: torch.Tensor, h: float, dim: int) -> torch.Tensor:
    """log N(u; 0, h^2 I_dim) at ||u||^2 = dist2."""
    return -dist2 / (2 * h**2) - 0.5 * dim * math.log(2 * math.pi * h**2)


def _signed_ratio(log_n: torch.Tensor, log_d: torch.Tensor, components: tuple) -> torch.Tensor:
    """log (sum_c weight_c N_c / sum_c weight_c D_c) from log N_c, log D_c (m, C), or the
    first component's log N_1 - log D_1 where either sum has cancelled to at most
    CANCELLATION of its sum of |weight_c| terms (or is not finite) -> (m,)."""
    weight = torch.tensor([c[0] for c in components], dtype=log_n.dtype, device=log_n.device)

    def signed(log_parts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        top = log_parts.max(dim=1, keepdim=True).values
        rel = torch.exp(log_parts - top)
        total = (rel * weight).sum(1)
        ok = (total > CANCELLATION * (rel * weight.abs()).sum(1)) & torch.isfinite(top[:, 0])
        return torch.log(total.clamp_min(torch.finfo(total.dtype).tiny)) + top[:, 0], ok

    (num, num_ok), (den, den_ok) = signed(log_n), signed(log_d)
    return torch.where(num_ok & den_ok, num - den, log_n[:, 0] - log_d[:, 0])


def conditional_log_density(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    h_x: float,
    h_y: float,
    order: int = 2,
) -> torch.Tensor:
    """log p_hat(x | y) of the (un-noised, t = 0) estimate KernelScore fits on (x_train,
    y_train): x (m, d), y (m, d_y) -> (m,).

    p_hat(x | y) = N(x, y) / D(y): N = sum_c weight_c sum_i K_{y,c}(y - y_i) K_{x,c}(x -
    x_i), D = the same with the x-kernels integrated out (order 2: one component, weight
    1). Order 4 falls back, as the score does, to the first component's N_1 / D_1 where N or
    D has cancelled to at most CANCELLATION of sum_c |weight_c| N_c (or D_c).
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS} (got {order})")
    d, dy = x_train.shape[1], y_train.shape[1]
    size = max(1, MAX_ELEMENTS // x_train.shape[0])
    parts = [
        _log_conditional(
            torch.cdist(x[i : i + size], x_train).square(),
            torch.cdist(y[i : i + size], y_train).square(),
            h_x,
            h_y,
            d,
            dy,
            order,
        )  # fmt: skip
        for i in range(0, x.shape[0], size)
    ]
    return torch.cat(parts)


def leave_one_out_log_likelihood(
    x: torch.Tensor, y: torch.Tensor, h_x: float, h_ys: list[float], order: int = 2
) -> torch.Tensor:
    """Likelihood cross-validation of h_y: for each h_y and pair j, log p_hat_{-j}(x_j | y_j),
    the conditional_log_density of the estimate fitted on all pairs but j -> (len(h_ys), n).

    Costs one pass over the n x n pairs (in chunks of rows) with h_x shared: per chunk the
    x-kernels once, per h_y its y-kernels; a sqrt2-wider kernel is the exp of the narrower
    one's exponent halved (no second distance pass), and the four N_c and two D_c of a row
    are one batched product (rows, 3, n) @ (rows, n, 2), not 8 log-sum-exps. Rows where a
    product underflows to 0 are recomputed by log-sum-exp (_log_conditional).
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS} (got {order})")
    n, d, dy = x.shape[0], x.shape[1], y.shape[1]
    if n < 2:
        raise ValueError(f"leave-one-out needs n >= 2 pairs (got {n})")
    components = FOURTH_ORDER if order == 4 else ((1.0, 1.0, 1.0),)
    factors = (1.0, SQRT2) if order == 4 else (1.0,)
    out = x.new_empty(len(h_ys), n)
    size = max(1, CV_ELEMENTS // n)
    for i in range(0, n, size):
        rows = torch.arange(i, min(i + size, n), device=x.device)
        inner = torch.arange(rows.numel(), device=x.device)
        dx2 = torch.cdist(x[rows], x).square()
        dy2 = torch.cdist(y[rows], y).square()
        dx2[inner, rows] = math.inf  # leave pair j out of its own row
        dy2[inner, rows] = math.inf
        log_x = dx2.mul_(-0.5 / h_x**2)  # in place: dx2 is only needed again for bad rows
        top_x = log_x.max(1, keepdim=True).values  # the nearest other pair
        log_x -= top_x
        # (rows, F + 1, n): the x-kernels relative to the row's largest, and ones (for D);
        # written into one buffer (stacking copies cost more than the exps)
        kx = log_x.new_empty(rows.numel(), len(factors) + 1, n)
        ky = log_x.new_empty(rows.numel(), len(factors), n)
        for j, f in enumerate(factors):
            torch.exp(log_x if f == 1.0 else log_x * (1 / f**2), out=kx[:, j])
        kx[:, -1] = 1.0
        for k, h_y in enumerate(h_ys):
            log_y = dy2 * (-0.5 / h_y**2)
            top_y = log_y.max(1, keepdim=True).values
            log_y -= top_y
            for j, f in enumerate(factors):
                torch.exp(log_y if f == 1.0 else log_y * (1 / f**2), out=ky[:, j])
            sums = torch.bmm(kx, ky.transpose(1, 2)).log_()  # (rows, F + 1, F): N_c, D_c, scaled
            log_n, log_d = [], []
            for _, fx, fy in components:
                jx, jy = factors.index(fx), factors.index(fy)
                log_ky = top_y[:, 0] / fy**2 - 0.5 * dy * math.log(2 * math.pi * (fy * h_y) ** 2)
                log_kx = top_x[:, 0] / fx**2 - 0.5 * d * math.log(2 * math.pi * (fx * h_x) ** 2)
                log_n.append(sums[:, jx, jy] + log_kx + log_ky)
                log_d.append(sums[:, -1, jy] + log_ky)
            log_n, log_d = torch.stack(log_n, 1), torch.stack(log_d, 1)
            value = _signed_ratio(log_n, log_d, components)
            bad = ~torch.isfinite(log_n).all(1)  # a product underflowed: redo by log-sum-exp
            if bad.any():
                dx2_bad = log_x[bad].add(top_x[bad]).mul_(-2 * h_x**2)  # dx2 of those rows
                value[bad] = _log_conditional(dx2_bad, dy2[bad], h_x, h_y, d, dy, order)
            out[k, rows] = value
    return out


def select_bandwidth_y(
    x: torch.Tensor, y: torch.Tensor, h_x: float, h_ys: list[float], order: int = 2
) -> int:
    """The index in h_ys of the widest h_y whose leave-one-out log-likelihood is within one
    standard error of the best one's (the one-standard-error rule, Hastie, Tibshirani and
    Friedman, ESL 7.10): the smoothest estimate the data cannot tell from the best.

    The standard error is that of the mean paired difference over the n pairs, so h_y moves
    off the widest candidate only where the data support it.
    """
    values = leave_one_out_log_likelihood(x, y, h_x, h_ys, order)  # (K, n)
    best = int(values.mean(1).argmax())
    for k in sorted(range(len(h_ys)), key=lambda k: -h_ys[k]):
        diff = values[best] - values[k]
        if float(diff.mean()) <= float(diff.std()) / math.sqrt(values.shape[1]):
            return k
    return best  # not reached: the best is within 0 of itself
