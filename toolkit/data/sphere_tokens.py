"""Query and key tokens on the unit sphere, with permutation-invariant targets [RFA].

A query x_0 and keys x_1..x_N are i.i.d. uniform on S^{d-1}. With s_i = sqrt(d) <x_0, x_i>
(mean 0, variance 1) the raw targets are

    inner1     (1/N) sum_i s_i
    inner2     (1/N) sum_i He_2(s_i)
    inner3     (1/N) sum_i He_3(s_i)
    keys-quad  (1/N) sum_i He_2(sqrt(d) <beta, x_i>),  beta = e_1 (any fixed unit vector
               gives the same law by rotation invariance)
    first-key  s_1 (not invariant to permuting the keys)

Each is centred and scaled to unit variance *exactly*: every summand has mean 0, and
distinct summands are uncorrelated (given x_0, the law of s_i does not depend on x_0, so
E[h(s_i) h(s_j)] = E[E[h(s_i)|x_0] E[h(s_j)|x_0]] = 0 for a centred h), hence
Var = Var(summand) / N with the sphere moments E<u, x>^{2k} = (2k-1)!! / prod_{j<k}(d+2j).
"""

from __future__ import annotations

import math

import torch

TARGETS = ("inner1", "inner2", "inner3", "keys-quad", "first-key")


def sample_sphere(n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """n points uniform on S^{dim-1}: (n, dim), float64 on the CPU."""
    z = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return z / z.norm(dim=-1, keepdim=True)


def sample_tokens(
    n: int, keys: int, dim: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries x0: (n, dim) and keys xs: (n, keys, dim), all i.i.d. uniform on the sphere."""
    x = sample_sphere(n * (keys + 1), dim, generator).reshape(n, keys + 1, dim)
    return x[:, 0].contiguous(), x[:, 1:].contiguous()


def sphere_moment(dim: int, k: int) -> float:
    """E <u, x>^{2k} for x uniform on S^{dim-1} and a unit vector u."""
    num = math.prod(range(1, 2 * k, 2))  # (2k-1)!!
    den = math.prod(dim + 2 * j for j in range(k))
    return num / den


def summand_variance(name: str, dim: int) -> float:
    """Variance of one summand s, He_2(s) or He_3(s) with s = sqrt(d) <u, x>."""
    m2, m4, m6 = (dim**k * sphere_moment(dim, k) for k in (1, 2, 3))
    if name in ("inner1", "first-key"):
        return m2
    if name in ("inner2", "keys-quad"):  # E(s^2 - 1)^2
        return m4 - 2 * m2 + 1
    if name == "inner3":  # E(s^3 - 3 s)^2
        return m6 - 6 * m4 + 9 * m2
    raise ValueError(f"target must be one of {', '.join(TARGETS)} (got {name!r})")


def raw_variance(name: str, dim: int, keys: int) -> float:
    """Exact variance of the unscaled target under the input distribution."""
    v = summand_variance(name, dim)
    return v if name == "first-key" else v / keys


def target_values(name: str, x0: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """The centred, unit-variance target `name` at tokens x0: (n, d), xs: (n, N, d) -> (n,)."""
    n_keys, dim = xs.shape[1], xs.shape[2]
    if name == "keys-quad":
        s = math.sqrt(dim) * xs[..., 0]  # <beta, x_i> with beta = e_1
    else:
        s = math.sqrt(dim) * torch.einsum("nd,nkd->nk", x0, xs)
    if name == "inner1":
        raw = s.mean(-1)
    elif name in ("inner2", "keys-quad"):
        raw = (s**2 - 1).mean(-1)
    elif name == "inner3":
        raw = (s**3 - 3 * s).mean(-1)
    elif name == "first-key":
        raw = s[:, 0]
    else:
        raise ValueError(f"target must be one of {', '.join(TARGETS)} (got {name!r})")
    return raw / math.sqrt(raw_variance(name, dim, n_keys))
