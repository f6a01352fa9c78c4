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

Report (toolkit.report): one curve per (model, target); the paper claims no exponent, so
slopes are reported without a theory. The claims are orderings between models, tested by
`comparisons` on the seed-paired errors (models of one seed share the training data):
  - sample-size ratio n_rfmlp / n_rfa: the reference error is rfmlp's at its largest n
    (geometric mean over seeds); n_rfa is where rfa's geometric-mean curve first falls to
    it, by linear interpolation in log-log; a lower bound when rfa is already below it at
    its smallest n, an upper bound when rfa never reaches it. "Several times fewer" is
    read as a ratio of at least SAMPLE_RATIO_CLAIM.
  - error ratio brfa / rfa at the largest n: geometric mean over seeds.
Intervals: toolkit.rates.bootstrap_within (seeds resampled within n, paired across
models), percentile, level toolkit.rates.LEVEL. A claim is supported or not supported
only when the whole interval is on one side of its threshold, else inconclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from toolkit.data.sphere_tokens import TARGETS, sample_tokens, target_values
from toolkit.params import ParameterError, param
from toolkit.random_features import RandomFeatureAttention, RandomFeatureMLP, rfa_inf_kernel
from toolkit.rates import LEVEL, RESAMPLES, SEED, bootstrap_within
from toolkit.ridge import fit_ridge, ridge_on_features
from toolkit.rng import generator
from toolkit.sweep import grid_cells

NAME = "rf-attention"
OUTPUT = "rf_attention.csv"
MODELS = ("rfa", "brfa", "rfmlp", "rfa-inf")
VAL_FRACTION = 0.2

CLAIMS = """\
- inner1, inner2, keys-quad: rfa reaches a given error with several times fewer samples
  than rfmlp (the same number of trainable weights).
- inner2, inner3: brfa (query-key weights with non-zero mean) beats rfa at large n.
- first-key (not permutation invariant): the ordering flips or the gap closes.
- No exponent is claimed: slopes are reported for reference only."""
RATE_GROUPS = ("target",)
FLOORS: dict[str, str] = {}
SAMPLE_RATIO_CLAIM = 2.0  # "several times fewer samples": n_rfmlp / n_rfa at least this
FEWER_SAMPLES_TARGETS = ("inner1", "inner2", "keys-quad")
BIAS_TARGETS = ("inner2", "inner3")
LIMIT_TARGET = "first-key"


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
    """(n, model, seed) cells, largest n first; all targets of a cell are fitted together."""
    return grid_cells(config, {"n": "n", "models": "model"})


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


# ---- report: theory and comparisons (toolkit.report) ----------------------------------


def theory_exponent(setting: dict[str, Any]) -> float | None:
    """[RFA] bounds the sample complexity, not the exponent of the error curve: none."""
    return None


def _paired(frame: pd.DataFrame, target: str, models: tuple[str, str]) -> pd.DataFrame:
    """log rel_test_error of two models at the (n, seed) both have: columns n, seed, *models."""
    rows = frame[(frame["metric"] == "rel_test_error") & (frame["target"] == target)]
    rows = rows[rows["model"].isin(models) & (rows["value"] > 0)]
    wide = rows.pivot_table(index=["n", "seed"], columns="model", values="value", aggfunc="mean")
    if any(m not in wide.columns for m in models):
        return pd.DataFrame(columns=["n", "seed", *models])
    return np.log(wide[list(models)]).dropna().reset_index().sort_values(["n", "seed"])


def _n_means(logs: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-n means of logs (..., points) over its points: (distinct n, (..., n_count))."""
    grid, index = np.unique(n, return_inverse=True)
    member = np.zeros((n.size, grid.size))
    member[np.arange(n.size), index] = 1.0
    return grid, logs @ (member / member.sum(axis=0))


def _samples_to_reach(grid: np.ndarray, curve: np.ndarray, level: float) -> tuple[float, str]:
    """Where a log-log curve first falls to `level`: (n, "=") interpolated, (smallest n,
    ">=") if already below there, (largest n, "<") if never (the ratio's censoring)."""
    if curve[0] <= level:
        return float(grid[0]), ">="
    for i in range(1, grid.size):
        if curve[i] <= level:
            x0, x1 = np.log(grid[i - 1]), np.log(grid[i])
            frac = (curve[i - 1] - level) / (curve[i - 1] - curve[i])
            return float(np.exp(x0 + frac * (x1 - x0))), "="
    return float(grid[-1]), "<"


def _sample_ratio(wide: pd.DataFrame, resamples: int, rng: np.random.Generator) -> dict:
    """n_rfmlp / n_rfa at rfmlp's error at its largest n, with a paired seed bootstrap."""
    n = wide["n"].to_numpy(dtype=float)
    logs = wide[["rfa", "rfmlp"]].to_numpy()  # (points, 2)

    def statistic(sample: np.ndarray) -> tuple[float, str]:
        grid, means = _n_means(sample.T, n)  # means: (2, n_count)
        n_rfa, relation = _samples_to_reach(grid, means[0], means[1, -1])
        return float(grid[-1] / n_rfa), relation

    value, relation = statistic(logs)
    boot = [statistic(b)[0] for b in bootstrap_within(logs, n, resamples, rng)]
    low, high = np.quantile(boot, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    bound = {
        "=": "",
        ">=": " (lower bound: rfa is below it at its smallest n)",
        "<": " (upper bound: rfa never reaches it)",
    }[relation]
    statistic_text = f"n_rfmlp/n_rfa at rfmlp's error at n={int(n.max())}{bound}"
    return {
        "statistic": statistic_text,
        "value": value,
        "ci_low": low,
        "ci_high": high,
        "relation": relation,
    }


def _side(row: dict, threshold: float) -> str | None:
    """ "above" or "below" when the whole interval is on one side of the threshold and the
    statistic's censoring does not hide the other side; None otherwise."""
    if row["ci_low"] >= threshold and row.get("relation", "=") in ("=", ">="):
        return "above"
    if row["ci_high"] < threshold and row.get("relation", "=") in ("=", "<"):
        return "below"
    return None


def comparisons(frame: pd.DataFrame, resamples: int = RESAMPLES, seed: int = SEED) -> pd.DataFrame:
    """The orderings claimed by [RFA], one row per (claim, target) the data allows."""
    rows = []
    targets = set(frame["target"].dropna()) if "target" in frame else set()
    for target in sorted(targets & {*FEWER_SAMPLES_TARGETS, LIMIT_TARGET}):
        wide = _paired(frame, target, ("rfa", "rfmlp"))
        if wide.empty:
            continue
        row = _sample_ratio(wide, resamples, np.random.default_rng(seed))
        side = _side(row, SAMPLE_RATIO_CLAIM)
        if target == LIMIT_TARGET:
            claim = f"ordering flips or gap closes: n_rfmlp/n_rfa < {SAMPLE_RATIO_CLAIM:g}"
            verdict = {"below": "supported", "above": "not supported"}.get(side, "inconclusive")
        else:
            claim = (
                f"rfa needs several times fewer samples: n_rfmlp/n_rfa >= {SAMPLE_RATIO_CLAIM:g}"
            )
            verdict = {"above": "supported", "below": "not supported"}.get(side, "inconclusive")
        del row["relation"]
        rows.append({"claim": claim, "target": target, **row, "verdict": verdict})
    for target in sorted(targets & set(BIAS_TARGETS)):
        wide = _paired(frame, target, ("brfa", "rfa"))
        if wide.empty:
            continue
        last = wide[wide["n"] == wide["n"].max()]
        diff = (last["brfa"] - last["rfa"]).to_numpy()  # (seeds,) paired log ratios
        boot = bootstrap_within(diff, np.zeros(diff.size), resamples, np.random.default_rng(seed))
        low, high = np.exp(np.quantile(boot.mean(axis=1), [(1 - LEVEL) / 2, (1 + LEVEL) / 2]))
        row = {"value": float(np.exp(diff.mean())), "ci_low": low, "ci_high": high}
        side = _side(row, 1.0)
        rows.append(
            {
                "claim": "brfa beats rfa at large n: error ratio brfa/rfa < 1",
                "target": target,
                "statistic": f"error ratio brfa/rfa at n={int(last['n'].iloc[0])}",
                **row,
                "verdict": {"below": "supported", "above": "not supported"}.get(
                    side, "inconclusive"
                ),
            }
        )
    table = pd.DataFrame(
        rows, columns=["claim", "target", "statistic", "value", "ci_low", "ci_high", "verdict"]
    )
    return table.assign(study=NAME)[["study", *table.columns]]
