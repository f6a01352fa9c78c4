"""Study 4, inverse-problem [CDM, applications]: a rate that does not depend on m.

H. Fu, Z. Yang, M. Wang, M. Chen. Unveil conditional diffusion models with classifier-free
guidance: a sharp statistical theory. arXiv 2403.11968 (2024), linear inverse problems.

Claim: learning p(x | y) for y = a x + sigma eps in R^m by conditional diffusion, the score
error falls like n^{-2 beta / (d + 2 beta)} and the TV like n^{-beta / (d + 2 beta)},
whatever the measurement dimension m. Ground truth: toolkit.data.linear_inverse. One cell
is (meas_dim, beta, estimator, n, seed); estimators are entries of ESTIMATORS (kernel,
oracle-stat, neural); rows are score_error and the Fokker-Planck tv.

Science and measurements: docs/studies/inverse-problem.md
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from toolkit.params import DiffusionParams, ParameterError, param, redefault, training_steps
from toolkit.study import Study

NAME = "inverse-problem"
VAL_FRACTION = 0.1  # of the n pairs held out for early stopping (neural)
CHECK_EVERY = 100  # steps between early-stopping checks
WIDTH_REFERENCE_N = 1000  # --width is the trunk width at n = 1000
RATE_METRICS = ("score_error", "tv")  # the curves the m-comparison is made on

CLAIMS = """\
- Linear inverse problem y = a x + sigma eps in R^m, prior of x of Hoelder smoothness beta
  ([CDM], applications): the conditional diffusion model's score error falls like
  n^{-2 beta / (d + 2 beta)} and its TV like n^{-beta / (d + 2 beta)}, independent of the
  measurement dimension m: slope(m = 16) - slope(m = 1) is 0 within the margin 0.1.
- The generic conditional rate with d_y = m, n^{-beta / (d + m + 2 beta)} for the TV, is what
  an estimator that smooths over all m coordinates of y (the product kernel) gets: its rate
  degrades with m, while the kernel given a^T y (`oracle-stat`) does not.
- The TV is the exact law of the reverse SDE (Fokker-Planck), so no sampling floor."""


def _rate(beta: float, m: int = 0) -> float:
    """beta / (d + m + 2 beta) with d = 1: m = 0 is the inverse-problem (m-free) rate."""
    return beta / (1 + m + 2 * beta)


def theory(setting: dict[str, Any]) -> Any:
    """The m-free exponents as upper bounds (one prior of the class): -2 beta/(d + 2 beta)
    for the score error, -beta/(d + 2 beta) for the TV; rel_score_error is score_error
    over an n-free constant (no claim of its own); the m comparisons are `comparisons`."""
    from toolkit.stats import Claim

    rate = _rate(float(setting["beta"]))
    value = {"score_error": -2 * rate, "tv": -rate}.get(setting["metric"])
    return None if value is None else Claim(value, "upper bound")


# ---- Estimators: name -> build(cell, data, x, y, process, device) ------------------------
# Each returns (score(x, y, t), at_condition(y0) -> score(x, t), null score(x, t), info()),
# with y the full measurement (batch, m); info() gives the columns recorded with every row.


def _kernel_on(cell: dict[str, Any], x: Any, cond: Any, process: Any) -> tuple[Any, float]:
    """KernelScore on (x, cond) with h = bandwidth n^{-1/(d + d_cond + 2 beta)}."""
    from toolkit.kernel_score import KernelScore

    h = cell["bandwidth"] * cell["n"] ** (-1 / (1 + cond.shape[1] + 2 * cell["beta"]))
    return KernelScore(x, cond, h, h, process, order=cell["kernel_order"]), h


def _kernel_info(cell: dict[str, Any], est: Any, h: float) -> Callable[[], dict[str, Any]]:
    def info() -> dict[str, Any]:
        fallback = est.fallback_rate if cell["kernel_order"] == 4 else 0.0
        return {"train_steps": 0, "steps_run": 0, "best_step": 0, "net_width": 0,
                "bandwidth_h": h, "fallback_rate": fallback, "final_loss": math.nan}  # fmt: skip

    return info


def _kernel(cell: dict[str, Any], data: Any, x: Any, y: Any, process: Any, device: str):
    """The product kernel over all m coordinates of y."""
    est, h = _kernel_on(cell, x, y, process)
    return est.score, est.at_condition, est.null_score, _kernel_info(cell, est, h)


def _oracle_stat(cell: dict[str, Any], data: Any, x: Any, y: Any, process: Any, device: str):
    """The kernel estimator given the sufficient statistic s = a^T y."""
    a = data.direction.to(y)

    def stat(ys: Any) -> Any:  # (batch, m) -> (batch, 1)
        return (ys.to(a) @ a).unsqueeze(1)

    est, h = _kernel_on(cell, x, stat(y), process)
    return (
        lambda xs, ys, t: est.score(xs, stat(ys), t),
        lambda y0: est.at_condition(stat(y0.view(1, -1))[0]),
        est.null_score,
        _kernel_info(cell, est, h),
    )


def net_width(cell: dict[str, Any]) -> int:
    """The trunk width at n: --width (n / 1000)^{(d + 1)/(d + 1 + 2 beta)} in [8, --max-width]
    (the dimension of (x, a^T y): the same for every m)."""
    growth = (cell["n"] / WIDTH_REFERENCE_N) ** (2 / (2 + 2 * cell["beta"]))
    return int(min(cell["max_width"], max(8, round(cell["width"] * growth))))


def _neural(cell: dict[str, Any], data: Any, x: Any, y: Any, process: Any, device: str):
    """ConditionalScoreNet trained by DSM with classifier-free-guidance masking and early
    stopping on a held-out DSM loss (as conditional-diffusion's neural estimator)."""
    import torch

    from toolkit.diffusion import held_out_dsm_loss, token_drop, train_dsm
    from toolkit.rng import derive_seed, generator
    from toolkit.score_network import ConditionalScoreNet

    n, m, beta, width = cell["n"], cell["meas_dim"], cell["beta"], net_width(cell)
    with torch.random.fork_rng(devices=[]):  # a seeded init without touching global state
        torch.manual_seed(derive_seed(cell["seed"], "init", m, beta, n))
        net = ConditionalScoreNet(1, m, width, cell["depth"])
    net = net.to(device)
    dtype = next(net.parameters()).dtype
    x, y = x.to(dtype), y.to(dtype)
    held = max(1, round(VAL_FRACTION * n))
    (x_val, x), (y_val, y) = (x[:held], x[held:]), (y[:held], y[held:])
    n_fit = x.shape[0]
    steps = training_steps(
        n_fit, cell["batch"], cell["epochs"], cell["min_steps"], cell["max_steps"]
    )
    g = generator(cell["seed"], "train", m, beta, n)  # minibatches, masks, times and noise

    def batches(step: int) -> tuple[Any, ...]:
        idx = torch.randint(n_fit, (min(cell["batch"], n_fit),), generator=g)
        drop = token_drop(idx.numel(), cell["p_uncond"], g).to(x.device)
        idx = idx.to(x.device)
        return x[idx], y[idx], drop

    keep = torch.zeros(held, dtype=torch.bool, device=x.device)  # the conditional loss
    validation = held_out_dsm_loss(
        net, process, x_val, generator(cell["seed"], "validation", m, beta, n), y_val, keep,
        times="log-uniform",
    )  # fmt: skip
    run = train_dsm(
        net, process, batches, steps, cell["lr"], g, times="log-uniform", parametrisation="eps",
        schedule="linear", validation=validation, check_every=CHECK_EVERY,
        patience=cell["patience"],
    )  # fmt: skip
    final = sum(run.losses[-50:]) / len(run.losses[-50:])

    def info() -> dict[str, Any]:
        return {"train_steps": steps, "steps_run": run.steps, "best_step": run.best_step,
                "net_width": width, "bandwidth_h": 0.0, "fallback_rate": math.nan,
                "final_loss": final}  # fmt: skip

    def at_condition(y0: Any):
        return lambda xs, t: net.score(xs, t, y0.to(dtype).expand(xs.shape[0], -1), process)

    return (
        lambda xs, ys, t: net.score(xs, t, ys, process),
        at_condition,
        lambda xs, t: net.score(xs, t, None, process),
        info,
    )


ESTIMATORS: dict[str, Callable[..., Any]] = {
    "neural": _neural,
    "kernel": _kernel,
    "oracle-stat": _oracle_stat,
}


@dataclass(frozen=True)
class Config(DiffusionParams):
    meas_dim: tuple[int, ...] = param(
        (1, 4, 16), "measurement dimensions m of y = a x + sigma eps (comma list)", low=1
    )
    noise_level: float = param(1.0, "measurement noise sigma", low=0, low_open=True)
    beta: tuple[float, ...] = param(
        (1.5,), "Hoelder smoothness beta of the prior (comma list)", low=0, low_open=True
    )
    n: tuple[int, ...] = param(
        (316, 1000, 3162, 10000), "training sample sizes (comma list)", low=2
    )
    seeds: int = param(2, "number of seeds (seeds 0..seeds-1)", low=1)
    estimators: tuple[str, ...] = param(
        tuple(ESTIMATORS), "score estimators (comma list)", choices=ESTIMATORS
    )
    p_uncond: float = param(0.5, "probability of masking y to the null token", low=0, high=1)
    guidance: float = param(0.0, "classifier-free guidance weight w for sampling", low=0)
    width: int = param(64, "neural: trunk width at n = 1000 (grows with n)", low=1)
    max_width: int = param(128, "neural: largest trunk width", low=8)
    depth: int = param(2, "neural: residual blocks in the trunk", low=0)
    patience: int = param(20, "neural: early-stopping checks without improvement", low=1)
    kernel_order: int = param(2, "kernels: order of the kernel, 2 or 4", low=2, high=4)
    bandwidth: float = param(
        1.0, "kernels: h_x = h_y = bandwidth * n^(-1/(d + d_y + 2 beta))", low=0, low_open=True
    )
    amplitude: float = param(2.0, "prior: A in p(x) ∝ phi(x)(1 + A psi_beta(x - c))", low=0)
    kink: float = param(0.0, "prior: the kink c in p(x) ∝ phi(x)(1 + A psi_beta(x - c))")
    conditions: int = param(2, "test conditions for E_y TV", low=1)
    fp_cells: int = param(300, "Fokker-Planck cells on [-8, 8] for the TV", low=10)
    test_size: int = param(2048, "test pairs for the score error", low=2)
    # The training budget and learning rate of conditional-diffusion's neural estimator.
    epochs: float = redefault(DiffusionParams, "epochs", 100.0)
    min_steps: int = redefault(DiffusionParams, "min_steps", 1500)
    batch: int = redefault(DiffusionParams, "batch", 256)
    lr: float = redefault(DiffusionParams, "lr", 2e-3)
    sampler_steps: int = redefault(DiffusionParams, "sampler_steps", 50)

    def check(self) -> None:
        super().check()
        if self.kernel_order not in (2, 4):
            raise ParameterError(f"--kernel-order must be 2 or 4 (got {self.kernel_order})")


PROFILES: dict[str, dict[str, Any]] = {
    # Seconds on 2 CPU cores; used by the tests.
    "smoke": {
        "meas_dim": (1, 4),
        "n": (200, 800),
        "seeds": 1,
        "min_steps": 150,
        "max_steps": 150,
        "width": 32,
        "sampler_steps": 30,
        "fp_cells": 200,
        "conditions": 2,
        "test_size": 1024,
    },
    # The field defaults: m = 1, 4, 16, beta = 1.5, n = 316 .. 10^4, 2 seeds (72 cells).
    "default": {},
    # GPU scale: more n, seeds, conditions and test points, two smoothnesses.
    "paper": {
        "beta": (0.5, 1.5),
        "n": tuple(round(10 ** (2.5 + k / 2)) for k in range(6)),
        "seeds": 5,
        "max_width": 512,
        "depth": 3,
        "sampler_steps": 200,
        "fp_cells": 1000,
        "conditions": 8,
        "test_size": 16384,
    },
}


def _tv_conditions(cell: dict[str, Any], data: Any) -> tuple[Any, Any]:
    """The TV's conditions: s_k = sqrt(1 + sigma^2) Phi^{-1}((k + 1/2) / K) and typical
    measurements y_k = a s_k + sigma (I - a a^T) eps_k with that statistic: (K,), (K, m)."""
    import torch

    from toolkit.rng import generator

    k, sigma = cell["conditions"], cell["noise_level"]
    u = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    s = math.sqrt(1 + sigma**2) * math.sqrt(2) * torch.special.erfinv(2 * u - 1)
    g = generator(cell["seed"], "tv", cell["meas_dim"])
    eps = torch.randn(k, cell["meas_dim"], generator=g, dtype=torch.float64)
    a = data.direction
    perp = eps - (eps @ a).unsqueeze(1) * a
    return s, s.unsqueeze(1) * a + sigma * perp


def _fokker_planck_tv(cell, data, process, scores: list, s: Any, device: str) -> float:
    """Mean TV over the conditions between the reverse-SDE laws of the per-condition score
    functions (toolkit.fokker_planck) and the exact p_t0(. | s_k)."""
    import torch

    from toolkit.fokker_planck import Grid, cell_averages, reverse_sde_law, total_variation

    grid = Grid(cells=cell["fp_cells"])
    faces = grid.faces.to(device)

    def batched(x: Any, t: Any) -> Any:  # x: (conditions, faces) -> scores, same shape
        times = t.to(device).expand(faces.numel())
        return torch.stack([fn(faces.unsqueeze(1), times)[:, 0].cpu() for fn in scores])

    try:
        law = reverse_sde_law(batched, process, len(scores), grid, cell["sampler_steps"])
    except ValueError as err:  # a score that is not finite somewhere: no law to compare
        if "non-finite" in str(err):
            return math.inf
        raise
    t0 = torch.full((1,), process.t0, dtype=torch.float64)

    def exact(x: Any) -> Any:  # x: (points,) -> (conditions, points)
        return torch.stack([
            data.density(x.unsqueeze(1), sk.expand(x.numel()), t0.expand(x.numel())) for sk in s
        ])  # fmt: skip

    return float(total_variation(law, cell_averages(exact, grid), grid).mean())


def run_cell(cell: dict[str, Any], device: str = "cpu") -> list[dict[str, Any]]:
    """Fit one estimator on n pairs (x, y); score error and TV; one row per metric."""
    from toolkit.data.linear_inverse import LinearInverse
    from toolkit.diffusion import OUProcess, guided_score
    from toolkit.metrics import log_uniform_design, weighted_score_error
    from toolkit.rng import derive_seed, generator

    seed, m, beta, n = cell["seed"], cell["meas_dim"], cell["beta"], cell["n"]
    process = OUProcess(cell["t0"], cell["horizon"])
    data = LinearInverse(
        beta, m, cell["noise_level"], cell["amplitude"], cell["kink"],
        seed=derive_seed(seed, "direction", m), process=process,
    )  # fmt: skip
    x, y = data.sample_joint(n, generator(seed, "data", m, beta, n))
    cond_score, at_condition, null_score, info = ESTIMATORS[cell["model"]](
        cell, data, x.to(device), y.to(device), process, device
    )

    # Score error on pairs of the joint law, log-uniform importance-weighted t.
    g = generator(seed, "test", m, beta)
    x_test, y_test = data.sample_joint(cell["test_size"], g)
    s_test = data.statistic(y_test).to(device)
    x_test, y_test = x_test.to(device), y_test.to(device)
    times, weights = log_uniform_design(process, cell["test_size"], g)
    values = weighted_score_error(
        lambda xs, t: cond_score(xs, y_test, t),
        lambda xs, t: data.score(xs, s_test, t),
        x_test, process, g, times, weights,
    )  # fmt: skip
    columns = info()  # the kernel's fallback rate on the test points, not the TV grid

    # E_y TV of the reverse-SDE law by its Fokker-Planck equation, and the solver's error.
    s, ys = _tv_conditions(cell, data)
    ys = ys.to(device)
    score_at = [guided_score(at_condition(y0), null_score, cell["guidance"]) for y0 in ys]
    values["tv"] = _fokker_planck_tv(cell, data, process, score_at, s, device)
    exact_at = [(lambda xs, t, sk=sk: data.score(xs, sk.to(xs).expand(xs.shape[0]), t)) for sk in s]
    values["tv_exact_score"] = _fokker_planck_tv(cell, data, process, exact_at, s, device)
    return [{"metric": name, "value": value, **columns} for name, value in values.items()]


# ---- Resources: estimated peak memory (bytes) and relative run time of a cell ---------------

BASE_BYTES = 400 * 2**20  # the interpreter, torch and small tensors
QUADRATURE = 2 * 80  # Gauss-Jacobi nodes per exact-score evaluation (both sides of the kink)
KERNEL_CHUNK = 1 << 22  # entries of the kernel estimator's responsibility chunks


def memory(cell: dict[str, Any]) -> float:
    """Data and test pairs, their quadrature and kernel temporaries (four components at
    order 4), the Fokker-Planck grid and its bands, the network with Adam state and its
    activations."""
    m, n = cell["meas_dim"], cell["n"]
    points = max(cell["test_size"], cell["fp_cells"] + 1)
    arrays = 8 * (n + cell["test_size"]) * (1 + m) * 8
    quadrature = 8 * points * QUADRATURE * 8
    fokker_planck = 8 * (cell["fp_cells"] + 1) * cell["conditions"] * 16
    kernel = 8 * min(points * n, KERNEL_CHUNK) * 6 * (4 if cell["kernel_order"] == 4 else 1)
    width, depth = net_width(cell), cell["depth"]
    network = 4 * 4 * (width * width * (2 * depth + 3) + width * (1 + m + 40))
    activations = 4 * max(cell["batch"], points) * width * (6 * depth + 8)
    if cell["model"] == "neural":
        kernel = 0
    else:
        network = activations = 0
    return BASE_BYTES + arrays + quadrature + fokker_planck + kernel + network + activations


def cost(cell: dict[str, Any]) -> float:
    """Seconds on one CPU core, roughly (measured on the default profile): score
    evaluations (the test points and (fp_cells + 1)(sampler_steps + 1) per TV condition),
    each n kernel responsibilities per component (~25 ns each) or one network pass; the
    network's training steps at ~20 GFLOP/s, plus ~2 s of fixed cost (measured: 4-8 s of CPU
    for a neural cell at n = 316, 18 s at n = 10^4 and m = 16, 12 s for the kernel there)."""
    grid = (cell["fp_cells"] + 1) * (cell["sampler_steps"] + 1) * cell["conditions"]
    calls = cell["test_size"] + grid
    quadrature = 2e-6 * (calls + grid)
    if cell["model"] != "neural":
        components = 4 if cell["kernel_order"] == 4 else 1
        return 0.5 + quadrature + 2.5e-8 * components * cell["n"] * calls
    steps = training_steps(
        cell["n"], cell["batch"], cell["epochs"], cell["min_steps"], cell["max_steps"]
    )
    flops = 2 * net_width(cell) ** 2 * (2 * cell["depth"] + 3)  # per sample, forward
    return 2.0 + quadrature + (3 * steps * cell["batch"] + calls) * flops / 2e10


# ---- Report: is the rate independent of m? (toolkit.report) --------------------------------


def comparisons(frame: Any, resamples: int | None = None, seed: int | None = None) -> Any:
    """Per estimator, beta and metric of RATE_METRICS: slope(largest m) - slope(smallest m)
    with its t-interval (toolkit.stats.difference) as a claim with the default margin
    delta: neural and oracle-stat m-free (exact 0 +- delta, an equivalence test), the
    product kernel degrading (a difference of at least delta). Per-m slopes against the
    m-free exponent are the rate rows of rates.csv. resamples and seed: unused (the
    intervals are analytic), accepted for the report's common call."""
    import pandas as pd

    from toolkit.rates import usable_rows
    from toolkit.stats import DEFAULT_MARGIN, MIN_N, Claim, difference, fit_slope, judge
    from toolkit.study import COMPARISON_COLUMNS

    if "status" in frame:
        frame = frame[frame["status"].fillna("ok") == "ok"]
    rows: list[dict] = []
    needed = {"meas_dim", "beta", "model", "metric"}
    if not needed <= set(frame.columns):
        return pd.DataFrame(columns=list(COMPARISON_COLUMNS))
    frame = usable_rows(frame)
    for metric in RATE_METRICS:
        for (model, beta), group in frame[frame["metric"] == metric].groupby(["model", "beta"]):
            fits = {
                int(m): fit_slope(curve["n"], curve["value"])
                for m, curve in group.groupby("meas_dim", sort=True)
            }
            if len(fits) < 2:
                continue
            ms = sorted(fits)
            value, low, high = difference(fits[ms[-1]], fits[ms[0]])
            if model == "kernel":
                claim = Claim(DEFAULT_MARGIN, "lower bound", 0.0)
                text = f"{metric} rate of the product kernel degrades with m: difference >= "
                text += f"{DEFAULT_MARGIN:g}"
            else:
                claim = Claim(0.0, "exact rate")
                text = f"{metric} rate independent of m: difference = 0 +- {DEFAULT_MARGIN:g}"
            verdict = str(judge(low, high, claim))
            if min(fits[m].n_points for m in ms) < MIN_N:
                verdict = "inconclusive"
            slopes = ", ".join(f"m={m}: {fits[m].slope:.3g}" for m in ms)
            rows.append({
                "claim": text, "setting": f"model={model}, beta={beta:g}",
                "statistic": f"slope(m={ms[-1]}) - slope(m={ms[0]}) of {metric}; slopes {slopes}",
                "value": value, "ci_low": low, "ci_high": high, "verdict": verdict,
            })  # fmt: skip
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS[1:])).assign(study=NAME)[
        list(COMPARISON_COLUMNS)
    ]


STUDY = Study(
    name=NAME,
    summary="For a linear inverse problem y = a x + sigma eps in R^m, conditional diffusion "
    "learns p(x | y) at the rate of the prior's smoothness, n^{-beta/(d + 2 beta)} in TV, "
    "whatever m; a product kernel over y degrades with m [CDM].",
    config=Config,
    axes={"n": "n", "meas_dim": "meas_dim", "beta": "beta", "estimators": "model"},
    run_cell=run_cell,
    profiles=PROFILES,
    memory=memory,
    cost=cost,
    readme="docs/studies/inverse-problem.md",
    claims=CLAIMS,
    rate_groups=("beta", "meas_dim", "noise_level", "p_uncond", "guidance", "kernel_order"),
    theory=theory,
    non_rate_metrics=("tv_exact_score", "score_error_se"),
    comparisons=comparisons,
)
