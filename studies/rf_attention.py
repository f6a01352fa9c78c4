"""Study 1, rf-attention [RFA]: random-feature attention vs a random-feature MLP.

H. Fu, T. Guo, Y. Bai, S. Mei. What can a single attention layer learn? A study through
the random features lens. NeurIPS 2023 (arXiv 2307.11353).

Claim: attention with frozen random query-key weights and trained values (rfa) learns
key-permutation-invariant targets with far fewer samples than a random-feature MLP with as
many trainable weights (rfmlp); a non-zero mean in the query-key weights (brfa) helps on
targets built from <x_0, x_i>. One cell is (model, n, seed, keys N, heads M); models are
entries of MODELS (name -> fit function), fitted by ridge; rows are `rel_test_error`. The
claims are orderings between models, tested by `comparisons`.

Science and measurements: docs/studies/rf-attention.md
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from toolkit.params import ParameterError, param
from toolkit.study import Study

NAME = "rf-attention"
# The targets of toolkit.data.sphere_tokens (TARGETS there; a test checks they agree).
TARGETS = ("inner1", "inner2", "inner3", "keys-quad", "first-key")
VAL_FRACTION = 0.2

CLAIMS = """\
- inner1, inner2, keys-quad: rfa reaches a given error with several times fewer samples
  than rfmlp (the same number of trainable weights).
- inner2, inner3: brfa (query-key weights with non-zero mean) beats rfa at large n.
- first-key (not permutation invariant): the ordering flips or the gap closes.
- No exponent is claimed: slopes are reported for reference only."""
SAMPLE_RATIO_CLAIM = 2.0  # "several times fewer samples": n_rfmlp / n_rfa at least this
FEWER_SAMPLES_TARGETS = ("inner1", "inner2", "keys-quad")
BIAS_TARGETS = ("inner2", "inner3")
LIMIT_TARGET = "first-key"


# ---- Models: name -> fit(cell, train tokens, test tokens, y, device) -> (pred, fit) ---------


def _feature_fit(feature_map: Callable[[dict[str, Any], str], Any]) -> Callable[..., Any]:
    """Ridge on the random features of `feature_map(cell, device)` (toolkit.ridge)."""

    def fit(cell: dict[str, Any], train: tuple, test: tuple, y: Any, device: str) -> Any:
        from toolkit.ridge import ridge_on_features

        fmap = feature_map(cell, device)
        return ridge_on_features(
            lambda: fmap.blocks(*train), lambda: fmap.blocks(*test), y, val_fraction=VAL_FRACTION
        )

    return fit


def _attention(bias: bool) -> Callable[[dict[str, Any], str], Any]:
    def draw(cell: dict[str, Any], device: str) -> Any:
        from toolkit.random_features import RandomFeatureAttention
        from toolkit.rng import generator

        return RandomFeatureAttention.draw(
            cell["heads"],
            cell["dim"],
            generator(cell["seed"], "qk"),
            bias=cell["bias"] if bias else 0.0,
            device=device,
        )

    return draw


def _mlp(cell: dict[str, Any], device: str) -> Any:
    from toolkit.random_features import RandomFeatureMLP
    from toolkit.rng import generator

    units = cell["heads"] * (cell["dim"] + 1)
    return RandomFeatureMLP.draw(
        units, cell["dim"], cell["keys"], generator(cell["seed"], "mlp"), device=device
    )


def _rfa_inf(cell: dict[str, Any], train: tuple, test: tuple, y: Any, device: str) -> Any:
    """Kernel ridge regression with the M -> infinity kernel of rfa."""
    from toolkit.random_features import rfa_inf_kernel
    from toolkit.ridge import fit_ridge

    fit = fit_ridge(rfa_inf_kernel(*train, *train), y, val_fraction=VAL_FRACTION)
    return rfa_inf_kernel(*test, *train) @ fit.dual, fit


# rfa-inf does not depend on M: cells that differ only in heads (the `heads` profile) share
# one fit within a process. The cache key is every other parameter of the cell; a few
# hundred bytes of rows per entry.
INDEPENDENT_OF_HEADS = ("rfa-inf",)


@functools.lru_cache(maxsize=64)
def _rows_without_heads(items: tuple, device: str) -> tuple:
    return tuple(_fit_rows(dict(items), device))


MODELS: dict[str, Callable[..., Any]] = {
    "rfa": _feature_fit(_attention(bias=False)),
    "brfa": _feature_fit(_attention(bias=True)),
    "rfmlp": _feature_fit(_mlp),
    "rfa-inf": _rfa_inf,
}


@dataclass(frozen=True)
class Config:
    heads: tuple[int, ...] = param(
        (4096,), "attention heads M, comma list (rfmlp gets M (d+1) units)", low=1
    )
    dim: int = param(8, "token dimension d (tokens on the sphere S^{d-1})", low=2)
    keys: tuple[int, ...] = param((8,), "numbers of keys N per input (comma list)", low=1)
    n: tuple[int, ...] = param(
        tuple(2**k for k in range(7, 14)), "training sample sizes (comma list)", low=2
    )
    seeds: int = param(3, "number of seeds (seeds 0..seeds-1)", low=1)
    models: tuple[str, ...] = param(tuple(MODELS), "models to fit (comma list)", choices=MODELS)
    targets: tuple[str, ...] = param(TARGETS, "targets to fit (comma list)", choices=TARGETS)
    bias: float = param(1.0, "mean b of brfa's query-key weights, W_0 = b diag(I_d, 0)")
    noise: float = param(0.0, "label-noise standard deviation on training targets", low=0)
    test_size: int = param(4096, "number of fresh test inputs", low=1)

    def check(self) -> None:
        if max(self.heads) * (self.dim + 1) > 1 << 22:
            raise ParameterError("--heads times (--dim + 1) must be at most 4194304")


PROFILES: dict[str, dict[str, Any]] = {
    # Seconds on a laptop; used by the tests.
    "smoke": {"heads": (512,), "n": (128, 256, 512, 1024), "seeds": 2, "test_size": 1024},
    # The study's grid with M = 4096, two seeds (the seed spread is small: three seeds
    # gave sample ratios of 23 [22.6, 23.9] against the claim's 2; two keep make all-studies
    # within its budget).
    "default": {"seeds": 2},
    # Sample complexity against the number of keys: rfmlp's input grows like (N + 1)(d + 1),
    # rfa's permutation-invariant targets do not grow with N (own --out folder).
    "keys": {
        "keys": (2, 4, 8, 16, 32),
        "models": ("rfa", "rfmlp"),
        "targets": ("inner1", "keys-quad", "inner2"),
        "seeds": 2,
    },
    # Approximation error of finitely many heads: rfa against its M -> infinity kernel
    # rfa-inf at the largest n (own --out folder).
    "heads": {
        "heads": (256, 1024, 4096, 16384),
        "n": (8192,),
        "models": ("rfa", "brfa", "rfa-inf"),
        "seeds": 2,
    },
    # GPU scale: more samples and seeds.
    "paper": {"heads": (8192,), "n": tuple(2**k for k in range(7, 16)), "seeds": 10},
}


def _tokens(n: int, cell: dict[str, Any], *labels: object) -> tuple[Any, Any]:
    from toolkit.data.sphere_tokens import sample_tokens
    from toolkit.rng import generator

    return sample_tokens(n, cell["keys"], cell["dim"], generator(cell["seed"], *labels))


def _targets(x0: Any, xs: Any, names: list[str]) -> Any:
    import torch

    from toolkit.data.sphere_tokens import target_values

    return torch.stack([target_values(t, x0, xs) for t in names], dim=1)  # (n, targets)


def run_cell(cell: dict[str, Any], device: str = "cpu") -> list[dict[str, Any]]:
    """Fit every target of one (model, n, seed, keys, heads) cell; one row per target.
    A model in INDEPENDENT_OF_HEADS is fitted once per process for all heads."""
    if cell["model"] in INDEPENDENT_OF_HEADS:
        items = tuple(sorted((k, _frozen(v)) for k, v in cell.items() if k != "heads"))
        return [dict(row) for row in _rows_without_heads(items, device)]
    return _fit_rows(cell, device)


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _fit_rows(cell: dict[str, Any], device: str) -> list[dict[str, Any]]:
    import torch

    from toolkit.rng import generator

    n, seed, names = cell["n"], cell["seed"], cell["targets"]
    fit_model = MODELS[cell["model"]]
    x0, xs = _tokens(n, cell, "train", n)
    t0, ts = _tokens(cell["test_size"], cell, "test")
    y = _targets(x0, xs, names)
    if cell["noise"] > 0:
        noise = torch.randn(y.shape, generator=generator(seed, "noise", n), dtype=y.dtype)
        y = y + cell["noise"] * noise
    f_test = _targets(t0, ts, names)
    x0, xs, t0, ts = (a.to(device) for a in (x0, xs, t0, ts))
    pred, fit = fit_model(cell, (x0, xs), (t0, ts), y, device)

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


# ---- Resources: estimated peak memory (bytes) and relative run time of a cell ---------------

BASE_BYTES = 400 * 2**20  # the interpreter, torch and the study's small tensors
BLOCK = 4096  # feature columns per block (toolkit.random_features)


def _feature_count(cell: dict[str, Any]) -> int:
    return cell["heads"] * (cell["dim"] + 1)


def memory(cell: dict[str, Any]) -> float:
    """Gram matrix, its factors and copies (~6 n^2 float64), kept feature blocks (at most
    2 GiB), one block of train and test features in float64 and its head scores; rfa-inf:
    the kernel rows and its tiles of N^2 key pairs."""
    n, m = cell["n"], cell["test_size"]
    tokens = 8 * (n + m) * (cell["keys"] + 1) * (cell["dim"] + 1) * 3
    solve = 6 * 8 * n * n + 8 * n * len(cell["targets"]) * 4
    keys = cell["keys"]
    if cell["model"] == "rfa-inf":  # kernel rows, and tiles of >= N^2 key pairs (a few copies)
        work = 2 * 8 * m * n + 4 * 6 * max(1 << 16, keys * keys)
    else:  # kept blocks, one block in float64, the head scores (n, heads per block, N)
        heads = max(1, BLOCK // (cell["dim"] + 1))
        work = min(4 * n * _feature_count(cell), 2 << 30) + 3 * 8 * BLOCK * (n + m)
        work += 4 * 3 * max(n, m) * heads * keys
    return BASE_BYTES + tokens + solve + work + 8 * m * len(cell["targets"]) * 2


def cost(cell: dict[str, Any]) -> float:
    """Seconds on one CPU core, roughly: the Gram (n^2 p), ten factorisations (~3 n^3), the
    features; rfa-inf: N^2 arc-cosine evaluations per pair of inputs (about 2 ns each)."""
    n, m, keys = cell["n"], cell["test_size"], cell["keys"]
    factor = 3.0 * n**3 / 2e10
    if cell["model"] == "rfa-inf":
        return 0.1 + factor + (n * n / 2 + n * m) * keys**2 * 2e-9
    p = _feature_count(cell)
    features = (n + m) * cell["heads"] * ((cell["dim"] + 1) ** 2 + 2 * keys * (cell["dim"] + 1))
    return 0.5 + factor + (n * n * p + features) / 2e10


# ---- Report: theory and comparisons (toolkit.report) ----------------------------------


def _paired(frame: Any, target: str, models: tuple[str, str]) -> Any:
    """log rel_test_error of two models at the (n, seed) both have: columns n, seed, *models.
    Only usable points (toolkit.rates.usable_rows): a finite positive value at n > 0."""
    import numpy as np
    import pandas as pd

    from toolkit.rates import usable_rows

    rows = frame[(frame["metric"] == "rel_test_error") & (frame["target"] == target)]
    rows = usable_rows(rows[rows["model"].isin(models)])
    wide = rows.pivot_table(index=["n", "seed"], columns="model", values="value", aggfunc="mean")
    if any(m not in wide.columns for m in models):
        return pd.DataFrame(columns=["n", "seed", *models])
    return np.log(wide[list(models)]).dropna().reset_index().sort_values(["n", "seed"])


def _n_means(logs: Any, n: Any) -> tuple[Any, Any]:
    """Per-n means of logs (..., points) over its points: (distinct n, (..., n_count))."""
    import numpy as np

    grid, index = np.unique(n, return_inverse=True)
    member = np.zeros((n.size, grid.size))
    member[np.arange(n.size), index] = 1.0
    return grid, logs @ (member / member.sum(axis=0))


def _samples_to_reach(grid: Any, curve: Any, level: float) -> tuple[float, str]:
    """Where a log-log curve first falls to `level`: (n, "=") interpolated, (smallest n,
    ">=") if already below there, (largest n, "<") if never (the ratio's censoring)."""
    import numpy as np

    if curve[0] <= level:
        return float(grid[0]), ">="
    for i in range(1, grid.size):
        if curve[i] <= level:
            x0, x1 = np.log(grid[i - 1]), np.log(grid[i])
            frac = (curve[i - 1] - level) / (curve[i - 1] - curve[i])
            return float(np.exp(x0 + frac * (x1 - x0))), "="
    return float(grid[-1]), "<"


def _sample_ratio(wide: Any, resamples: int, rng: Any) -> dict:
    """n_rfmlp / n_rfa at rfmlp's error at its largest n, with a paired seed bootstrap."""
    import numpy as np

    from toolkit.rates import LEVEL, bootstrap_within

    n = wide["n"].to_numpy(dtype=float)
    logs = wide[["rfa", "rfmlp"]].to_numpy()  # (points, 2)

    def statistic(sample: Any) -> tuple[float, str]:
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


def _error_ratio(wide: Any, resamples: int, rng: Any) -> dict:
    """brfa / rfa error ratio at the largest n: geometric mean over paired seeds."""
    import numpy as np

    from toolkit.rates import LEVEL, bootstrap_within

    last = wide[wide["n"] == wide["n"].max()]
    diff = (last["brfa"] - last["rfa"]).to_numpy()  # (seeds,) paired log ratios
    boot = bootstrap_within(diff, np.zeros(diff.size), resamples, rng)
    low, high = np.exp(np.quantile(boot.mean(axis=1), [(1 - LEVEL) / 2, (1 + LEVEL) / 2]))
    return {
        "statistic": f"error ratio brfa/rfa at n={int(last['n'].iloc[0])}",
        "value": float(np.exp(diff.mean())),
        "ci_low": low,
        "ci_high": high,
    }


def _side(row: dict, threshold: float) -> str | None:
    """ "above" or "below" when the whole interval is on one side of the threshold and the
    statistic's censoring does not hide the other side; None otherwise."""
    if row["ci_low"] >= threshold and row.get("relation", "=") in ("=", ">="):
        return "above"
    if row["ci_high"] < threshold and row.get("relation", "=") in ("=", "<"):
        return "below"
    return None


# n_eps in N is read at an error level at most this (errors are relative to Var f = 1, the
# zero predictor's): a curve that stays near 1 has learnt nothing, and its "n_eps" at 0.98
# would be noise.
EPS_MAX = 0.5
SETTING_COLUMNS = ("keys", "heads")  # axes besides n and model; a claim is tested per value


def _groups(frame: Any) -> Any:
    """(label suffix, rows) per value of the SETTING_COLUMNS that vary in the frame."""
    cols = [c for c in SETTING_COLUMNS if c in frame and frame[c].nunique(dropna=False) > 1]
    if not cols:
        yield "", frame
        return
    for key, rows in frame.groupby(cols, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        yield "".join(f", {c}={v:g}" for c, v in zip(cols, key, strict=True)), rows


def _ordering_claims(frame: Any, resamples: int, seed: int) -> list[dict]:
    """The orderings between models along n, per target and setting of keys and heads."""
    import numpy as np

    from toolkit.stats import INCONCLUSIVE, MIN_N, Claim, judge

    ratio = f"n_rfmlp/n_rfa >= {SAMPLE_RATIO_CLAIM:g}"
    claims = []  # (claim, target, models, statistic, claimed side)
    targets = set(frame["target"].dropna()) if "target" in frame else set()
    for target in sorted(targets & {*FEWER_SAMPLES_TARGETS, LIMIT_TARGET}):
        if target == LIMIT_TARGET:
            claim = f"ordering flips or gap closes: n_rfmlp/n_rfa < {SAMPLE_RATIO_CLAIM:g}"
            claims.append((claim, target, ("rfa", "rfmlp"), _sample_ratio, "below"))
        else:
            claim = f"rfa needs several times fewer samples: {ratio}"
            claims.append((claim, target, ("rfa", "rfmlp"), _sample_ratio, "above"))
    for target in sorted(targets & set(BIAS_TARGETS)):
        claim = "brfa beats rfa at large n: error ratio brfa/rfa < 1"
        claims.append((claim, target, ("brfa", "rfa"), _error_ratio, "below"))

    rows = []
    for suffix, group in _groups(frame):
        for claim, target, models, statistic, claimed in claims:
            wide = _paired(group, target, models)
            if wide.empty:
                continue
            row = {"claim": claim, "setting": f"target={target}{suffix}"}
            # A sample ratio needs a curve in n; an error ratio at the largest n needs seeds.
            distinct = wide["n"].nunique()
            seeds = (wide["n"] == wide["n"].max()).sum()
            if statistic is _sample_ratio and distinct < MIN_N:
                text = f"{distinct} distinct n with finite errors (needs {MIN_N})"
                rows.append(_inconclusive(row, text))
                continue
            if statistic is _error_ratio and seeds < 2:
                rows.append(_inconclusive(row, f"{seeds} seed at the largest n (needs 2)"))
                continue
            result = statistic(wide, resamples, np.random.default_rng(seed))
            threshold = SAMPLE_RATIO_CLAIM if statistic is _sample_ratio else 1.0
            # a sign claim (margin 0) whose censored side cannot decide: toolkit.stats.judge
            # on the interval, then inconclusive where the censoring hides the other side
            kind = "lower bound" if claimed == "above" else "upper bound"
            verdict = str(judge(result["ci_low"], result["ci_high"], Claim(threshold, kind, 0)))
            if _side(result, threshold) is None:
                verdict = INCONCLUSIVE
            result.pop("relation", None)
            rows.append({**row, **result, "verdict": verdict})
    return rows


def _inconclusive(row: dict, text: str) -> dict:
    nan = float("nan")
    return {**row, "statistic": text, "value": nan, "ci_low": nan, "ci_high": nan,
            "verdict": "inconclusive"}  # fmt: skip


def _interval(draws: Any) -> tuple[float, float]:
    import numpy as np

    from toolkit.rates import LEVEL

    low, high = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(low), float(high)


def _log_slope(x: Any, logs: Any) -> Any:
    """Least-squares slopes of logs (..., points) on log x (points,): toolkit.stats'."""
    import numpy as np

    from toolkit.stats import slope_coefficients

    return logs @ slope_coefficients(np.log(x), np.ones(len(x)))


def _n_eps_by_keys(rows: Any, resamples: int, seed: int) -> dict | None:
    """n_eps against N for one (model, target): eps is the middle of default_levels (a level
    every N's seed-mean curve brackets when they overlap); the slope of log n_eps on log N
    over the N that reach it, with the seeds resampled within (N, n). Draws that do not
    reach eps at some N count as 2 n_max there (censored upwards). None when fewer than
    MIN_N values of N reach eps."""
    import numpy as np

    from toolkit.rates import bootstrap_within, default_levels, first_reach, log_means
    from toolkit.stats import MIN_N

    rows = rows[(rows["value"] > 0) & np.isfinite(rows["value"])]
    curves = {k: c for k, c in rows.groupby("keys", sort=True)}
    means = [np.exp(np.log(c["value"]).groupby(c["n"]).mean()).to_numpy() for c in curves.values()]
    levels = default_levels(means, count=1)
    if not levels:
        return None
    eps = min(levels[0], EPS_MAX)
    rng = np.random.default_rng(seed)
    keys, point, draws = [], [], []
    for n_keys, c in curves.items():
        n, logs = c["n"].to_numpy(dtype=float), np.log(c["value"].to_numpy())
        grid, mean = log_means(n, logs)
        found = float(first_reach(grid, mean, eps))
        if not np.isfinite(found) or found <= grid[0]:
            continue  # not reached, or only bounded (reached at the smallest n)
        boot = log_means(n, bootstrap_within(logs, n, resamples, rng))[1]
        reach = first_reach(grid, boot, eps)
        keys.append(float(n_keys))
        point.append(found)
        draws.append(np.where(np.isfinite(reach), reach, 2 * grid[-1]))
    if len(keys) < MIN_N:
        return {"eps": eps, "keys": keys, "slope": None}
    keys_arr = np.array(keys)
    slope = float(_log_slope(keys_arr, np.log(point)))
    boot = _log_slope(keys_arr, np.log(np.array(draws)).T)  # (resamples,)
    return {"eps": eps, "keys": keys, "n_eps": point, "slope": slope, "draws": boot}


def _keys_claims(frame: Any, resamples: int, seed: int) -> list[dict]:
    """How n_eps grows with the number of keys N (rfa against rfmlp), per target."""
    from toolkit.stats import MIN_N, Claim, judge

    if "keys" not in frame or frame["keys"].nunique() < MIN_N:
        return []
    rows = []
    frame = frame[frame["metric"] == "rel_test_error"]
    for target in sorted(set(frame["target"].dropna()) & set(FEWER_SAMPLES_TARGETS)):
        fits = {}
        for model in ("rfa", "rfmlp"):
            curve = frame[(frame["target"] == target) & (frame["model"] == model)]
            if curve.empty:
                continue
            for suffix, group in _groups(curve.drop(columns="keys")):
                fits[model, suffix] = _n_eps_by_keys(curve.loc[group.index], resamples, seed)
        for (model, suffix), fit in fits.items():
            grows = model == "rfmlp"
            claim = (f"n_eps of {model} " + ("grows with N: slope > 0" if grows else
                     "does not grow with N: slope <= 0"))  # fmt: skip
            row = {"claim": claim, "setting": f"target={target}{suffix}"}
            if fit is None or fit["slope"] is None:
                reached = 0 if fit is None else len(fit["keys"])
                rows.append(_inconclusive(row, f"{reached} values of N reach eps (needs {MIN_N})"))
                continue
            low, high = _interval(fit["draws"])
            n_eps = ", ".join(
                f"{k:g}:{v:.0f}" for k, v in zip(fit["keys"], fit["n_eps"], strict=True)
            )
            text = f"slope of log n_eps on log N at eps={fit['eps']:.3g} (N:n_eps {n_eps})"
            # grows: a sign claim (margin 0); does not grow: slope <= 0 up to the default
            # margin (a flat n_eps cannot be shown below 0 itself)
            claimed = Claim(0.0, "lower bound", 0.0) if grows else Claim(0.0, "upper bound")
            verdict = str(judge(low, high, claimed))
            rows.append({**row, "statistic": text, "value": fit["slope"], "ci_low": low,
                         "ci_high": high, "verdict": verdict})  # fmt: skip
        for (model, suffix), fit in fits.items():
            other = fits.get(("rfa", suffix))
            if model != "rfmlp" or fit is None or other is None:
                continue
            if fit["slope"] is None or other["slope"] is None:
                continue
            draws = fit["draws"] - other["draws"]
            low, high = _interval(draws)
            verdict = str(judge(low, high, Claim(0.0, "lower bound", 0.0)))
            rows.append({
                "claim": "n_eps grows faster with N for rfmlp than for rfa: slope difference > 0",
                "setting": f"target={target}{suffix}",
                "statistic": "slope of log n_eps on log N, rfmlp minus rfa",
                "value": fit["slope"] - other["slope"], "ci_low": low, "ci_high": high,
                "verdict": verdict,
            })  # fmt: skip
    return rows


def _heads_claims(frame: Any, resamples: int, seed: int) -> list[dict]:
    """How rfa's error approaches its M -> infinity limit rfa-inf as M grows: the slope of
    log(seed-mean error gap) on log M at the largest n, per target, with the seeds resampled
    within M (paired: rfa and rfa-inf of one seed share the data)."""
    import numpy as np

    from toolkit.rates import bootstrap_within
    from toolkit.stats import Claim, judge

    if "heads" not in frame or frame["heads"].nunique() < 2:
        return []
    frame = frame[frame["metric"] == "rel_test_error"]
    rows = []
    for target in sorted(set(frame["target"].dropna())):
        rel = frame[frame["target"] == target]
        rel = rel[rel["n"] == rel["n"].max()]
        inf = rel[rel["model"] == "rfa-inf"].groupby("seed")["value"].mean()
        rfa = rel[rel["model"] == "rfa"].set_index(["heads", "seed"])["value"]
        if inf.empty or rfa.empty:
            continue
        pairs = rfa.to_frame("rfa").join(inf.rename("inf"), on="seed").dropna().reset_index()
        n_max = int(rel["n"].max())
        claim = "rfa approaches rfa-inf as M grows: slope of the error gap in M < 0"
        row = {"claim": claim, "setting": f"target={target}, n={n_max}"}
        heads = pairs["heads"].to_numpy(dtype=float)
        grid, gaps = _gap_means(heads, pairs[["rfa", "inf"]].to_numpy())
        keep = gaps > 0
        if keep.sum() < 2 or (pairs.groupby("heads").size() < 2).any():
            text = f"{int(keep.sum())} values of M with a positive gap and 2 seeds (needs 2)"
            rows.append(_inconclusive(row, text))
            continue
        boot = bootstrap_within(pairs[["rfa", "inf"]].to_numpy(), heads, resamples,
                                np.random.default_rng(seed))  # fmt: skip
        boot_gaps = np.stack([_gap_means(heads, b)[1] for b in boot])[:, keep]
        slope = float(_log_slope(grid[keep], np.log(gaps[keep])))
        slopes = _log_slope(grid[keep], np.log(np.maximum(boot_gaps, 1e-300)))
        low, high = _interval(slopes)
        values = ", ".join(f"{m:g}:{g:.2g}" for m, g in zip(grid[keep], gaps[keep], strict=True))
        verdict = str(judge(low, high, Claim(0.0, "upper bound", 0.0)))
        rows.append({**row, "statistic": f"slope of log(error_rfa - error_rfa-inf) on log M "
                     f"(M:gap {values})", "value": slope, "ci_low": low, "ci_high": high,
                     "verdict": verdict})  # fmt: skip
    return rows


def _gap_means(heads: Any, pairs: Any) -> tuple[Any, Any]:
    """Per-M means of rfa minus rfa-inf errors: (distinct M, gaps)."""
    from toolkit.rates import log_means

    return log_means(heads, pairs[:, 0] - pairs[:, 1])


def comparisons(frame: Any, resamples: int | None = None, seed: int | None = None) -> Any:
    """The orderings claimed by [RFA], one row per (claim, target, setting) the data allows;
    with several numbers of keys, how n_eps grows with N; with several numbers of heads, how
    rfa approaches rfa-inf.

    A sample ratio whose paired curves have fewer than toolkit.rates.MIN_N distinct n (after
    dropping non-finite or non-positive values and n <= 0) is inconclusive."""
    import pandas as pd

    from toolkit.rates import RESAMPLES, SEED
    from toolkit.study import COMPARISON_COLUMNS

    resamples = RESAMPLES if resamples is None else resamples
    seed = SEED if seed is None else seed
    rows = _ordering_claims(frame, resamples, seed)
    rows += _keys_claims(frame, resamples, seed)
    rows += _heads_claims(frame, resamples, seed)
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS[1:])).assign(study=NAME)[
        list(COMPARISON_COLUMNS)
    ]


STUDY = Study(
    name=NAME,
    summary="Random-feature multi-head attention (frozen Gaussian query-key weights, trained "
    "values) learns key-permutation-invariant targets with several times fewer samples than "
    "a random-feature MLP with as many trainable weights [RFA].",
    config=Config,
    axes={"n": "n", "models": "model", "keys": "keys", "heads": "heads"},
    run_cell=run_cell,
    profiles=PROFILES,
    memory=memory,
    cost=cost,
    readme="docs/studies/rf-attention.md",
    claims=CLAIMS,
    rate_groups=("target", "keys", "heads"),
    comparisons=comparisons,
)
