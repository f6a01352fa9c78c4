"""Study 2, conditional-diffusion [CDM]: classifier-free guidance, smoothness-adaptive rates.

H. Fu, Z. Yang, M. Wang, M. Chen. Unveil conditional diffusion models with classifier-free
guidance: a sharp statistical theory. arXiv 2403.11968 (2024).

Claim: a conditional score estimated from n pairs (x, y) of a conditional density of
Hoelder smoothness beta has score error ~ n^{-2 beta / (d + d_y + 2 beta)} and E_y TV of
its reverse-SDE samples ~ n^{-beta / (d + d_y + 2 beta)} (up to logs). Ground truth:
toolkit.data.hoelder_conditional (exact density, sampler and OU score by quadrature).

One cell is (estimator, beta, n, seed). Training pairs come from (seed, beta, n); the test
set, the sampler noise and the exact reference samples from (seed, beta) only, so every n
and both estimators see the same test points (common random numbers for the slopes).

Estimators (column `model`; looked up in ESTIMATORS, name -> builder: a new estimator is
one entry there):
- kernel: the closed-form score of the Gaussian-smoothed Nadaraya-Watson conditional
  estimate (toolkit.kernel_score) with h_x = h_y = bandwidth * n^{-1/(d + d_y + 2 beta)}.
- neural: toolkit.score_network.ConditionalScoreNet (residual MLP trunk, width x depth)
  trained by DSM (toolkit.diffusion.train_dsm: uniform times, eps parametrisation, lr
  linearly decayed to 0) with classifier-free-guidance masking at rate p_uncond. Training
  budget (toolkit.params.training_steps): --epochs passes over the data (40), at least
  --min-steps (500) and at most --max-steps (3000) Adam steps, recorded as `train_steps`.
  Where the cap binds (large n) optimisation, not n, may limit the error.

Metrics (rows):
- score_error: time-averaged R = E ||s_hat - grad log p_t||^2, X_t ~ p_t(. | y), y ~ U,
  t ~ U[t0, T] stratified (one t per stratum of width (T - t0) / test_size: the small-t
  region dominates R, and stratifying cuts its Monte Carlo noise), one (y, x_0, t, eps)
  per test point; s_hat is the
  conditional (unguided) score, the estimand of the theory.
- rel_score_error: R / E ||grad log p_t||^2 on the same points.
- tv (d <= 2): mean over `conditions` test conditions y_1 = (k + 1/2) / conditions (other
  coordinates 1/2) of the TV between the histogram of m = `samples` reverse-SDE samples
  (exponential integrator, `sampler_steps` geometric steps from T to t0, guidance w) and
  the exact bin masses of p(x | y) on `bins` cells per axis (bins - 2 equal cells on
  [-4, 4] plus two tails). Only for d <= 2 (no tv rows otherwise).
- tv_floor: the same histogram TV for m exact samples (the estimator's noise floor).
- tv_exact_score: the same for the reverse SDE driven by the exact score (the floor of
  the sampler's discretisation plus the histogram noise).
Rows also carry train_steps (0 for kernel), bandwidth_h (0 for neural) and final_loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from toolkit.params import DiffusionParams, param, redefault, training_steps
from toolkit.study import Study

NAME = "conditional-diffusion"

CLAIMS = """\
- Score error of the conditional score (trained with classifier-free-guidance masking)
  falls like n^{-2 beta / (d + d_y + 2 beta)} (Theorem 4.1, up to logs).
- E_y TV between generated and true conditionals falls like n^{-beta / (d + d_y + 2 beta)}
  (Theorem 4.2), above the TV floor of the histogram estimator (tv_floor).
- These are worst-case (minimax) rates: one fixed density may show a faster rate, and
  optimisation or the histogram floor may show a slower one; the verdicts say which."""


def theory_exponent(setting: dict[str, Any]) -> float | None:
    """-2 beta / (d + d_y + 2 beta) for score errors, half of it for TV; None otherwise."""
    beta, d, dy = float(setting["beta"]), int(setting["dim"]), int(setting["cond_dim"])
    rate = beta / (d + dy + 2 * beta)
    return {"score_error": -2 * rate, "rel_score_error": -2 * rate, "tv": -rate}.get(
        setting["metric"]
    )


# ---- Estimators: name -> build(cell, data, x, y, process, device) ------------------------
# Each returns (conditional score(x, y, t), at_condition(y0) -> score(x, t), null score(x, t),
# info columns).


def _kernel(cell: dict[str, Any], data: Any, x: Any, y: Any, process: Any, device: str):
    """The closed-form kernel score (toolkit.kernel_score), no training."""
    from toolkit.kernel_score import KernelScore

    h = cell["bandwidth"] * cell["n"] ** (-1 / (data.dim + data.cond_dim + 2 * cell["beta"]))
    est = KernelScore(x, y, h, h, process)
    info = {"train_steps": 0, "bandwidth_h": h, "final_loss": math.nan}
    return est.score, est.at_condition, est.null_score, info


def _neural(cell: dict[str, Any], data: Any, x: Any, y: Any, process: Any, device: str):
    """ConditionalScoreNet trained by DSM with classifier-free-guidance masking."""
    import torch

    from toolkit.diffusion import token_drop, train_dsm
    from toolkit.rng import derive_seed, generator
    from toolkit.score_network import ConditionalScoreNet

    n, beta = cell["n"], cell["beta"]
    with torch.random.fork_rng(devices=[]):  # a seeded init without touching global state
        torch.manual_seed(derive_seed(cell["seed"], "init", beta, n))
        net = ConditionalScoreNet(data.dim, data.cond_dim, cell["width"], cell["depth"])
    net = net.to(device)
    dtype = next(net.parameters()).dtype
    x, y = x.to(dtype), y.to(dtype)
    steps = training_steps(n, cell["batch"], cell["epochs"], cell["min_steps"], cell["max_steps"])
    g = generator(cell["seed"], "train", beta, n)  # minibatches, masks, times and noise

    def batches(step: int) -> tuple[Any, ...]:
        idx = torch.randint(n, (min(cell["batch"], n),), generator=g)
        drop = token_drop(idx.numel(), cell["p_uncond"], g).to(x.device)
        idx = idx.to(x.device)
        return x[idx], y[idx], drop

    losses = train_dsm(
        net, process, batches, steps, cell["lr"], g,
        times="uniform", parametrisation="eps", schedule="linear",
    )  # fmt: skip
    final = sum(losses[-50:]) / len(losses[-50:])
    info = {"train_steps": steps, "bandwidth_h": 0.0, "final_loss": final}

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
    width: int = param(64, "neural: width of the MLP trunk", low=1)
    depth: int = param(2, "neural: residual blocks in the trunk", low=0)
    bandwidth: float = param(
        1.0, "kernel: h_x = h_y = bandwidth * n^(-1/(d+d_y+2 beta))", low=0, low_open=True
    )
    amplitude: float = param(2.0, "a in p(x|y) ∝ phi(x)(1 + a psi_beta(x_1 - m(y)))", low=0)
    shift: float = param(1.0, "mu in m(y) = mu (2 y_1 - 1)")
    samples: int = param(2000, "m: samples per test condition for TV", low=1)
    conditions: int = param(4, "test conditions for E_y TV", low=1)
    bins: int = param(16, "histogram cells per axis for TV (incl. 2 tails)", low=3)
    test_size: int = param(4096, "test points for the score error", low=1)
    # This study's training budget and learning rate (the fields of DiffusionParams).
    epochs: float = redefault(DiffusionParams, "epochs", 40.0)
    min_steps: int = redefault(DiffusionParams, "min_steps", 500)
    max_steps: int = redefault(DiffusionParams, "max_steps", 3000)
    batch: int = redefault(DiffusionParams, "batch", 256)
    lr: float = redefault(DiffusionParams, "lr", 2e-3)


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
        "samples": 400,
        "conditions": 2,
        "test_size": 1024,
    },
    # STUDIES.md's grid, sized for ~8 minutes on 2 CPU cores.
    "default": {
        "seeds": 2,
        "sampler_steps": 50,
        "samples": 1000,
        "bins": 12,
        "test_size": 2048,
    },
    # GPU scale: more seeds, samples and training.
    "paper": {
        "n": tuple(round(10 ** (2.5 + k / 2)) for k in range(6)),
        "seeds": 5,
        "max_steps": 40000,
        "width": 256,
        "depth": 3,
        "sampler_steps": 200,
        "samples": 20000,
        "conditions": 8,
        "test_size": 16384,
    },
}


def run_cell(cell: dict[str, Any], device: str = "cpu") -> list[dict[str, Any]]:
    """Fit one estimator on n pairs; score error, TV and its floors; one row per metric."""
    import torch

    from toolkit.data.hoelder_conditional import HoelderConditional, histogram, tv_grid
    from toolkit.diffusion import OUProcess, guided_score, sample
    from toolkit.metrics import score_error
    from toolkit.rng import generator

    seed, beta, n = cell["seed"], cell["beta"], cell["n"]
    process = OUProcess(cell["t0"], cell["horizon"])
    data = HoelderConditional(
        beta, cell["dim"], cell["cond_dim"], cell["amplitude"], cell["shift"], process
    )
    g = generator(seed, "data", beta, n)
    y = data.sample_conditions(n, g)
    x = data.sample(y, g)
    cond_score, at_condition, null_score, info = ESTIMATORS[cell["model"]](
        cell, data, x.to(device), y.to(device), process, device
    )
    # Score error on a test set shared by every n and estimator.
    g = generator(seed, "test", beta)
    y_test = data.sample_conditions(cell["test_size"], g)
    x_test = data.sample(y_test, g).to(device)
    y_test = y_test.to(device)
    size = cell["test_size"]  # stratified t ~ U[t0, T]: one time per stratum of width T/size
    strata = (torch.arange(size) + torch.rand(size, generator=g, dtype=torch.float64)) / size
    times = process.t0 + (process.horizon - process.t0) * strata
    err, rel = score_error(
        lambda xs, t: cond_score(xs, y_test, t),
        lambda xs, t: data.score(xs, y_test, t),
        x_test, process, g, times=times,
    )  # fmt: skip
    rows = [
        {"metric": "score_error", "value": err, **info},
        {"metric": "rel_score_error", "value": rel, **info},
    ]
    if data.dim > 2:
        return rows

    # E_y TV of reverse-SDE samples against exact bin masses, with both floors.
    edges = tv_grid(cell["bins"])
    m, tv = cell["samples"], {"tv": 0.0, "tv_floor": 0.0, "tv_exact_score": 0.0}
    for k in range(cell["conditions"]):
        y0 = torch.full((1, data.cond_dim), 0.5, dtype=torch.float64)
        y0[0, 0] = (k + 0.5) / cell["conditions"]
        exact = data.bin_masses(edges, y0)[0]
        y0_dev = y0.to(device)
        score = guided_score(at_condition(y0_dev[0]), null_score, cell["guidance"])

        def truth(xs: torch.Tensor, t: torch.Tensor, y0=y0_dev) -> torch.Tensor:
            return data.score(xs, y0.expand(xs.shape[0], -1), t)

        for name, fn in (("tv", score), ("tv_exact_score", truth)):
            draws = sample(
                fn, process, (m, data.dim), cell["sampler_steps"],
                generator(seed, "sampler", beta, k), device=device,
            )  # fmt: skip
            if not torch.isfinite(draws).all():  # a diverged sampler: histograms would bin
                tv[name] = math.inf  # NaN into a tail cell and report a finite TV
                continue
            tv[name] += 0.5 * float((histogram(draws.cpu(), edges) - exact).abs().sum())
        draws = data.sample(y0.expand(m, -1), generator(seed, "floor", beta, k))
        tv["tv_floor"] += 0.5 * float((histogram(draws, edges) - exact).abs().sum())
    rows += [{"metric": name, "value": v / cell["conditions"], **info} for name, v in tv.items()]
    return rows


# ---- Resources: estimated peak memory (bytes) and relative run time of a cell ---------------

BASE_BYTES = 400 * 2**20  # the interpreter, torch and small tensors
QUADRATURE = 2 * 80  # Gauss-Jacobi nodes per exact-score evaluation (both sides of the kink)
KERNEL_CHUNK = 1 << 22  # entries of the kernel estimator's responsibility chunks


def memory(cell: dict[str, Any]) -> float:
    """Data, test points, samples and their quadrature and kernel temporaries, histogram
    cells (bins^d per condition), the network with Adam state and its activations."""
    d, dy, n = cell["dim"], cell["cond_dim"], cell["n"]
    points = cell["test_size"] + cell["samples"]
    arrays = 8 * (n + points) * (d + dy) * 8
    quadrature = 8 * max(cell["test_size"], cell["samples"]) * QUADRATURE * 8
    kernel = 8 * min(points * n, KERNEL_CHUNK) * 6 if cell["model"] == "kernel" else 0
    histogram = 8 * float(cell["bins"]) ** d * 4
    width, depth, batch = cell["width"], cell["depth"], cell["batch"]
    network = 4 * 4 * (width * width * (2 * depth + 3) + width * (d + dy + 40))
    activations = 4 * max(batch, cell["test_size"], cell["samples"]) * width * (6 * depth + 8)
    if cell["model"] != "neural":
        network = activations = 0
    return BASE_BYTES + arrays + quadrature + kernel + histogram + network + activations


def cost(cell: dict[str, Any]) -> float:
    """Seconds on one CPU core, roughly: the kernel's n responsibilities per score call
    (about 5.5 ns each) or the network's training steps, plus the exact-score quadrature."""
    calls = cell["test_size"] + 2 * cell["samples"] * cell["conditions"] * cell["sampler_steps"]
    quadrature = 2e-6 * calls
    if cell["model"] == "kernel":
        return 0.5 + quadrature + 5.5e-9 * cell["n"] * calls
    steps = training_steps(
        cell["n"], cell["batch"], cell["epochs"], cell["min_steps"], cell["max_steps"]
    )
    per_step = 2e-9 * cell["batch"] * cell["width"] ** 2 * (2 * cell["depth"] + 4) * 3
    return 0.5 + quadrature + steps * per_step


STUDY = Study(
    name=NAME,
    summary="A conditional diffusion model trained with classifier-free guidance estimates "
    "p(x | y) at the smoothness-adaptive rate: score error n^(-2 beta/(d + d_y + 2 beta)) "
    "and TV n^(-beta/(d + d_y + 2 beta)) [CDM].",
    config=Config,
    axes={"n": "n", "beta": "beta", "estimators": "model"},
    run_cell=run_cell,
    profiles=PROFILES,
    memory=memory,
    cost=cost,
    readme="Study 2: conditional-diffusion",
    claims=CLAIMS,
    rate_groups=("beta", "dim", "cond_dim", "p_uncond", "guidance"),
    theory_exponent=theory_exponent,
    floors={"tv": "tv_floor"},
    non_rate_metrics=("tv_exact_score",),
)
