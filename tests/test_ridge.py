"""The dual ridge solver against scikit-learn on explicit features."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from toolkit.ridge import fit_ridge, gram, predict_features
from toolkit.rng import generator


def problem(n=60, p=150, targets=3, seed=0):
    g = generator(seed, "ridge")
    f = torch.randn(n, p, generator=g, dtype=torch.float64) / 10
    w = torch.randn(p, targets, generator=g, dtype=torch.float64)
    y = f @ w + 0.3 * torch.randn(n, targets, generator=g, dtype=torch.float64)
    return f, y


def test_gram_from_blocks_equals_dense_product():
    f, _ = problem(n=37, p=50)
    blocks = f.split(7, dim=1)
    torch.testing.assert_close(gram(blocks, panel=8), f @ f.T, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gram([f.float()], panel=5), f @ f.T, rtol=1e-5, atol=1e-5)


def test_single_lambda_fit_equals_sklearn_ridge():
    f, y = problem()
    k = f @ f.T
    fit = fit_ridge(k, y, grid=[0.05])
    lam = float(fit.lambdas[0])
    assert lam == pytest.approx(0.05 * float(k.diagonal().mean()))
    ref = Ridge(alpha=lam, fit_intercept=False, solver="cholesky").fit(f.numpy(), y.numpy())
    np.testing.assert_allclose((f.T @ fit.dual).numpy(), ref.coef_.T, rtol=1e-8, atol=1e-10)
    test, _ = problem(n=20, seed=1)
    pred = predict_features(f.split(40, 1), test.split(40, 1), fit.dual)
    np.testing.assert_allclose(pred.numpy(), ref.predict(test.numpy()), rtol=1e-8, atol=1e-10)


def test_holdout_selection_equals_brute_force_sklearn():
    f, y = problem(n=80, p=120, targets=4, seed=2)
    y[:, 3] = torch.randn(80, generator=generator(2, "pure-noise"), dtype=torch.float64)
    k = f @ f.T
    grid = [1e-4, 1e-2, 1e0, 1e2]
    fit = fit_ridge(k, y, grid=grid, val_fraction=0.25)
    scale = float(k.diagonal().mean())
    tr, va = slice(0, 60), slice(60, 80)
    expected_mse = np.empty((len(grid), 4))
    for i, r in enumerate(grid):
        model = Ridge(alpha=r * scale, fit_intercept=False).fit(f[tr].numpy(), y[tr].numpy())
        expected_mse[i] = ((model.predict(f[va].numpy()) - y[va].numpy()) ** 2).mean(0)
    np.testing.assert_allclose(fit.val_mse.numpy(), expected_mse, rtol=1e-7)
    best = np.array(grid)[expected_mse.argmin(0)] * scale
    np.testing.assert_allclose(fit.lambdas.numpy(), best)
    # Pure noise is best predicted by (nearly) zero: the largest penalty wins there.
    assert float(fit.lambdas[3]) == pytest.approx(100 * scale)
    # Each target is refitted on all samples with its own penalty.
    for j in range(4):
        ref = Ridge(alpha=float(fit.lambdas[j]), fit_intercept=False).fit(
            f.numpy(), y[:, j].numpy()
        )
        np.testing.assert_allclose((f.T @ fit.dual[:, j]).numpy(), ref.coef_, rtol=1e-7, atol=1e-9)


def test_fit_ridge_rejects_bad_input():
    f, y = problem(n=10, p=5)
    with pytest.raises(ValueError, match="val_fraction"):
        fit_ridge(f @ f.T, y, val_fraction=1.0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        fit_ridge(torch.ones(1, 1, dtype=torch.float64), torch.ones(1, 1))


def test_mixed_precision_solve_matches_float64():
    from toolkit.ridge import _solve

    f, y = problem(n=300, p=400, seed=3)
    f = f + 0.5  # a large top eigenvalue, as with relu features
    k = f @ f.T
    scale = float(k.diagonal().mean())
    for rel in (1e-7, 1e-3, 1e-1, 10.0):
        exact = torch.linalg.solve(k + rel * scale * torch.eye(300, dtype=k.dtype), y)
        mixed = _solve(k, rel * scale, y, k.float())
        torch.testing.assert_close(mixed, exact, rtol=1e-9, atol=1e-9 * float(exact.abs().max()))


def test_ridge_on_features_keeps_or_recomputes_blocks_alike():
    from toolkit.ridge import ridge_on_features

    f, y = problem(n=50, p=90, seed=4)
    test, _ = problem(n=10, p=90, seed=5)
    calls = []

    def train_blocks():
        calls.append(1)
        return iter(f.split(30, 1))

    kept, _ = ridge_on_features(train_blocks, lambda: iter(test.split(30, 1)), y)
    assert len(calls) == 1
    again, fit = ridge_on_features(train_blocks, lambda: iter(test.split(30, 1)), y, keep_bytes=0)
    assert len(calls) == 3
    torch.testing.assert_close(kept, again)
    torch.testing.assert_close(kept, test @ (f.T @ fit.dual))


def test_rank_deficient_float32_gram_still_solves():
    # Fewer features than samples: K has rank p, and a float32 Gram is indefinite.
    f, y = problem(n=400, p=60, seed=6)
    f32 = (f + 0.3).float()
    k = gram([f32], exact_below=0)  # force the float32 products
    assert float(torch.linalg.eigvalsh(k)[0]) < 0  # round-off made it indefinite
    fit = fit_ridge(k, y, grid=[1e-9, 1e-3])
    exact = fit_ridge(gram([f32.double()]), y, grid=[1e-9, 1e-3])
    assert torch.isfinite(fit.dual).all()
    torch.testing.assert_close(fit.val_mse[1], exact.val_mse[1], rtol=1e-3, atol=0)


def test_extended_factor_equals_the_full_factorisation():
    from toolkit.ridge import _extend

    f, _ = problem(n=70, p=90, seed=7)
    k = f @ f.T
    lam = 0.01 * float(k.diagonal().mean())
    shifted = k + lam * torch.eye(70, dtype=k.dtype)
    leading = torch.linalg.cholesky(shifted[:50, :50])
    torch.testing.assert_close(_extend(leading, k, lam), torch.linalg.cholesky(shifted))
