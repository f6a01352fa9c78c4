"""The kernel conditional score (toolkit.kernel_score): order 2 unchanged, order 4 [CDM]."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from toolkit import kernel_score
from toolkit.data.hoelder_conditional import HoelderConditional
from toolkit.diffusion import OUProcess
from toolkit.kernel_score import KernelScore
from toolkit.metrics import score_error
from toolkit.rng import generator

F64 = torch.float64
R2 = math.sqrt(2.0)
# Written out here, not imported: (weight, h_x factor, h_y factor) of 2 K_h - K_{sqrt2 h}
# on x times the same on y, and its x-marginal.
COMPONENTS = ((4.0, 1.0, 1.0), (-2.0, R2, 1.0), (-2.0, 1.0, R2), (1.0, R2, R2))
X_COMPONENTS = ((2.0, 1.0), (-1.0, R2))


class _Order2Reference:
    """toolkit/kernel_score.py's KernelScore as of commit 7f50ed5, verbatim (order 2 only)."""

    def __init__(self, x, y, h_x, h_y, process) -> None:
        self.x, self.y = x, y
        self.h_x, self.h_y, self.process = h_x, h_y, process

    def _log_weights(self, y, data_y):
        return -torch.cdist(y, data_y).square() / (2 * self.h_y**2)

    def _mixture_score(self, x, t, data_x, log_w):
        data_x = data_x.to(x.dtype)
        log_w = None if log_w is None else log_w.to(x.dtype)
        alpha = self.process.alpha(t).unsqueeze(1)
        var = alpha**2 * self.h_x**2 + self.process.sigma(t).unsqueeze(1) ** 2
        sq = alpha**2 * data_x.square().sum(1) - 2 * alpha * (x @ data_x.T)
        logits = -sq / (2 * var) if log_w is None else log_w - sq / (2 * var)
        resp = torch.softmax(logits, dim=1)
        return (alpha * (resp @ data_x) - x) / var

    def _chunked(self, fn, x, *rest):
        size = max(1, kernel_score.MAX_ELEMENTS // self.x.shape[0])
        parts = [fn(*(a[i : i + size] for a in (x, *rest))) for i in range(0, x.shape[0], size)]
        return torch.cat(parts)

    def score(self, x, y, t):
        def part(x, y, t):
            return self._mixture_score(x, t, self.x, self._log_weights(y, self.y))

        return self._chunked(part, x, y, t)

    def null_score(self, x, t):
        return self._chunked(lambda x, t: self._mixture_score(x, t, self.x, None), x, t)

    def at_condition(self, y0):
        log_w = self._log_weights(y0.view(1, -1), self.y)[0]
        keep = log_w > log_w.max() - kernel_score.NEGLIGIBLE
        data_x, log_w = self.x[keep], log_w[keep]
        size = max(1, kernel_score.MAX_ELEMENTS // data_x.shape[0])

        def score(x, t):
            parts = [
                self._mixture_score(x[i : i + size], t[i : i + size], data_x, log_w.unsqueeze(0))
                for i in range(0, x.shape[0], size)
            ]
            return torch.cat(parts)

        return score


def _problem(n: int, d: int, dy: int, batch: int, seed: int = 0, dtype=F64):
    """Data (x, y) and query points (xq, yq, t) with t log-spread over [1e-3, 8]."""
    g = generator(seed, "kernel-score", n, d, dy)
    x = torch.randn(n, d, generator=g, dtype=F64)
    y = torch.rand(n, dy, generator=g, dtype=F64)
    xq = 1.3 * torch.randn(batch, d, generator=g, dtype=F64)
    yq = torch.rand(batch, dy, generator=g, dtype=F64)
    t = torch.exp(
        torch.empty(batch, dtype=F64).uniform_(math.log(1e-3), math.log(8.0), generator=g)
    )
    return (v.to(dtype) for v in (x, y, xq, yq, t))


def _dense_n(x, y, t, data_x, data_y, h_x, h_y, components=COMPONENTS):
    """N(x, y) = sum_c w_c sum_i K_{y,c}(y - y_i) N(x; alpha x_i, v_c I), a direct float64 sum.

    x (batch, d) may require grad; t (batch,); components without an h_y factor skip the
    y-kernel (the unconditional composite). -> (batch,).
    """
    d = x.shape[1]
    alpha = torch.exp(-t / 2).unsqueeze(1)
    sigma2 = (1 - torch.exp(-t)).unsqueeze(1)
    diff2 = ((x.unsqueeze(1) - alpha.unsqueeze(2) * data_x.unsqueeze(0)) ** 2).sum(-1)
    total = 0.0
    for w, fx, *fy in components:
        v = torch.maximum(sigma2, alpha**2 * (fx * h_x) ** 2)  # (batch, 1)
        kx = (2 * math.pi * v) ** (-d / 2) * torch.exp(-diff2 / (2 * v))  # (batch, n)
        if fy:
            hy2 = (fy[0] * h_y) ** 2
            dy2 = ((y.unsqueeze(1) - data_y.unsqueeze(0)) ** 2).sum(-1)
            kx = kx * (2 * math.pi * hy2) ** (-data_y.shape[1] / 2) * torch.exp(-dy2 / (2 * hy2))
        total = total + w * kx.sum(1)
    return total


def _autograd_score(x, fn):
    x = x.clone().requires_grad_(True)
    value = fn(x)
    (grad,) = torch.autograd.grad(torch.log(value).sum(), x)
    return grad, value.detach()


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row ||a - b|| / max(||b||, 1)."""
    return (a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1.0)


# ---- 1. order 2 is today's estimator, bit for bit ------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n,batch", [(300, 257), (3000, 1500)])  # the second one is chunked
def test_order_two_is_bit_identical_to_the_committed_estimator(dtype, n, batch) -> None:
    x, y, xq, yq, t = _problem(n, 2, 1, batch, dtype=dtype)
    h = 0.15
    new, ref = (
        KernelScore(x, y, h, 1.3 * h, OUProcess()),
        _Order2Reference(x, y, h, 1.3 * h, OUProcess()),
    )
    assert new.order == 2
    assert torch.equal(new.score(xq, yq, t), ref.score(xq, yq, t))
    assert torch.equal(new.null_score(xq, t), ref.null_score(xq, t))
    y0 = torch.tensor([0.05], dtype=dtype)  # near an edge: pruning drops pairs
    assert torch.equal(new.at_condition(y0)(xq, t), ref.at_condition(y0)(xq, t))
    assert new.evaluations == 0 and math.isnan(new.fallback_rate)


def test_order_is_validated() -> None:
    x, y = torch.zeros(3, 1), torch.zeros(3, 1)
    for order in (0, 1, 3, 6):
        with pytest.raises(ValueError, match="order must be one of"):
            KernelScore(x, y, 0.1, 0.1, OUProcess(), order=order)


# ---- 2. order 4 is grad_x log N(x, y), N summed directly -------------------------------------


@pytest.mark.parametrize("d,dy", [(1, 1), (2, 2), (3, 1)])
@pytest.mark.parametrize("t_value", [1e-3, 0.05, 1.0])
def test_order_four_score_is_autograd_of_the_dense_signed_mixture(d, dy, t_value) -> None:
    x, y, _, _, _ = _problem(60, d, dy, 0, seed=d + 10 * dy)
    g = generator(1, "near", d, dy)  # queries near the data: far out N < 0 (the fallback)
    near = torch.randint(60, (400,), generator=g)
    xq = x[near] + 0.4 * torch.randn(400, d, generator=g, dtype=F64)
    yq = y[near] + 0.2 * torch.randn(400, dy, generator=g, dtype=F64)
    t = torch.full((400,), t_value, dtype=F64)
    h_x, h_y = 0.3, 0.2
    est = KernelScore(x, y, h_x, h_y, OUProcess(), order=4)
    want, n_dense = _autograd_score(xq, lambda xs: _dense_n(xs, yq, t, x, y, h_x, h_y))
    got = est.score(xq, yq, t)
    scale = _dense_n(xq, yq, t, x, y, h_x, h_y, tuple((abs(w), *f) for w, *f in COMPONENTS))
    kept = n_dense > kernel_score.CANCELLATION * scale
    assert kept.float().mean() > 0.5, kept.float().mean()  # the test sees enough
    assert float(_rel_err(got[kept], want[kept]).max()) < 1e-8
    # where the dense N has cancelled (or is negative) the estimator fell back, nowhere else
    assert 0 < est.fallbacks == int((~kept).sum()) and est.evaluations == 400
    # (the same values: a batch of another size may sum its matrix products in another order)
    fallen = est.score(xq[~kept], yq[~kept], t[~kept])
    assert float(_rel_err(got[~kept], fallen).max()) < 1e-12
    # the joint density is N / n
    dens = est.joint_density(xq, yq, t)
    assert float(((dens - n_dense / 60).abs() / n_dense.abs().max()).max()) < 1e-12


def test_order_two_score_is_autograd_of_its_joint_density() -> None:
    x, y, xq, yq, t = _problem(80, 2, 1, 300)
    est = KernelScore(x, y, 0.3, 0.2, OUProcess())
    want, _ = _autograd_score(xq, lambda xs: est.joint_density(xs, yq, t))
    assert float(_rel_err(est.score(xq, yq, t), want).max()) < 1e-10


# ---- 3. the composite kernel is of order 4 ---------------------------------------------------


def test_composite_kernel_has_unit_mass_and_vanishing_second_moments() -> None:
    """One pair at the origin: the joint density is the kernel itself, integrated on a grid."""
    h, step = 0.4, 0.02
    grid = torch.arange(-8.0, 8.0 + step / 2, step, dtype=F64)
    gx, gy = torch.meshgrid(grid, grid, indexing="ij")
    xs, ys = gx.reshape(-1, 1), gy.reshape(-1, 1)
    zero = torch.zeros(1, 1, dtype=F64)
    est4 = KernelScore(zero, zero, h, h, OUProcess(), order=4)
    est2 = KernelScore(zero, zero, h, h, OUProcess(), order=2)

    def moments(est, t_value):
        t = torch.full((xs.shape[0],), t_value, dtype=F64)
        k = est.joint_density(xs, ys, t) * step**2
        return [
            float((k * m.squeeze(1)).sum())
            for m in (torch.ones_like(xs), xs**2, ys**2, xs**2 * ys**2, xs**4)
        ]

    a2 = math.exp(-1e-3) * h**2  # alpha^2 h^2 at t = 1e-3, above sigma^2 = 1e-3
    mass, x2, y2, x2y2, x4 = moments(est4, 1e-3)
    assert mass == pytest.approx(1.0, abs=1e-10)
    assert abs(x2) < 1e-10 and abs(y2) < 1e-10 and abs(x2y2) < 1e-10
    assert x4 == pytest.approx(-6 * a2**2, rel=1e-8)  # order exactly 4: 2*3h^4 - 3(2h^2)^2
    # the Gaussian (order 2) kernel, for contrast: second moments alpha^2 h^2 + sigma^2, h^2
    mass, x2, y2, _, _ = moments(est2, 1e-3)
    assert mass == pytest.approx(1.0, abs=1e-10)
    assert x2 == pytest.approx(a2 + -math.expm1(-1e-3), rel=1e-8) and y2 == pytest.approx(h**2)
    # large t: sigma_t^2 > 2 alpha_t^2 h^2 clamps both x-variances, x is smoothed at sigma_t only
    mass, x2, y2, _, _ = moments(est4, 2.0)
    assert mass == pytest.approx(1.0, abs=1e-10)
    assert x2 == pytest.approx(-math.expm1(-2.0), rel=1e-8) and abs(y2) < 1e-10


# ---- 4. score, at_condition and null_score agree ---------------------------------------------


def test_order_four_at_condition_matches_score_and_prunes_exactly() -> None:
    x, y, xq, _, t = _problem(500, 2, 1, 300)
    est = KernelScore(x, y, 0.3, 0.05, OUProcess(), order=4)  # small h_y: most pairs pruned
    for y0 in (0.1, 0.5, 0.97):
        y0 = torch.tensor([y0], dtype=F64)
        full = est.score(xq, y0.expand(300, 1), t)
        assert float(_rel_err(est.at_condition(y0)(xq, t), full).max()) < 1e-12

    # A pair negligible in the h_y components (e^-60) but not in the sqrt2 h_y ones (e^-30)
    # must be kept: near its x it dominates every component.
    h = 0.1
    data_x = torch.tensor([[0.0], [5.0]], dtype=F64)
    data_y = torch.tensor([[0.0], [1.1]], dtype=F64)  # 1.1^2 / (2 h^2) = 60.5
    est = KernelScore(data_x, data_y, h, h, OUProcess(), order=4)
    y0 = torch.zeros(1, dtype=F64)
    xs, ts = torch.tensor([[4.9], [5.0], [5.2]], dtype=F64), torch.full((3,), 1e-3, dtype=F64)
    full = est.score(xs, y0.expand(3, 1), ts)
    assert float(_rel_err(est.at_condition(y0)(xs, ts), full).max()) < 1e-12
    # ... and it does dominate: the score pulls towards alpha * 5, not towards 0
    assert (torch.sign(full[:, 0]) == torch.sign(math.exp(-5e-4) * 5.0 - xs[:, 0])).all()


def test_order_four_null_score_is_the_equal_weight_composite() -> None:
    x, y, xq, _, t = _problem(200, 2, 1, 400)
    h = 0.3
    est = KernelScore(x, y, h, 0.2, OUProcess(), order=4)
    want, n0 = _autograd_score(xq, lambda xs: _dense_n(xs, None, t, x, y, h, h, X_COMPONENTS))
    scale = _dense_n(xq, None, t, x, y, h, h, tuple((abs(w), f) for w, f in X_COMPONENTS))
    positive = n0 > kernel_score.CANCELLATION * scale
    assert positive.float().mean() > 0.9
    got = est.null_score(xq, t)
    assert est.fallbacks == int((~positive).sum())
    assert float(_rel_err(got[positive], want[positive]).max()) < 1e-8
    # it is the conditional score with a flat y-kernel (h_y -> infinity integrates y out)
    flat = KernelScore(x, y, h, 1e6, OUProcess(), order=4)
    yq = torch.rand(400, 1, generator=generator(0, "yq"), dtype=F64)
    # (its y-factor 2 K_h - K_sqrt2h = (2 - 1/sqrt2) / (2 + 1/sqrt2) of its |.| sum: compare
    # where neither fell back)
    both = n0 > kernel_score.CANCELLATION * scale * (2 + R2 / 2) / (2 - R2 / 2)
    assert both.float().mean() > 0.8
    assert float(_rel_err(flat.score(xq, yq, t)[both], got[both]).max()) < 1e-8


# ---- 5. order 4 reaches the minimax rate where order 2 cannot --------------------------------


@pytest.mark.slow
def test_order_four_beats_order_two_and_falls_at_the_theory_rate() -> None:
    """beta = 2.5, d = d_y = 1: theory slope -2 beta / (d + d_y + 2 beta) = -5/7 = -0.714.

    Measured (seed 0, test_size 1024, y in [0.2, 0.8]): slopes -0.265 (order 2) and -0.658
    (order 4) on n = 1000, 4000, 16000; error ratio order 4 / order 2 at n = 4000: 0.59; no
    fallbacks. (Seeds 1-3: ratios 0.50-0.64, slopes -0.16..-0.49 vs -0.47..-0.80.)
    """
    beta, size = 2.5, 1024
    process = OUProcess()
    data = HoelderConditional(beta, process=process)
    g = generator(0, "test")
    y_test = 0.2 + 0.6 * data.sample_conditions(size, g)  # away from the edges of [0, 1]
    x_test = data.sample(y_test, g)
    strata = (torch.arange(size) + torch.rand(size, generator=g, dtype=F64)) / size
    times = process.t0 + (process.horizon - process.t0) * strata  # as run_cell stratifies
    ns, errs = (1000, 4000, 16000), {2: [], 4: []}
    for n in ns:
        gd = generator(0, "train", n)
        y = data.sample_conditions(n, gd)
        x = data.sample(y, gd)
        h = n ** (-1 / (1 + 1 + 2 * beta))
        for order in (2, 4):
            est = KernelScore(x, y, h, h, process, order=order)
            err, _ = score_error(
                lambda xs, t, est=est: est.score(xs, y_test, t),
                lambda xs, t: data.score(xs, y_test, t),
                x_test, process, generator(0, "noise"), times=times,
            )  # fmt: skip
            errs[order].append(err)
            if order == 4:
                assert est.fallback_rate == 0.0
    slope = {o: np.polyfit(np.log(ns), np.log(errs[o]), 1)[0] for o in (2, 4)}
    theory = -2 * beta / (2 + 2 * beta)
    assert errs[4][1] < 0.75 * errs[2][1], errs  # measured 0.59
    assert errs[4][2] < 0.6 * errs[2][2], errs  # measured 0.41
    assert slope[4] < slope[2] - 0.25, slope  # measured -0.658 vs -0.265
    assert abs(slope[4] - theory) < 0.2, slope
    assert slope[2] > theory + 0.3, slope  # order 2's O(h^2) bias caps its rate


# ---- 6. the fallback ------------------------------------------------------------------------


def test_fallback_where_the_signed_estimate_is_negative() -> None:
    """One pair at the origin: N(x, y) = (2 K_h - K_sqrt2h)(y) (2 N_h - N_sqrt2h)(x) at small t,
    negative for |y| > 2.04 h with |x| < 2.04 alpha h."""
    h = 0.2
    zero = torch.zeros(1, 1, dtype=F64)
    est = KernelScore(zero, zero, h, h, OUProcess(), order=4)
    xs = torch.tensor([[0.06], [0.06], [-0.1], [-0.1]], dtype=F64)
    ys = torch.tensor([[3 * h], [0.0], [-2.5 * h], [0.5 * h]], dtype=F64)
    t = torch.full((4,), 1e-3, dtype=F64)
    n_dense = _dense_n(xs, ys, t, zero, zero, h, h)
    assert (n_dense < 0).tolist() == [True, False, True, False]
    got = est.score(xs, ys, t)
    assert est.fallbacks == 2 and est.evaluations == 4 and est.fallback_rate == 0.5
    # negative: the first component's score, -x / max(sigma^2, alpha^2 h^2)
    first = -xs / max(-math.expm1(-1e-3), math.exp(-1e-3) * h**2)
    assert float(_rel_err(got[[0, 2]], first[[0, 2]]).max()) < 1e-12
    # ... which differs from grad log |N| there (= 1.27 x the first component's near x = 0)
    signed, _ = _autograd_score(xs, lambda v: _dense_n(v, ys, t, zero, zero, h, h).abs())
    assert float(_rel_err(got[[0, 2]], signed[[0, 2]]).min()) > 0.1
    # positive: grad log N
    assert float(_rel_err(got[[1, 3]], signed[[1, 3]]).max()) < 1e-8
    # at_condition falls back alike, and the unconditional composite beyond 2.04 alpha h
    assert torch.equal(est.at_condition(ys[0])(xs[:1], t[:1]), got[:1])
    assert est.fallbacks == 3
    far = torch.tensor([[3 * h]], dtype=F64)
    assert _dense_n(far, None, t[:1], zero, zero, h, h, X_COMPONENTS).item() < 0
    null = est.null_score(far, t[:1])
    assert null.item() == pytest.approx(-3 * h / (math.exp(-1e-3) * h**2), rel=1e-12)
    assert est.fallbacks == 4 and est.evaluations == 6


def _dense_conditional(x_train, y_train, x, y, h_x, h_y, components, cancellation=0.05):
    """p_hat(x | y) written out with numpy: sum_c w_c K_x K_y / sum_c w_c K_y (products of
    1-D Gaussian pdfs per coordinate), the first component's ratio where the numerator or
    the denominator is at most `cancellation` of its sum of |w_c| terms."""

    def pdf(u, h):  # u (m, n, k) -> product over k of N(u; 0, h^2)
        return np.prod(np.exp(-(u**2) / (2 * h**2)) / np.sqrt(2 * np.pi * h**2), axis=2)

    ux = x.numpy()[:, None, :] - x_train.numpy()[None, :, :]
    uy = y.numpy()[:, None, :] - y_train.numpy()[None, :, :]
    nums = [w * (pdf(ux, fx * h_x) * pdf(uy, fy * h_y)).sum(1) for w, fx, fy in components]
    dens = [w * pdf(uy, fy * h_y).sum(1) for w, _, fy in components]
    ok = (sum(nums) > cancellation * sum(np.abs(v) for v in nums)) & (
        sum(dens) > cancellation * sum(np.abs(v) for v in dens)
    )
    return np.where(ok, sum(nums) / sum(dens), nums[0] / dens[0]), ok


@pytest.mark.parametrize(("order", "d", "dy"), [(2, 1, 1), (4, 1, 1), (4, 2, 1), (2, 1, 2)])
def test_conditional_log_density_matches_the_written_out_estimate(order, d, dy) -> None:
    g = torch.Generator().manual_seed(3)
    x_train, y_train = (
        torch.randn(200, d, generator=g, dtype=F64),
        torch.rand(200, dy, generator=g, dtype=F64),
    )
    x, y = (
        0.8 * torch.randn(50, d, generator=g, dtype=F64),
        0.2 + 0.6 * torch.rand(50, dy, generator=g, dtype=F64),
    )
    components = COMPONENTS if order == 4 else ((1.0, 1.0, 1.0),)
    dense, ok = _dense_conditional(x_train, y_train, x, y, 0.4, 0.3, components)
    got = kernel_score.conditional_log_density(x_train, y_train, x, y, 0.4, 0.3, order).numpy()
    assert ok.mean() > 0.9  # mostly the signed estimate
    np.testing.assert_allclose(got, np.log(dense), rtol=0, atol=1e-10)


def test_conditional_density_integrates_to_one_and_falls_back_where_cancelled() -> None:
    g = torch.Generator().manual_seed(4)
    x_train, y_train = (
        torch.randn(300, 1, generator=g, dtype=F64),
        torch.rand(300, 1, generator=g, dtype=F64),
    )
    grid = torch.linspace(-9, 9, 4001, dtype=F64).unsqueeze(1)
    y = torch.full_like(grid, 0.5)
    p = kernel_score.conditional_log_density(x_train, y_train, grid, y, 0.5, 0.3, 4).exp()
    mass = float(torch.trapezoid(p, grid[:, 0]))
    # The signed estimate integrates to 1; the fallback adds the (positive) order-2 value in
    # the tails, where the signed one has cancelled: a little more than 1, never less.
    assert 1 <= mass < 1.02
    # Far in the tails the wider negative components dominate: the order-2 first component.
    far = torch.tensor([[7.0]], dtype=F64)
    dense, ok = _dense_conditional(x_train, y_train, far, y[:1], 0.5, 0.3, COMPONENTS)
    got = kernel_score.conditional_log_density(x_train, y_train, far, y[:1], 0.5, 0.3, 4)
    assert not ok[0]
    np.testing.assert_allclose(got.numpy(), np.log(dense), rtol=1e-10)


@pytest.mark.parametrize(("order", "d"), [(2, 1), (4, 1), (4, 2)])
def test_leave_one_out_likelihood_is_the_mean_of_the_n_refits(order, d) -> None:
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(70, d, generator=g, dtype=F64), torch.rand(70, 1, generator=g, dtype=F64)
    h_ys = [0.15, 0.3]
    refits = [
        np.mean([
            float(kernel_score.conditional_log_density(
                torch.cat([x[:j], x[j + 1 :]]), torch.cat([y[:j], y[j + 1 :]]),
                x[j : j + 1], y[j : j + 1], 0.4, h_y, order,
            ))
            for j in range(70)
        ])
        for h_y in h_ys
    ]  # fmt: skip
    got = kernel_score.leave_one_out_log_likelihood(x, y, 0.4, h_ys, order).mean(1)
    np.testing.assert_allclose(got, refits, rtol=0, atol=1e-12)


def test_leave_one_out_recomputes_rows_whose_products_underflow() -> None:
    """Pair 0's nearest neighbour in x is far in y and the reverse: relative to each row's
    largest, every x-kernel times y-kernel product is below e^-745 (0 in float64)."""
    x = torch.tensor([[0.0], [0.0], [3.0], [3.1], [0.1]], dtype=F64)
    y = torch.tensor([[0.0], [1.0], [0.0], [1.0], [1.0]], dtype=F64)
    got = float(kernel_score.leave_one_out_log_likelihood(x, y, 0.05, [0.02], 2).mean())
    refits = [
        float(
            kernel_score.conditional_log_density(
                x[keep], y[keep], x[j : j + 1], y[j : j + 1], 0.05, 0.02
            )
        )
        for j in range(5)
        for keep in [torch.arange(5) != j]
    ]
    assert math.isfinite(got)
    assert got == pytest.approx(float(np.mean(refits)), rel=1e-9)


def test_leave_one_out_prefers_the_bandwidth_the_dependence_calls_for() -> None:
    """x independent of y: the widest h_y wins; x = 4 y + small noise: the narrowest."""
    g = torch.Generator().manual_seed(5)
    y = torch.rand(1000, 1, generator=g, dtype=F64)
    noise = torch.randn(1000, 1, generator=g, dtype=F64)
    h_ys = [0.05, 0.2, 1.0]
    flat = kernel_score.leave_one_out_log_likelihood(noise, y, 0.3, h_ys, 4).mean(1).numpy()
    steep = kernel_score.leave_one_out_log_likelihood(4 * y + 0.1 * noise, y, 0.05, h_ys, 4)
    steep = steep.mean(1).numpy()
    assert int(np.argmax(flat)) == 2 and flat[2] - flat[0] > 0.02
    assert int(np.argmax(steep)) == 0 and steep[0] - steep[2] > 0.5
    with pytest.raises(ValueError, match="n >= 2"):
        kernel_score.leave_one_out_log_likelihood(noise[:1], y[:1], 0.3, h_ys, 4)


def test_select_bandwidth_y_keeps_the_widest_unless_the_data_support_a_narrower() -> None:
    g = torch.Generator().manual_seed(5)
    y = torch.rand(1000, 1, generator=g, dtype=F64)
    noise = torch.randn(1000, 1, generator=g, dtype=F64)
    h_ys = [1.0, 0.2, 0.05]  # any order
    assert kernel_score.select_bandwidth_y(4 * y + 0.1 * noise, y, 0.05, h_ys, 4) == 2
    # x = noise + a y, h_x = 0.3: at a = 0.6 h_y = 0.2 scores best, but by less than one SE
    # of the paired difference (0.0033 against 0.0048): the widest stays; at a = 0.8 it
    # wins by 0.011, about 1.8 SE: h_y = 0.2.
    for a, argmax, chosen in ((0.6, 1, 0), (0.8, 1, 1)):
        x = noise + a * y
        values = kernel_score.leave_one_out_log_likelihood(x, y, 0.3, h_ys, 4)
        assert int(values.mean(1).argmax()) == argmax
        assert kernel_score.select_bandwidth_y(x, y, 0.3, h_ys, 4) == chosen
