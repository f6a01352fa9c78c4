"""Study 1, rf-attention [RFA]: random-feature attention vs a random-feature MLP.

H. Fu, T. Guo, Y. Bai, S. Mei. What can a single attention layer learn? A study through
the random features lens. NeurIPS 2023 (arXiv 2307.11353).

Claim: multi-head attention with frozen random query-key weights and trained values
(rfa) learns key-permutation-invariant targets of the query and keys with far fewer
samples than a random-feature MLP with the same number of trainable weights (rfmlp);
a non-zero mean in the query-key weights (brfa) helps on targets built from <x_0, x_i>.

One cell is (model, n, seed): the frozen weights are drawn from the seed alone (shared by
every n, and rfa and brfa share the Gaussian part), training data from (seed, n), the
test set from the seed. All targets are fitted from one feature pass and one Gram matrix,
each with its own ridge penalty, chosen on the grid toolkit.ridge.DEFAULT_GRID (relative
to the mean kernel diagonal) by hold-out validation on the last 20% of the training set,
then refitted on all n samples.

Rows: metric `rel_test_error` = mean (f_hat - f)^2 / Var f over a fresh test set of
noiseless targets (Var f = 1 exactly). With label noise on the training targets this is
the excess risk (test MSE minus the noise variance) without the Monte Carlo noise of
subtracting it. Each row carries its target and the chosen `lambda`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from toolkit.data.sphere_tokens import TARGETS, sample_tokens, target_values
from toolkit.params import ParameterError, param
from toolkit.random_features import RandomFeatureAttention, RandomFeatureMLP, rfa_inf_kernel
from toolkit.ridge import fit_ridge, ridge_on_features
from toolkit.rng import generator

NAME = "rf-attention"
OUTPUT = "rf_attention.csv"
MODELS = ("rfa", "brfa", "rfmlp", "rfa-inf")
VAL_FRACTION = 0.2


@dataclass(frozen=True)
class Config:
    heads: int = param(4096, "attention heads M (rfmlp gets M (d+1) units)", low=1)
    dim: int = param(8, "token dimension d (tokens on the sphere S^{d-1})", low=2)
    keys: int = param(8, "number of keys N per input", low=1)
    n: tuple[int, ...] = param(
        tuple(2**k for k in range(7, 14)), "training sample sizes (comma list)", low=2
    )
    seeds: int = param(3, "number of seeds (seeds 0..seeds-1)", low=1)
    models: tuple[str, ...] = param(MODELS, "models to fit (comma list)", choices=MODELS)
    targets: tuple[str, ...] = param(TARGETS, "targets to fit (comma list)", choices=TARGETS)
    bias: float = param(1.0, "mean b of brfa's query-key weights, W_0 = b diag(I_d, 0)")
    noise: float = param(0.0, "label-noise standard deviation on training targets", low=0)
    test_size: int = param(4096, "number of fresh test inputs", low=1)

    def check(self) -> None:
        if self.heads * (self.dim + 1) > 1 << 22:
            raise ParameterError("--heads times (--dim + 1) must be at most 4194304")


PROFILES: dict[str, dict[str, Any]] = {
    # Seconds on a laptop; used by the tests.
    "smoke": {"heads": 512, "n": (128, 256, 512, 1024), "seeds": 2, "test_size": 1024},
    # STUDIES.md's grid with M = 4096.
    "default": {},
    # GPU scale: more samples and seeds.
    "paper": {"heads": 8192, "n": tuple(2**k for k in range(7, 16)), "seeds": 10},
}


def cells(config: Config) -> list[dict[str, Any]]:
    """(model, n, seed) cells, largest n first so parallel workers balance their load."""
    shared = {
        "heads": config.heads,
        "dim": config.dim,
        "keys": config.keys,
        "bias": config.bias,
        "noise": config.noise,
        "test_size": config.test_size,
        "targets": list(config.targets),
    }
    return [
        {"model": model, "n": n, "seed": seed, **shared}
        for n in sorted(config.n, reverse=True)
        for seed in range(config.seeds)
        for model in config.models
    ]


def _tokens(n: int, cell: dict[str, Any], *labels: object) -> tuple[torch.Tensor, torch.Tensor]:
    return sample_tokens(n, cell["keys"], cell["dim"], generator(cell["seed"], *labels))


def _targets(x0: torch.Tensor, xs: torch.Tensor, names: list[str]) -> torch.Tensor:
    return torch.stack([target_values(t, x0, xs) for t in names], dim=1)  # (n, targets)


def run_cell(cell: dict[str, Any], device: str = "cpu") -> list[dict[str, Any]]:
    """Fit every target of one (model, n, seed) cell; one row per target."""
    model, n, seed, names = cell["model"], cell["n"], cell["seed"], cell["targets"]
    x0, xs = _tokens(n, cell, "train", n)
    t0, ts = _tokens(cell["test_size"], cell, "test")
    y = _targets(x0, xs, names)
    if cell["noise"] > 0:
        noise = torch.randn(y.shape, generator=generator(seed, "noise", n), dtype=y.dtype)
        y = y + cell["noise"] * noise
    f_test = _targets(t0, ts, names)
    x0, xs, t0, ts = (a.to(device) for a in (x0, xs, t0, ts))

    if model == "rfa-inf":
        k = rfa_inf_kernel(x0, xs, x0, xs)
        fit = fit_ridge(k, y, val_fraction=VAL_FRACTION)
        pred = rfa_inf_kernel(t0, ts, x0, xs) @ fit.dual
    else:
        if model in ("rfa", "brfa"):
            bias = cell["bias"] if model == "brfa" else 0.0
            fmap = RandomFeatureAttention.draw(
                cell["heads"], cell["dim"], generator(seed, "qk"), bias=bias, device=device
            )
        elif model == "rfmlp":
            units = cell["heads"] * (cell["dim"] + 1)
            fmap = RandomFeatureMLP.draw(
                units, cell["dim"], cell["keys"], generator(seed, "mlp"), device=device
            )
        else:
            raise ValueError(f"model must be one of {', '.join(MODELS)} (got {model!r})")
        pred, fit = ridge_on_features(
            lambda: fmap.blocks(x0, xs), lambda: fmap.blocks(t0, ts), y, val_fraction=VAL_FRACTION
        )

    err = ((pred.cpu() - f_test) ** 2).mean(0)  # Var f = 1 for every target
    return [
        {
            "target": t,
            "metric": "rel_test_error",
            "value": float(err[j]),
            "lambda": float(fit.lambdas[j]),
        }
        for j, t in enumerate(names)
    ]
