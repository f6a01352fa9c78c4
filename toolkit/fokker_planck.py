"""The law of the reverse SDE in d = 1 by its Fokker-Planck equation: a TV with no sampling floor.

A TV estimated from samples cannot go below its Monte-Carlo floor; in one dimension the law
of the continuous-time reverse SDE driven by any score s(x, t), started from N(0, 1) at T,
is computed instead, by solving dq/dtau = -d/dx (b q) + 1/2 d^2 q / dx^2 with
b = x/2 + s (tau = T - t). Space: finite volumes on a Grid with Scharfetter-Gummel fluxes
and zero flux at the ends (mass conserved); time: Crank-Nicolson on process.time_grid, the
problems of a batch solved together as one block-tridiagonal system per step.

Derivation, discretisation, measured accuracy, wall time and positivity:
docs/studies/conditional-diffusion.md (used also by docs/studies/inverse-problem.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import solve_banded

from toolkit.diffusion import OUProcess, ScoreFn

F64 = torch.float64
DIFFUSION = 0.5  # D in dq/dtau = -(b q)' + D q'': the reverse SDE has unit noise


@dataclass(frozen=True)
class Grid:
    """Finite-volume cells of equal width on [lo, hi]; the density vanishes outside."""

    lo: float = -8.0
    hi: float = 8.0
    cells: int = 1000

    def __post_init__(self) -> None:
        if self.cells < 10:
            raise ValueError(f"cells must be >= 10 (got {self.cells})")
        if not self.lo < self.hi:
            raise ValueError(f"lo must be < hi (got lo={self.lo}, hi={self.hi})")

    @property
    def width(self) -> float:
        return (self.hi - self.lo) / self.cells

    @property
    def faces(self) -> torch.Tensor:
        """Cell boundaries: (cells + 1,) float64, faces[0] = lo, faces[-1] = hi."""
        return torch.linspace(self.lo, self.hi, self.cells + 1, dtype=F64)

    @property
    def centers(self) -> torch.Tensor:
        """Cell midpoints: (cells,) float64."""
        faces = self.faces
        return (faces[:-1] + faces[1:]) / 2


def bernoulli(z: torch.Tensor) -> torch.Tensor:
    """B(z) = z / (e^z - 1), stable everywhere.

    expm1 keeps z / expm1(z) accurate down to tiny |z|; below 1e-6 (and at z = 0, where it
    is 0/0) the series 1 - z/2 + z^2/12 is exact to round-off. Large z gives z/inf = 0 and
    large -z gives -z, both the right limits (the pure-upwind fluxes)."""
    small = z.abs() < 1e-6
    safe = torch.where(small, torch.ones_like(z), z)
    return torch.where(small, 1 - z / 2 + z * z / 12, safe / torch.expm1(safe))


def face_coefficients(drift: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, torch.Tensor]:
    """Scharfetter-Gummel rates through each face from the drift b there.

    drift: (batch, cells + 1). Returns (right, left), both (batch, cells + 1): the flux
    through face f, divided by dx, is right[f] q[f - 1] - left[f] q[f] (cell f - 1 is left
    of face f). Both vanish on the two end faces: no flux leaves the grid."""
    dx = grid.width
    z = drift * (dx / DIFFUSION)
    scale = DIFFUSION / dx**2
    right, left = scale * bernoulli(-z), scale * bernoulli(z)
    right[:, [0, -1]] = 0.0
    left[:, [0, -1]] = 0.0
    return right, left


def apply_operator(q: torch.Tensor, right: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """A q = (flux in through the left face) - (flux out through the right face): (batch, cells)."""
    flux = torch.zeros_like(right)  # (batch, cells + 1), zero on the end faces
    flux[:, 1:-1] = right[:, 1:-1] * q[:, :-1] - left[:, 1:-1] * q[:, 1:]
    return flux[:, :-1] - flux[:, 1:]


def implicit_bands(right: torch.Tensor, left: torch.Tensor, step: float) -> np.ndarray:
    """I - step A in solve_banded's (1, 1) layout for the batch as one block-diagonal system.

    Row i of A: A[i, i-1] = right[i], A[i, i] = -(left[i] + right[i+1]), A[i, i+1] =
    left[i+1]. In the banded layout ab[0, j] = M[j-1, j], ab[2, j] = M[j+1, j], so the
    entries that would couple two problems are left[0] and right[-1] of each row: zero."""
    upper = -step * left[:, :-1]  # (batch, cells): M[j-1, j]
    lower = -step * right[:, 1:]  # (batch, cells): M[j+1, j]
    diag = 1 + step * (left[:, :-1] + right[:, 1:])
    return torch.stack([upper, diag, lower]).reshape(3, -1).numpy()


def normal_cell_averages(grid: Grid, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """Exact cell averages of N(mean, std^2) from CDF differences: (cells,)."""
    cdf = torch.special.ndtr((grid.faces - mean) / std)
    return (cdf[1:] - cdf[:-1]) / grid.width


def reverse_sde_law(
    score: ScoreFn,
    process: OUProcess,
    batch: int,
    grid: Grid = Grid(),
    steps: int = 200,
) -> torch.Tensor:
    """Density at t0 of the reverse SDE driven by `score`, from N(0, 1) at T: (batch, cells).

    score(x, t) -> (batch, cells + 1) with x: (batch, cells + 1) float64 face positions (the
    same row repeated: a row is one problem, e.g. one condition) and t: a float64 scalar
    tensor; it is called once per time of process.time_grid(steps), on the CPU. Each
    returned row is a vector of cell averages with sum * grid.width = 1 (round-off)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1 (got {batch})")
    if steps < 1:
        raise ValueError(f"steps must be >= 1 (got {steps})")
    x = grid.faces.expand(batch, -1).contiguous()  # (batch, cells + 1)

    def rates(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            s = score(x.clone(), t)
        if s.shape != x.shape:
            raise ValueError(f"score must return shape {tuple(x.shape)} (got {tuple(s.shape)})")
        s = s.detach().to(device="cpu", dtype=F64)
        if not torch.isfinite(s).all():
            raise ValueError(f"score returned non-finite values at t={float(t):.6g}")
        return face_coefficients(x / 2 + s, grid)

    q = normal_cell_averages(grid).expand(batch, -1)
    q = q / (q.sum(1, keepdim=True) * grid.width)  # (batch, cells)
    times = process.time_grid(steps)
    now = rates(times[0])
    for k in range(steps):
        half = float(times[k] - times[k + 1]) / 2
        nxt = rates(times[k + 1])
        rhs = q + half * apply_operator(q, *now)
        ab = implicit_bands(*nxt, half)
        sol = solve_banded(
            (1, 1), ab, rhs.reshape(-1).numpy(), overwrite_ab=True, check_finite=False
        )
        q = torch.from_numpy(sol).view(batch, grid.cells)
        now = nxt
    return q


def cell_averages(
    density: Callable[[torch.Tensor], torch.Tensor], grid: Grid, nodes: int = 8
) -> torch.Tensor:
    """Cell averages of a density by Gauss-Legendre quadrature with `nodes` points per cell.

    density(x) -> (..., n) for x: (n,) float64 positions (n = cells * nodes); leading batch
    dimensions pass through: returns (..., cells). With 8 nodes a smooth density resolved
    by the grid is averaged to round-off."""
    if nodes < 1:
        raise ValueError(f"nodes must be >= 1 (got {nodes})")
    unit, weights = np.polynomial.legendre.leggauss(nodes)  # on [-1, 1], weights sum to 2
    centers = grid.centers.unsqueeze(1)  # (cells, 1)
    x = centers + (grid.width / 2) * torch.from_numpy(unit)  # (cells, nodes)
    values = density(x.reshape(-1))
    values = values.reshape(*values.shape[:-1], grid.cells, nodes)
    return values.to(F64) @ torch.from_numpy(weights / 2)


def total_variation(q: torch.Tensor, p: torch.Tensor, grid: Grid) -> torch.Tensor:
    """TV = 1/2 sum |q - p| * width between cell averages q, p: (..., cells) -> (...)."""
    if q.shape[-1] != grid.cells or p.shape[-1] != grid.cells:
        raise ValueError(
            f"q and p must have {grid.cells} cells on the last axis "
            f"(got {q.shape[-1]} and {p.shape[-1]})"
        )
    return 0.5 * (q - p).abs().sum(-1) * grid.width
