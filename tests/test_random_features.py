"""Feature maps, the rfa-inf kernel and the targets against independent computations."""

import math

import numpy as np
import pytest
import torch

from toolkit.data.sphere_tokens import (
    TARGETS,
    raw_variance,
    sample_tokens,
    sphere_moment,
    target_values,
)
from toolkit.random_features import (
    RandomFeatureAttention,
    RandomFeatureMLP,
    arccos1,
    rfa_inf_kernel,
)
from toolkit.rng import generator

D, N = 5, 4


def tokens(n, seed=0, dim=D, keys=N):
    return sample_tokens(n, keys, dim, generator(seed, "test-tokens", n))


def rfa_reference(w, x0, xs):
    """Plain per-sample, per-head loops over the definition."""
    heads = w.shape[0]
    out = []
    for b in range(x0.shape[0]):
        q = torch.cat([x0[b], torch.ones(1, dtype=x0.dtype)])
        feats = []
        for m in range(heads):
            acc = torch.zeros(D + 1, dtype=x0.dtype)
            for i in range(xs.shape[1]):
                k = torch.cat([xs[b, i], torch.ones(1, dtype=x0.dtype)])
                pre = (w[m] * torch.outer(q, k)).sum()  # <W_m, x~_0 x~_i^T>
                acc += torch.relu(pre) * k
            feats.append(acc / xs.shape[1])
        out.append(torch.cat(feats) / math.sqrt(heads))
    return torch.stack(out)


@pytest.mark.parametrize("bias", [0.0, 1.5])
def test_rfa_features_match_per_sample_reference(bias):
    x0, xs = tokens(6)
    fmap = RandomFeatureAttention.draw(7, D, generator(1, "w"), bias=bias, dtype=torch.float64)
    ref = rfa_reference(fmap.weights, x0, xs)
    # Several block sizes, including blocks that split the heads unevenly.
    for block in (D + 1, 3 * (D + 1), 10_000):
        got = torch.cat(list(fmap.blocks(x0, xs, block_features=block)), dim=1)
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_brfa_mean_is_scaled_identity_on_the_token_block():
    plain = RandomFeatureAttention.draw(3, D, generator(2, "w"), dtype=torch.float64)
    biased = RandomFeatureAttention.draw(3, D, generator(2, "w"), bias=0.7, dtype=torch.float64)
    diff = biased.weights - plain.weights
    expected = torch.zeros(D + 1, D + 1, dtype=torch.float64)
    expected[:D, :D] = 0.7 * torch.eye(D, dtype=torch.float64)
    torch.testing.assert_close(diff, expected.expand(3, -1, -1))


def test_rfa_preactivations_have_unit_variance():
    x0, xs = tokens(1, seed=3)
    # Many heads on one input: the pre-activations <W_m, x~_0 x~_1^T> over m.
    many = RandomFeatureAttention.draw(20000, D, generator(3, "w2"), dtype=torch.float64)
    q = torch.cat([x0[0], torch.ones(1, dtype=torch.float64)])
    k = torch.cat([xs[0, 0], torch.ones(1, dtype=torch.float64)])
    pre = torch.einsum("p,mpq,q->m", q, many.weights, k)
    assert abs(float(pre.var()) - 1.0) < 0.04  # 20000 draws: sd of the estimate ~0.01
    assert many.n_features == 20000 * (D + 1)


def test_rfmlp_features_match_reference():
    x0, xs = tokens(5, seed=4)
    fmap = RandomFeatureMLP.draw(11, D, N, generator(4, "mlp"), dtype=torch.float64)
    z = torch.cat([torch.cat([x0[:, None], xs], 1), torch.ones(5, N + 1, 1, dtype=x0.dtype)], 2)
    z = z.flatten(1)
    assert torch.allclose(z.norm(dim=1) ** 2, torch.full((5,), 2.0 * (N + 1), dtype=x0.dtype))
    ref = torch.relu(z @ fmap.weights) / math.sqrt(11)
    got = torch.cat(list(fmap.blocks(x0, xs, block_features=4)), dim=1)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_rfa_is_invariant_to_permuting_keys_and_rfmlp_is_not():
    x0, xs = tokens(8, seed=5)
    perm = torch.randperm(N, generator=generator(5, "perm"))
    assert not torch.equal(perm, torch.arange(N))
    for bias in (0.0, 1.0):
        fmap = RandomFeatureAttention.draw(16, D, generator(5, "w"), bias=bias, dtype=torch.float64)
        torch.testing.assert_close(fmap.features(x0, xs[:, perm]), fmap.features(x0, xs))
    mlp = RandomFeatureMLP.draw(64, D, N, generator(5, "mlp"), dtype=torch.float64)
    gap = (mlp.features(x0, xs[:, perm]) - mlp.features(x0, xs)).abs().max()
    assert gap > 1e-3


def test_arccos1_matches_monte_carlo():
    g = generator(6, "mc")
    for rho in (-0.5, 0.0, 0.3, 0.9):
        u = torch.randn(400_000, generator=g, dtype=torch.float64)
        v = rho * u + math.sqrt(1 - rho**2) * torch.randn(400_000, generator=g, dtype=torch.float64)
        mc = (torch.relu(u) * torch.relu(v)).mean()
        assert abs(float(mc) - float(arccos1(torch.tensor(rho, dtype=torch.float64)))) < 4e-3
    # Closed-form end points: 1/(2 pi) at rho = 0 and E relu(u)^2 = 1/2 at rho = 1.
    ends = arccos1(torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(ends, torch.tensor([1 / (2 * math.pi), 0.5], dtype=torch.float64))


def test_rfa_inf_kernel_is_the_limit_of_rfa_kernels():
    x0, xs = tokens(10, seed=7)
    y0, ys = tokens(6, seed=8)
    exact = rfa_inf_kernel(x0, xs, y0, ys, dtype=torch.float64)
    errors = []
    for heads in (100, 10_000, 160_000):
        fmap = RandomFeatureAttention.draw(heads, D, generator(9, heads), dtype=torch.float64)
        a = fmap.head_features(x0, xs, slice(None))  # (n, M, d+1)
        b = fmap.head_features(y0, ys, slice(None))
        per_head = torch.einsum("nhq,mhq->hnm", a, b)  # one kernel draw per head
        k = per_head.mean(0)  # = the rfa kernel Phi(x) . Phi(y) with M heads
        torch.testing.assert_close(k, fmap.features(x0, xs) @ fmap.features(y0, ys).T)
        std_error = per_head.std(0) / heads**0.5
        # The average of i.i.d. heads is unbiased: every entry within 4.5 standard errors.
        assert bool(((k - exact).abs() <= 4.5 * std_error).all())
        errors.append(float((k - exact).abs().max()))
    # Error ~ M^{-1/2}: 1600x more heads, about 40x smaller error.
    assert errors[0] / errors[2] > 15


def test_rfa_inf_kernel_blocks_and_precision():
    x0, xs = tokens(9, seed=10)
    y0, ys = tokens(13, seed=11)
    ref = rfa_inf_kernel(x0, xs, y0, ys, dtype=torch.float64, block_elements=1 << 30)
    tiny = rfa_inf_kernel(x0, xs, y0, ys, dtype=torch.float64, block_elements=N * N)
    fast = rfa_inf_kernel(x0, xs, y0, ys)  # float32 tiles, the default
    torch.testing.assert_close(tiny, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    # The symmetric path (same token set on both sides) equals the general one.
    general = rfa_inf_kernel(x0, xs, x0.clone(), xs.clone(), dtype=torch.float64, block_elements=40)
    same = rfa_inf_kernel(x0, xs, x0, xs, dtype=torch.float64, block_elements=40)
    torch.testing.assert_close(same, general, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(same, same.T)


def test_sphere_moments_match_monte_carlo():
    x, _ = sample_tokens(200_000, 1, 6, generator(12, "moments"))
    for k in (1, 2, 3):
        mc = float((x[:, 0] ** (2 * k)).mean())
        assert abs(mc / sphere_moment(6, k) - 1) < 0.03


@pytest.mark.parametrize("dim,keys", [(8, 8), (3, 2)])
@pytest.mark.parametrize("name", TARGETS)
def test_targets_are_centred_with_unit_variance(name, dim, keys):
    x0, xs = sample_tokens(200_000, keys, dim, generator(13, name, dim))
    y = target_values(name, x0, xs).numpy()
    # Standard errors at 2e5 draws: mean ~0.0022, variance ~0.01 for these heavy tails.
    assert abs(y.mean()) < 0.012
    assert abs(y.var() - 1.0) < 0.05
    assert raw_variance(name, dim, keys) > 0


def test_targets_definitions():
    x0, xs = tokens(3, seed=14)
    s = math.sqrt(D) * torch.einsum("nd,nkd->nk", x0, xs)
    inner2 = ((s**2 - 1).mean(1)) / math.sqrt((3 * D / (D + 2) - 1) / N)
    torch.testing.assert_close(target_values("inner2", x0, xs), inner2)
    torch.testing.assert_close(target_values("first-key", x0, xs), s[:, 0])
    with pytest.raises(ValueError, match="target must be one of"):
        target_values("inner4", x0, xs)
    assert np.isclose(raw_variance("inner3", 8, 1), 2.6)
