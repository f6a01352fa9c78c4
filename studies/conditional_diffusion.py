"""Study 2, conditional-diffusion [CDM]: a two-sided test of the smoothness-adaptive rate.

H. Fu, Z. Yang, M. Wang, M. Chen. Unveil conditional diffusion models with classifier-free
guidance: a sharp statistical theory. arXiv 2403.11968 (2024).

Claim: score error ~ n^{-2 beta / (d + d_y + 2 beta)} and TV ~ n^{-beta / (d + d_y + 2 beta)}
for a conditional density of Hoelder smoothness beta, and no estimator does better: tested
as an upper bound (`--density kink`) and a lower bound (`hard`). One cell is (density,
beta, estimator, n, seed); estimators are entries of ESTIMATORS (kernel, neural); rows are
score_error, the Fokker-Planck tv (d = 1) and tv_hist (d = 2).

Science and measurements: docs/studies/conditional-diffusion.md
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from toolkit.params import DiffusionParams, ParameterError, param, redefault, training_steps
from toolkit.study import Study

NAME = "conditional-diffusion"
# toolkit.diffusion's PARAMETRISATIONS and TIME_SAMPLERS, named here so that `toolkit list`
# needs no torch (a test checks they agree).
PARAMETRISATIONS = ("eps", "score")
TRAIN_TIMES = ("uniform", "log-uniform", "inverse-variance")
DENSITIES = ("kink", "hard")
VAL_FRACTION = 0.1  # of the n pairs held out for early stopping (neural)
CHECK_EVERY = 100  # steps between early-stopping checks, at least
CHECKS = 20  # early-stopping checks in a run (and one at its last step)
VAL_DRAWS = 32768  # (x0, t, eps) draws of the held-out loss, at least
REFERENCE_N = 1000  # --width and --fourier-scale hold at this n

CLAIMS = """\
- Upper bound (`kink`, one density of the class): the score error of the conditional
  score, trained with classifier-free-guidance masking, falls at least like
  n^{-2 beta / (d + d_y + 2 beta)} (Theorem 4.1, up to logs), and E_y TV of the generated
  conditionals at least like n^{-beta / (d + d_y + 2 beta)} (Theorem 4.2).
- Lower bound (`hard`, the minimax construction): no estimator beats these rates on the
  hard family; the score error's ratio to the signal (the error of the bump-blind score)
  does not go to 0 with n.
- The TV is the exact law of the reverse SDE (Fokker-Planck), so no sampling floor."""


def theory(setting: dict[str, Any]) -> Any:
    """Claims with r = beta / (d + d_y + 2 beta): on kink, score error an upper bound
    n^{-2r} (Theorem 4.1) and TV n^{-r} (Theorem 4.2); on hard, the same exponents as lower
    bounds, the score error's ratio to the signal no faster than n^0 (does not go to 0),
    and the signal itself exactly n^{-2r} (by construction). rel_score_error is
    score_error over an n-free constant: the same evidence, so no claim of its own."""
    from toolkit.stats import Claim

    beta, d, dy = float(setting["beta"]), int(setting["dim"]), int(setting["cond_dim"])
    rate = beta / (d + dy + 2 * beta)
    metric = setting["metric"]
    if metric == "signal":
        return Claim(-2 * rate, "exact rate")
    exponent = {"score_error": -2 * rate, "tv": -rate, "tv_hist": -rate}.get(metric)
    hard = setting.get("density") == "hard"
    if metric == "score_error_ratio" and hard:
        return Claim(0.0, "lower bound")
    if exponent is None:
        return None
    return Claim(exponent, "lower bound" if hard else "upper bound")


# ---- Densities: name -> build(cell, process) ------------------------------------------------


def _kink(cell: dict[str, Any], process: Any) -> Any:
    from toolkit.data.hoelder_conditional import HoelderConditional

    return HoelderConditional(
        cell["beta"], cell["dim"], cell["cond_dim"], cell["amplitude"], cell["shift"], process
    )


def _hard(cell: dict[str, Any], process: Any) -> Any:
    from toolkit.data.hoelder_conditional import HardConditional
    from toolkit.rng import derive_seed

    seed = derive_seed(cell["seed"], "signs", cell["beta"], cell["n"])
    return HardConditional(
        cell["beta"], cell["n"], cell["dim"], cell["cond_dim"], seed=seed, process=process
    )


DENSITY_FAMILIES: dict[str, Callable[..., Any]] = {"kink": _kink, "hard": _hard}


# ---- Estimators: name -> build(cell, data, x, y, process, device) ------------------------
# Each returns (conditional score(x, y, t), at_condition(y0) -> score(x, t), null score(x, t),
# info(), the columns recorded with every row, called after all evaluations).


def _kernel(cell: dict[str, Any], data: Any, x: Any, y: Any, process: Any, device: str):
    """The closed-form kernel score (toolkit.kernel_score), no training; h_y chosen among
    the --bandwidth-y constants by leave-one-out likelihood cross-validation."""
    from toolkit.kernel_score import KernelScore, select_bandwidth_y

    scale = cell["n"] ** (-1 / (data.dim + data.cond_dim + 2 * cell["beta"]))
    h = cell["bandwidth"] * scale
    candidates = [c * scale for c in cell["bandwidth_y"]]
    h_y = candidates[0]
    if len(candidates) > 1:
        h_y = candidates[select_bandwidth_y(x, y, h, candidates, cell["kernel_order"])]
    est = KernelScore(x, y, h, h_y, process, order=cell["kernel_order"])

    def info() -> dict[str, Any]:
        fallback = est.fallback_rate if cell["kernel_order"] == 4 else 0.0
        return {"train_steps": 0, "steps_run": 0, "best_step": 0, "net_width": 0,
                "feature_scale": 0.0, "bandwidth_h": h, "bandwidth_y_h": h_y,
                "bandwidth_y": ",".join(map(str, cell["bandwidth_y"])),
                "fallback_rate": fallback, "final_loss": math.nan}  # fmt: skip

    return est.score, est.at_condition, est.null_score, info


def resolution(cell: dict[str, Any]) -> float:
    """h_1000 / h_n = (n / 1000)^{1/(d + d_y + 2 beta)}: how much finer the theory's
    resolution h_n = n^{-1/(d + d_y + 2 beta)} is at n than at the reference n = 1000."""
    dims = cell["dim"] + cell["cond_dim"]
    return (cell["n"] / REFERENCE_N) ** (1 / (dims + 2 * cell["beta"]))


def net_width(cell: dict[str, Any]) -> int:
    """The trunk width at n: --width (h_1000 / h_n)^{d + d_y}, in [8, --max-width]: the
    theory's network grows with n like its number of pieces of size h_n."""
    growth = resolution(cell) ** (cell["dim"] + cell["cond_dim"])
    return int(min(cell["max_width"], max(8, round(cell["width"] * growth))))


def feature_scale(cell: dict[str, Any]) -> float:
    """The Fourier features' frequency scale at n: --fourier-scale h_1000 / h_n, so the
    network resolves finer detail as n grows, as the width rule gives it more pieces."""
    return cell["fourier_scale"] * resolution(cell)


def _neural(cell: dict[str, Any], data: Any, x: Any, y: Any, process: Any, device: str):
    """ConditionalScoreNet trained by DSM with classifier-free-guidance masking and early
    stopping on a held-out DSM loss."""
    import torch

    from toolkit.diffusion import held_out_dsm_loss, token_drop, train_dsm
    from toolkit.rng import derive_seed, generator
    from toolkit.score_network import ConditionalScoreNet

    n, beta, width = cell["n"], cell["beta"], net_width(cell)
    with torch.random.fork_rng(devices=[]):  # a seeded init without touching global state
        torch.manual_seed(derive_seed(cell["seed"], "init", beta, n))
        net = ConditionalScoreNet(
            data.dim, data.cond_dim, width, cell["depth"], cell["parametrisation"],
            fourier=cell["fourier"], fourier_scale=feature_scale(cell),
        )  # fmt: skip
    net = net.to(device)
    dtype = next(net.parameters()).dtype
    x, y = x.to(dtype), y.to(dtype)
    held = max(1, round(VAL_FRACTION * n))
    (x_val, x), (y_val, y) = (x[:held], x[held:]), (y[:held], y[held:])
    n_fit = x.shape[0]
    steps = training_steps(
        n_fit, cell["batch"], cell["epochs"], cell["min_steps"], cell["max_steps"]
    )
    g = generator(cell["seed"], "train", beta, n)  # minibatches, masks, times and noise

    def batches(step: int) -> tuple[Any, ...]:
        idx = torch.randint(n_fit, (min(cell["batch"], n_fit),), generator=g)
        drop = token_drop(idx.numel(), cell["p_uncond"], g).to(x.device)
        idx = idx.to(x.device)
        return x[idx], y[idx], drop

    keep = torch.zeros(held, dtype=torch.bool, device=x.device)  # the conditional loss
    validation = held_out_dsm_loss(
        net,
        process,
        x_val,
        generator(cell["seed"], "validation", beta, n),
        y_val,
        keep,
        times=cell["train_times"],
        parametrisation=cell["parametrisation"],
        repeats=max(4, math.ceil(VAL_DRAWS / held)),
    )
    run = train_dsm(
        net, process, batches, steps, cell["lr"], g, times=cell["train_times"],
        parametrisation=cell["parametrisation"],
        schedule="linear", validation=validation,
        check_every=max(CHECK_EVERY, steps // CHECKS),
        patience=cell["patience"],
    )  # fmt: skip
    final = sum(run.losses[-50:]) / len(run.losses[-50:])

    def info() -> dict[str, Any]:
        return {"train_steps": steps, "steps_run": run.steps, "best_step": run.best_step,
                "net_width": width, "feature_scale": feature_scale(cell), "bandwidth_h": 0.0,
                "bandwidth_y_h": 0.0, "bandwidth_y": "",
                "fallback_rate": math.nan, "final_loss": final}  # fmt: skip

    def at_condition(y0: Any):
        return lambda xs, t: net.score(xs, t, y0.expand(xs.shape[0], -1), process)

    return (
        lambda xs, ys, t: net.score(xs, t, ys, process),
        at_condition,
        lambda xs, t: net.score(xs, t, None, process),
        info,
    )


ESTIMATORS: dict[str, Callable[..., Any]] = {"neural": _neural, "kernel": _kernel}


@dataclass(frozen=True)
class Config(DiffusionParams):
    density: tuple[str, ...] = param(
        DENSITIES, "kink (upper-bound test) and/or hard (lower-bound family)", choices=DENSITIES
    )
    beta: tuple[float, ...] = param(
        (0.5, 1.5, 2.5), "Hoelder smoothness beta of p(x | y) (comma list)", low=0, low_open=True
    )
    dim: int = param(1, "dimension d of x", low=1)
    cond_dim: int = param(1, "dimension d_y of the condition y", low=1)
    n: tuple[int, ...] = param(
        (316, 1000, 3162, 10000, 31623), "training sample sizes (comma list)", low=2
    )
    seeds: int = param(3, "number of seeds (seeds 0..seeds-1)", low=1)
    estimators: tuple[str, ...] = param(
        tuple(ESTIMATORS), "score estimators (comma list)", choices=ESTIMATORS
    )
    p_uncond: float = param(0.5, "probability of masking y to the null token", low=0, high=1)
    guidance: float = param(0.0, "classifier-free guidance weight w for sampling", low=0)
    width: int = param(64, "neural: trunk width at n = 1000 (grows with n)", low=1)
    max_width: int = param(256, "neural: largest trunk width", low=8)
    depth: int = param(2, "neural: residual blocks in the trunk", low=0)
    fourier: int = param(64, "neural: random Fourier features of (x, y) (0: none)", low=0)
    fourier_scale: float = param(
        3.0, "neural: their frequency scale at n = 1000 (grows like 1/h_n)", low=0, low_open=True
    )
    patience: int = param(20, "neural: early-stopping checks without improvement", low=1)
    parametrisation: str = param(
        "eps",
        "neural: the network outputs eps (noise) or score (minus the score)",
        choices=PARAMETRISATIONS,
    )
    train_times: str = param(
        "inverse-variance",
        "neural: distribution of the training (and validation) times",
        choices=TRAIN_TIMES,
    )
    kernel_order: int = param(4, "kernel: order of the kernel, 2 or 4", low=2, high=4)
    bandwidth: float = param(
        1.0, "kernel: h_x = bandwidth * n^(-1/(d+d_y+2 beta))", low=0, low_open=True
    )
    bandwidth_y: tuple[float, ...] = param(
        (0.5, 0.7, 1.0),
        "kernel: constants c of h_y = c n^(-1/(d+d_y+2 beta)) (comma list); several: the one"
        " chosen per data set by leave-one-out likelihood (one-standard-error rule)",
        low=0,
        low_open=True,
    )
    amplitude: float = param(2.0, "kink: a in p(x|y) ∝ phi(x)(1 + a psi_beta(x_1 - m(y)))", low=0)
    shift: float = param(1.0, "kink: mu in m(y) = mu (2 y_1 - 1)")
    test_margin: float = param(
        0.2, "test conditions y_j in [margin, 1 - margin]", low=0, high=0.5, high_open=True
    )
    conditions: int = param(4, "test conditions for E_y TV", low=1)
    fp_cells: int = param(1000, "d = 1: Fokker-Planck cells on [-8, 8] for the TV", low=10)
    samples: int = param(2000, "d = 2: samples per test condition for the histogram TV", low=1)
    bins: int = param(16, "d = 2: histogram cells per axis (incl. 2 tails)", low=3)
    test_size: int = param(4096, "test points for the score error", low=2)
    # This study's training budget and learning rate (the fields of DiffusionParams).
    epochs: float = redefault(DiffusionParams, "epochs", 200.0)
    min_steps: int = redefault(DiffusionParams, "min_steps", 1500)
    batch: int = redefault(DiffusionParams, "batch", 256)
    lr: float = redefault(DiffusionParams, "lr", 2e-3)

    def check(self) -> None:
        super().check()
        if self.kernel_order not in (2, 4):
            raise ParameterError(f"--kernel-order must be 2 or 4 (got {self.kernel_order})")


PROFILES: dict[str, dict[str, Any]] = {
    # Seconds on 2 CPU cores; used by the tests.
    "smoke": {
        "beta": (1.5,),
        "n": (200, 800),
        "seeds": 1,
        "min_steps": 150,
        "max_steps": 150,
        "width": 32,
        "sampler_steps": 30,
        "fp_cells": 200,
        "samples": 400,
        "conditions": 2,
        "test_size": 1024,
    },
    # The study's grid without n = 31623 (it would more than double the neural cost: 25k
    # steps a cell), eight TV conditions, width at most 128: 6.5-7.5 minutes on 2 CPU cores
    # (measured; the budget is 10), of which the neural cells at n = 10^4 take ~38 s each.
    "default": {
        "n": (316, 1000, 3162, 10000),
        "seeds": 2,
        "max_width": 128,
        "conditions": 8,
        "fp_cells": 300,
        "sampler_steps": 50,
        "test_size": 2048,
    },
    # GPU scale: more seeds, conditions and test points.
    "paper": {
        "n": tuple(round(10 ** (2.5 + k / 2)) for k in range(6)),
        "seeds": 5,
        "max_width": 512,
        "depth": 3,
        "sampler_steps": 200,
        "samples": 20000,
        "conditions": 8,
        "test_size": 16384,
    },
}


def _test_conditions(cell: dict[str, Any], size: int, generator: Any, data: Any) -> Any:
    """y uniform on the inner range [m, 1 - m]^{d_y}: (size, d_y)."""
    margin = cell["test_margin"]
    return margin + (1 - 2 * margin) * data.sample_conditions(size, generator)


def _tv_conditions(cell: dict[str, Any]) -> Any:
    """The TV's test conditions: y_1 spread over the inner range, the rest 1/2: (k, d_y)."""
    import torch

    k, margin = cell["conditions"], cell["test_margin"]
    y = torch.full((k, cell["cond_dim"]), 0.5, dtype=torch.float64)
    y[:, 0] = margin + (1 - 2 * margin) * (torch.arange(k, dtype=torch.float64) + 0.5) / k
    return y


def _fokker_planck_tv(cell, data, process, scores: list, device: str) -> float:
    """Mean TV over the conditions between the reverse-SDE laws of the per-condition score
    functions (toolkit.fokker_planck) and the exact p_t0(. | y)."""
    import torch

    from toolkit.fokker_planck import Grid, cell_averages, reverse_sde_law, total_variation

    grid = Grid(cells=cell["fp_cells"])
    ys = _tv_conditions(cell)
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
            data.density(x.unsqueeze(1), y.expand(x.numel(), -1), t0.expand(x.numel()))
            for y in ys
        ])  # fmt: skip

    return float(total_variation(law, cell_averages(exact, grid), grid).mean())


def _histogram_tv(cell, data, process, score_at, seed_labels, device: str) -> dict[str, float]:
    """d = 2: histogram TV of reverse-SDE samples (tv_hist) and of exact samples (floor)."""
    import torch

    from toolkit.data.hoelder_conditional import histogram, tv_grid
    from toolkit.diffusion import sample
    from toolkit.rng import generator

    edges, m = tv_grid(cell["bins"]), cell["samples"]
    tv = {"tv_hist": 0.0, "tv_hist_floor": 0.0}
    for k, y0 in enumerate(_tv_conditions(cell)):
        exact = data.bin_masses(edges, y0.view(1, -1))[0]
        draws = sample(
            score_at[k], process, (m, data.dim), cell["sampler_steps"],
            generator(*seed_labels, "sampler", k), device=device,
        )  # fmt: skip
        if not torch.isfinite(draws).all():  # a diverged sampler: an infinite TV
            tv["tv_hist"] = math.inf
        else:
            tv["tv_hist"] += 0.5 * float((histogram(draws.cpu(), edges) - exact).abs().sum())
        floor = data.sample(y0.view(1, -1).expand(m, -1), generator(*seed_labels, "floor", k))
        tv["tv_hist_floor"] += 0.5 * float((histogram(floor, edges) - exact).abs().sum())
    return {name: value / cell["conditions"] for name, value in tv.items()}


def run_cell(cell: dict[str, Any], device: str = "cpu") -> list[dict[str, Any]]:
    """Fit one estimator on n pairs; score error (and signal), TV; one row per metric."""
    from toolkit.diffusion import OUProcess, guided_score
    from toolkit.metrics import log_uniform_design, weighted_score_error
    from toolkit.rng import generator

    seed, beta, n, density = cell["seed"], cell["beta"], cell["n"], cell["density"]
    process = OUProcess(cell["t0"], cell["horizon"])
    data = DENSITY_FAMILIES[density](cell, process)
    g = generator(seed, "data", density, beta, n)
    y = data.sample_conditions(n, g)
    x = data.sample(y, g)
    cond_score, at_condition, null_score, info = ESTIMATORS[cell["model"]](
        cell, data, x.to(device), y.to(device), process, device
    )

    # Score error, log-uniform importance-weighted t, on the inner range of conditions.
    g = generator(seed, "test", density, beta)
    y_test = _test_conditions(cell, cell["test_size"], g, data)
    x_test = data.sample(y_test, g).to(device)
    y_test = y_test.to(device)
    times, weights = log_uniform_design(process, cell["test_size"], g)
    noise = g.get_state()  # the same x_t for the estimate and the bump-blind score

    def truth(xs: Any, t: Any) -> Any:
        return data.score(xs, y_test, t)

    error = weighted_score_error(
        lambda xs, t: cond_score(xs, y_test, t), truth, x_test, process, g, times, weights
    )
    values = dict(error)
    columns = info()  # now: the kernel's fallback rate on the test points, not the TV grid
    if density == "hard":
        g.set_state(noise)
        blind = weighted_score_error(
            lambda xs, t: data.base_score(xs, y_test, t), truth, x_test, process, g, times,
            weights,
        )  # fmt: skip
        values["signal"] = blind["score_error"]
        values["score_error_ratio"] = error["score_error"] / blind["score_error"]

    # E_y TV of the reverse-SDE law (d = 1: Fokker-Planck; d = 2: histograms), on kink: the
    # lower bound on hard is tested on the score error, and the TV would double the cost.
    if data.dim <= 2 and density == "kink":
        ys = _tv_conditions(cell).to(device)
        score_at = [guided_score(at_condition(y0), null_score, cell["guidance"]) for y0 in ys]
        if data.dim == 1:
            values["tv"] = _fokker_planck_tv(cell, data, process, score_at, device)
            exact_at = [
                (lambda xs, t, y0=y0: data.score(xs, y0.expand(xs.shape[0], -1), t)) for y0 in ys
            ]
            values["tv_exact_score"] = _fokker_planck_tv(cell, data, process, exact_at, device)
        else:
            values.update(
                _histogram_tv(cell, data, process, score_at, (seed, density, beta), device)
            )
    if density == "hard":
        columns["min_factor"] = data.min_factor()
    return [{"metric": name, "value": value, **columns} for name, value in values.items()]


# ---- Resources: estimated peak memory (bytes) and relative run time of a cell ---------------

BASE_BYTES = 400 * 2**20  # the interpreter, torch and small tensors
QUADRATURE = 2 * 80  # Gauss-Jacobi nodes per exact-score evaluation (both sides of the kink)
KERNEL_CHUNK = 1 << 22  # entries of the kernel estimator's responsibility chunks
CV_CHUNK = 1 << 18  # entries of the leave-one-out chunks (toolkit.kernel_score.CV_ELEMENTS)


def memory(cell: dict[str, Any]) -> float:
    """Data, test points and their quadrature and kernel temporaries (four components at
    order 4), the Fokker-Planck grid and its bands, histogram cells (bins^d), the
    network with Adam state and its activations."""
    d, dy, n = cell["dim"], cell["cond_dim"], cell["n"]
    points = max(cell["test_size"], cell["fp_cells"] + 1, cell["samples"] if d == 2 else 0)
    arrays = 8 * (n + cell["test_size"]) * (d + dy) * 8
    quadrature = 8 * points * QUADRATURE * 8
    fokker_planck = 8 * (cell["fp_cells"] + 1) * cell["conditions"] * 16
    kernel = 8 * min(points * n, KERNEL_CHUNK) * 6 * (4 if cell["kernel_order"] == 4 else 1)
    kernel = max(kernel, 8 * min(n * n, CV_CHUNK) * 10)  # LOO: distances, kernels, products
    histogram = 8 * float(cell["bins"]) ** d * 4 if d == 2 else 0
    width, depth = min(cell["max_width"], net_width(cell)), cell["depth"]
    network = (
        4 * 4 * (width * width * (2 * depth + 3) + width * (d + dy + 40 + 2 * cell["fourier"]))
    )
    activations = 4 * max(cell["batch"], points, VAL_DRAWS) * width * (6 * depth + 8)
    if cell["model"] == "neural":
        kernel = 0
    else:
        network = activations = 0
    return (
        BASE_BYTES
        + arrays
        + quadrature
        + fokker_planck
        + kernel
        + histogram
        + network
        + activations
    )


def cost(cell: dict[str, Any]) -> float:
    """Seconds on one CPU core, roughly (measured on the default profile): score
    evaluations (the test points and, for the TV on kink, (fp_cells + 1)(sampler_steps + 1)
    per condition), each n kernel responsibilities per component (~25 ns each; on the TV
    grid, at one condition, ~20 ns for all four: KernelScore.at_condition) or one network
    pass; the network's training steps at ~20 GFLOP/s; the kernel's leave-one-out choice of
    h_y, n^2 pairs per candidate (~11 ns each at order 4, ~7 at order 2)."""
    tv = cell["density"] == "kink" and cell["dim"] <= 2
    grid = (cell["fp_cells"] + 1) * (cell["sampler_steps"] + 1) * cell["conditions"] * tv
    calls = cell["test_size"] + grid
    quadrature = 2e-6 * (calls + grid)
    if cell["model"] == "kernel":
        components = 4 if cell["kernel_order"] == 4 else 1
        candidates = len(cell["bandwidth_y"])
        pairs = cell["n"] ** 2 * candidates * (candidates > 1)
        return (
            0.5
            + quadrature
            + cell["n"] * (2.5e-8 * components * cell["test_size"] + 2e-8 * grid)
            + pairs * (1.1e-8 if components == 4 else 7e-9)
        )
    steps = training_steps(
        cell["n"], cell["batch"], cell["epochs"], cell["min_steps"], cell["max_steps"]
    )
    width = net_width(cell)
    flops = 2 * width * (width * (2 * cell["depth"] + 3) + 2 * cell["fourier"])  # a sample
    return 0.5 + quadrature + (3 * steps * cell["batch"] + calls) * flops / 2e10


STUDY = Study(
    name=NAME,
    summary="A conditional diffusion model trained with classifier-free guidance estimates "
    "p(x | y) at the smoothness-adaptive minimax rate, tested from both sides: at least the "
    "rate on a fixed density of the class, no faster on the hard family [CDM].",
    config=Config,
    axes={"n": "n", "density": "density", "beta": "beta", "estimators": "model"},
    run_cell=run_cell,
    profiles=PROFILES,
    memory=memory,
    cost=cost,
    readme="docs/studies/conditional-diffusion.md",
    claims=CLAIMS,
    rate_groups=("density", "beta", "dim", "cond_dim", "p_uncond", "guidance", "kernel_order"),
    theory=theory,
    floors={"tv_hist": "tv_hist_floor"},
    model_free_metrics=("signal",),
    non_rate_metrics=("tv_exact_score", "score_error_se"),
)
