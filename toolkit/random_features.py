"""Random-feature models that are linear in their trainable weights [RFA].

Inputs are a query x0: (n, d) and keys xs: (n, N, d); tokens are augmented with a
constant, x~ = [x; 1] in R^{d+1}, so ||x~||^2 = 2 on the sphere.

- RandomFeatureAttention (rfa, brfa): head m maps the tokens to
  phi_m(x) = (1/N) sum_i relu(<W_m, x~_0 x~_i^T>) x~_i in R^{d+1}. W_m has i.i.d.
  N(0, 1/4) entries (each pre-activation then has unit variance, since
  ||x~_0 x~_i^T||_F = 2), plus a fixed mean W_0 = b diag(I_d, 0) for brfa. The model is
  f(x) = M^{-1/2} sum_m <v_m, phi_m(x)>, so the feature vector is M^{-1/2} [phi_1; ...].
- RandomFeatureMLP (rfmlp): z = vec(x~_0, ..., x~_N), features K^{-1/2} relu(<w_k, z>)
  with w_k ~ N(0, I / ||z||^2) (||z||^2 = 2 (N+1) is the same for every input).
- rfa_inf_kernel: the M -> infinity limit of the rfa kernel (an arc-cosine kernel).

Feature maps yield their features in column blocks so that a Gram matrix or a
prediction can be accumulated without ever holding the whole (n, features) matrix.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


def augment(x: torch.Tensor) -> torch.Tensor:
    """Append a constant 1: (..., d) -> (..., d+1)."""
    return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)


class RandomFeatureAttention:
    """Frozen query-key weights W: (M, d+1, d+1); features of dimension M (d+1)."""

    def __init__(self, weights: torch.Tensor):
        self.weights = weights  # (M, p, p), p = d + 1
        self.heads, self.width = weights.shape[0], weights.shape[1]
        self.n_features = self.heads * self.width

    @classmethod
    def draw(
        cls,
        heads: int,
        dim: int,
        generator: torch.Generator,
        bias: float = 0.0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> RandomFeatureAttention:
        """W_m = bias * diag(I_d, 0) + G_m, G_m i.i.d. N(0, 1/4) (bias 0 is plain rfa)."""
        p = dim + 1
        w = 0.5 * torch.randn(heads, p, p, generator=generator, dtype=torch.float64)
        if bias:
            w[:, torch.arange(dim), torch.arange(dim)] += bias
        return cls(w.to(device=device, dtype=dtype))

    def head_features(self, x0: torch.Tensor, xs: torch.Tensor, heads: slice) -> torch.Tensor:
        """phi_m for heads m in `heads`: (n, h, d+1), without the M^{-1/2} scale."""
        w = self.weights[heads]  # (h, p, q)
        q0 = augment(x0).to(w.dtype)  # (n, p)
        keys = augment(xs).to(w.dtype)  # (n, N, q)
        h, p, q = w.shape
        # x~_0^T W_m for all heads at once: one (n, p) @ (p, h q) product.
        qw = (q0 @ w.permute(1, 0, 2).reshape(p, h * q)).view(-1, h, q)  # (n, h, q)
        scores = torch.relu(torch.bmm(qw, keys.transpose(1, 2)))  # (n, h, N)
        return torch.bmm(scores, keys) / keys.shape[1]  # (n, h, q)

    def blocks(
        self, x0: torch.Tensor, xs: torch.Tensor, block_features: int = 4096
    ) -> Iterator[torch.Tensor]:
        """Column blocks of the scaled feature matrix, each (n, heads_in_block * (d+1))."""
        step = max(1, block_features // self.width)
        scale = 1.0 / math.sqrt(self.heads)
        for start in range(0, self.heads, step):
            phi = self.head_features(x0, xs, slice(start, start + step))
            yield phi.reshape(phi.shape[0], -1) * scale

    def features(self, x0: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """The whole feature matrix (n, M (d+1)); for small problems and tests."""
        return torch.cat(list(self.blocks(x0, xs)), dim=1)


class RandomFeatureMLP:
    """Frozen first layer w: ((N+1)(d+1), K) of a two-layer relu network."""

    def __init__(self, weights: torch.Tensor):
        self.weights = weights  # (input, K)
        self.n_features = weights.shape[1]

    @classmethod
    def draw(
        cls,
        units: int,
        dim: int,
        keys: int,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> RandomFeatureMLP:
        """w_k ~ N(0, I / ||z||^2) with ||z||^2 = 2 (N+1) for tokens on the sphere."""
        size = (keys + 1) * (dim + 1)
        w = torch.randn(size, units, generator=generator, dtype=torch.float64)
        w /= math.sqrt(2 * (keys + 1))
        return cls(w.to(device=device, dtype=dtype))

    def blocks(
        self, x0: torch.Tensor, xs: torch.Tensor, block_features: int = 4096
    ) -> Iterator[torch.Tensor]:
        """Column blocks of the scaled feature matrix, each (n, <= block_features)."""
        z = augment(torch.cat([x0[:, None], xs], dim=1)).flatten(1).to(self.weights.dtype)
        scale = 1.0 / math.sqrt(self.n_features)
        for start in range(0, self.n_features, block_features):
            yield torch.relu(z @ self.weights[:, start : start + block_features]) * scale

    def features(self, x0: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(list(self.blocks(x0, xs)), dim=1)


def arccos1(rho: torch.Tensor) -> torch.Tensor:
    """E[relu(u) relu(v)] for standard normals with correlation rho (degree-1 arc-cosine)."""
    rho = rho.clamp(-1.0, 1.0)
    return (torch.sqrt(1 - rho * rho) + (math.pi - torch.arccos(rho)) * rho) / (2 * math.pi)


def rfa_inf_kernel(
    x0: torch.Tensor,
    xs: torch.Tensor,
    y0: torch.Tensor,
    ys: torch.Tensor,
    block_elements: int = 1 << 16,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The M -> infinity kernel of rfa between token sets x: (n, .) and y: (m, .) -> (n, m).

    E_W[phi_W(x) . phi_W(y)] = (1/N^2) sum_{i,j} g_ij k1(c g_ij / 4) with c = <x~_0, y~_0>
    and g_ij = <x~_i, y~_j>, because <W, x~_0 x~_i^T> and <W, y~_0 y~_j^T> are standard
    normals with covariance <x~_0 x~_i^T, y~_0 y~_j^T>_F / 4 = c g_ij / 4 (in [0, 1]).

    This is n m N^2 elementwise evaluations with no matrix-product structure, so it is
    memory-bound: tiles of about `block_elements` key pairs stay in cache and are updated
    in place (about 2 ns per key pair on one CPU core in float32; 10x that with tiles
    that spill to memory). Returns float64; tiles are computed in `dtype`.
    """
    n_keys, m = xs.shape[1], y0.shape[0]
    symmetric = x0 is y0 and xs is ys  # K(x, x): compute the upper triangle, mirror it
    c = (augment(x0) @ augment(y0).T).to(dtype) / 4  # (n, m)
    yk = augment(ys).to(dtype)  # (m, N, p)
    xk = augment(xs).to(dtype)  # (n, N, p)
    cols = min(m, max(1, block_elements // n_keys**2))
    rows = max(1, block_elements // (cols * n_keys**2))
    out = torch.zeros(x0.shape[0], m, dtype=torch.float64, device=x0.device)
    for r in range(0, x0.shape[0], rows):
        xr = xk[r : r + rows].flatten(0, 1)  # (b N, p)
        for s in range((r // cols) * cols if symmetric else 0, m, cols):
            g = (xr @ yk[s : s + cols].flatten(0, 1).T).view(-1, n_keys, min(cols, m - s), n_keys)
            rho = g * c[r : r + rows, None, s : s + cols, None]
            rho.clamp_(0.0, 1.0)
            val = torch.arccos(rho).neg_().add_(math.pi).mul_(rho)  # (pi - arccos rho) rho
            val.add_(rho.mul_(rho).neg_().add_(1.0).sqrt_())  # + sqrt(1 - rho^2)
            out[r : r + rows, s : s + cols] = (val.mul_(g).sum(dim=(1, 3))).to(torch.float64)
    if symmetric:
        out = torch.triu(out) + torch.triu(out, diagonal=1).T
    return out / (2 * math.pi * n_keys**2)
