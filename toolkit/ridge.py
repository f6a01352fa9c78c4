"""Ridge regression in the dual, with the penalty chosen by hold-out validation.

For n samples and p >> n features the exact solution needs the n x n Gram matrix
K = F F^T (n^2 p multiply-adds: the floor) and a few n^3/3 Cholesky factorisations.
Everything else (features, predictions) is O(n p). So:

- `gram` accumulates K from column blocks of F, computing only the upper block-triangle
  (about half the multiply-adds of F @ F.T), each block product in the features' dtype
  and the sum in float64.
- `fit_ridge` picks lambda per target from a grid by hold-out validation: it factorises
  K_fit + lambda I once per grid value and scores every target with it, then refits on
  all n samples with each target's chosen lambda. All targets of a cell share one Gram
  matrix and one factorisation per lambda. Factorisations are float64, except where the
  penalty keeps K + lambda I well conditioned: there a float32 factor with iterative
  refinement in float64 gives the float64 answer (residual checked) in half the time.
- `ridge_on_features` runs the whole fit-and-predict for a feature map given as column
  blocks, keeping the training blocks in memory when they fit a budget (else recomputing
  them for the predictions).

The objective is ||y - F w||^2 + lambda ||w||^2 without intercept (sklearn's
Ridge(alpha=lambda, fit_intercept=False)); w = F^T alpha with alpha = (K + lambda I)^{-1} y.
The grid is relative: lambda = r * trace(K) / n for r in `grid`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

DEFAULT_GRID = tuple(10.0**k for k in range(-6, 4))


def gram(
    blocks: Iterable[torch.Tensor], panel: int = 1024, exact_below: float = 2.0**30
) -> torch.Tensor:
    """K = sum_b F_b F_b^T in float64 from column blocks F_b: (n, f_b) -> (n, n).

    Block products run in the blocks' dtype (float32 for speed), except for blocks whose
    product costs fewer than `exact_below` multiply-adds, which are upcast to float64:
    small problems, where the features may also be fewer than the samples and a float32
    Gram would be indefinite at the 1e-5 level, get an exact one for free.
    """
    k = None
    for f in blocks:
        n = f.shape[0]
        if n * n * f.shape[1] < exact_below:
            f = f.to(torch.float64)
        if k is None:
            k = torch.zeros(n, n, dtype=torch.float64, device=f.device)
        for start in range(0, n, panel):
            stop = min(start + panel, n)
            # Upper block-triangle only: rows [start, stop) against columns [start, n).
            k[start:stop, start:] += (f[start:stop] @ f[start:].T).to(torch.float64)
    if k is None:
        raise ValueError("gram needs at least one feature block")
    upper = torch.triu(k)
    return upper + torch.triu(k, diagonal=1).T


@dataclass
class RidgeFit:
    """Dual coefficients and the hold-out search that chose each target's lambda."""

    dual: torch.Tensor  # (n, targets) float64: alpha = (K + lambda_t I)^{-1} y_t
    lambdas: torch.Tensor  # (targets,) the chosen absolute penalties
    grid: torch.Tensor  # (L,) absolute penalties searched
    val_mse: torch.Tensor  # (L, targets) hold-out mean squared error per grid value


# Penalties (relative to the mean kernel diagonal) from which a float32 Cholesky factor,
# refined in float64, is accurate: K + lambda I then has condition number below ~1e6.
MIXED_PRECISION_FROM = 1e-3


def _solve(
    k: torch.Tensor, lam: float, y: torch.Tensor, k32: torch.Tensor | None = None
) -> torch.Tensor:
    """(k + lam I)^{-1} y in float64.

    With a float32 copy k32 of k, first try a float32 Cholesky factor (half the time of
    float64) with iterative refinement against the float64 residual; keep it only if the
    relative residual reaches 1e-10, else fall back to the float64 factorisation.
    """
    eye = torch.eye(k.shape[0], dtype=k.dtype, device=k.device)
    if k32 is not None:
        chol, info = torch.linalg.cholesky_ex(k32 + lam * eye.to(k32.dtype))
        if int(info) == 0:
            x = torch.cholesky_solve(y.to(k32.dtype), chol).to(k.dtype)
            for _ in range(6):
                r = y - (k @ x + lam * x)
                if float(r.norm()) <= 1e-10 * float(y.norm()):
                    return x
                x = x + torch.cholesky_solve(r.to(k32.dtype), chol).to(k.dtype)
    chol, info = torch.linalg.cholesky_ex(k + lam * eye)
    # K is PSD in exact arithmetic; a float32 Gram of rank-deficient features can be
    # indefinite at round-off level. Then add the smallest jitter (relative to the mean
    # diagonal, in decades from 1e-9) that makes the factorisation succeed.
    scale = float(k.diagonal().mean())
    for exponent in range(-9, 1):
        if int(info) == 0:
            return torch.cholesky_solve(y, chol)
        chol, info = torch.linalg.cholesky_ex(k + (lam + scale * 10.0**exponent) * eye)
    raise torch.linalg.LinAlgError(f"K + lambda I is not positive definite (lambda={lam:g})")


def fit_ridge(
    k: torch.Tensor,
    y: torch.Tensor,
    grid: Iterable[float] = DEFAULT_GRID,
    val_fraction: float = 0.2,
) -> RidgeFit:
    """Fit every column of y: (n, targets) on the Gram matrix k: (n, n).

    The last round(val_fraction * n) samples (at least one) are held out to choose lambda;
    the data are i.i.d., so a fixed split is as good as a random one. Ties go to the
    larger lambda.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1) (got {val_fraction})")
    k = k.to(torch.float64)
    y = y.to(device=k.device, dtype=torch.float64)
    if y.ndim == 1:
        y = y[:, None]
    n = k.shape[0]
    if n < 2:
        raise ValueError(f"ridge needs at least 2 samples (got {n})")
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    fit, val = slice(0, n - n_val), slice(n - n_val, n)
    scale = float(k.diagonal().mean())
    lambdas = torch.tensor(sorted(grid), dtype=torch.float64) * scale
    val_mse = torch.empty(len(lambdas), y.shape[1], dtype=torch.float64)
    k_fit = k[fit, fit]
    k32 = k.to(torch.float32)
    k32_fit = k32[fit, fit]
    mixed_from = MIXED_PRECISION_FROM * scale
    for i, lam in enumerate(lambdas.tolist()):
        alpha = _solve(k_fit, lam, y[fit], k32_fit if lam >= mixed_from else None)
        val_mse[i] = ((k[val, fit] @ alpha - y[val]) ** 2).mean(0).cpu()
    # Smallest error, ties to the larger lambda (flip, argmin, flip back).
    best = (len(lambdas) - 1) - torch.argmin(val_mse.flip(0), dim=0)
    chosen = lambdas[best]
    dual = torch.empty_like(y)
    for lam in torch.unique(chosen).tolist():
        cols = (chosen == lam).nonzero().flatten().to(k.device)
        dual[:, cols] = _solve(k, lam, y[:, cols], k32 if lam >= mixed_from else None)
    return RidgeFit(dual=dual, lambdas=chosen, grid=lambdas, val_mse=val_mse)


def predict_features(
    train_blocks: Iterable[torch.Tensor],
    test_blocks: Iterable[torch.Tensor],
    dual: torch.Tensor,
) -> torch.Tensor:
    """Test predictions F_test F^T alpha, block by block: (n_test, targets) float64.

    Each block contributes F_test,b (F_b^T alpha): O((n + n_test) p) work in all, and the
    primal weights never need to be stored for more than one block.
    """
    pred = None
    for f, f_test in zip(train_blocks, test_blocks, strict=True):
        # In float64: with a small lambda the dual coefficients cancel to many digits.
        weights = f.T.to(torch.float64) @ dual  # (f_b, targets) primal weights of the block
        part = f_test.to(torch.float64) @ weights
        pred = part if pred is None else pred + part
    if pred is None:
        raise ValueError("predict_features needs at least one feature block")
    return pred


def ridge_on_features(
    train_blocks: Callable[[], Iterable[torch.Tensor]],
    test_blocks: Callable[[], Iterable[torch.Tensor]],
    y: torch.Tensor,
    grid: Iterable[float] = DEFAULT_GRID,
    val_fraction: float = 0.2,
    keep_bytes: int = 2 << 30,
) -> tuple[torch.Tensor, RidgeFit]:
    """Fit ridge on the features that `train_blocks()` yields and predict on `test_blocks()`.

    Returns test predictions (n_test, targets) float64 and the fit. Training blocks are
    kept for the prediction pass while their total size stays under `keep_bytes`.
    """
    kept: list[torch.Tensor] = []
    size = 0

    def keep(blocks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        nonlocal size
        for f in blocks:
            size += f.numel() * f.element_size()
            if size <= keep_bytes:
                kept.append(f)
            yield f

    fit = fit_ridge(gram(keep(train_blocks())), y, grid=grid, val_fraction=val_fraction)
    blocks = kept if size <= keep_bytes else train_blocks()
    return predict_features(blocks, test_blocks(), fit.dual), fit
