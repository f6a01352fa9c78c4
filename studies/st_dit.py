"""Study 3, st-dit [DiT-GP]: a diffusion transformer on Gaussian-process sequences.

H. Fu, Z. Dou, J. Guo, M. Wang, M. Chen. Diffusion transformer captures spatial-temporal
dependencies: a theory for Gaussian process data. arXiv 2407.16134 (ICLR 2025).

Claim: a DiT trained by DSM on n sequences vec(X) ~ N(0, Gamma (x) Sigma) learns the law at
rate sqrt(l^{1/nu} kappa^2 N d^3 / n), learns faster temporal decay better, has attention
maps like Gamma, and beats an equal-size MLP. One cell is (kernel, nu, length, model, n,
seed); models are entries of MODELS; rows are score errors, distribution errors (floor-free
ones by toolkit.gaussian_kl) and attention scores; the report adds FLOORS, `comparisons`, `figures`.

Science and measurements: docs/studies/st-dit.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from toolkit.params import DiffusionParams, ParameterError, param, redefault, training_steps
from toolkit.study import Study

NAME = "st-dit"
# Choices of toolkit.data.gaussian_process (KERNELS, SPATIAL) and toolkit.attention
# (ACTIVATIONS); a test checks they agree. Named here so that `toolkit list` needs no torch.
KERNELS = ("exp", "poly")
SPATIAL = ("ar1", "identity")
ACTIVATIONS = ("relu", "softmax")
TEST_SIZE = 2048
ATTN_SIZE = 512
T_GRID = (0.01, 0.1, 1.0)
T_ATTN = 0.1
NORM = False

CLAIMS = """\
- A diffusion transformer learns Gaussian-process sequences: its score and distribution
  errors fall with n (distribution bound ~ sqrt(l^{1/nu} kappa^2 N d^3 / n): slope -1/2,
  -1 for KL, a squared distance).
- Faster covariance decay (larger nu or smaller l) is learned better at equal n.
- The dit beats an MLP with the same parameter budget.
- Attention maps of the trained dit resemble the temporal covariance Gamma
  (attn_pearson_* and attn_spearman_*, and figures/st_dit_attention.png)."""


def theory(setting: dict[str, Any]) -> Any:
    """[DiT-GP] bounds the distribution error by sqrt(1/n) up to logs, from above: an upper
    bound of slope -1/2 for the distance corr_error, and -1 for kl_score and kl_excess (a
    KL behaves like a squared distance: TV <= sqrt(KL / 2)). No rate for the score error."""
    from toolkit.stats import Claim

    exponent = {"corr_error": -0.5, "kl_score": -1.0, "kl_excess": -1.0}.get(
        setting.get("metric", "")
    )
    return None if exponent is None else Claim(exponent, "upper bound")


# Additive floors (toolkit.rates fits log(value - floor)): for corr_error and kl_excess
# what the exact score itself reaches through the same sampler (corr_error_sampler: the
# same m samples from common random numbers, so Monte Carlo and discretisation both;
# kl_sampler: the exact discretisation KL), neither of which a learned score can beat.
FLOORS = {"corr_error": "corr_error_sampler", "kl_excess": "kl_sampler"}
# kl_score is debiased: its standard error is a resolution, not a floor (a point within
# one SE of zero says nothing about the rate).
RESOLUTIONS = {"kl_score": "kl_score_se"}
# Not curves in n: the attention map, every *_sampler (the exact-score sampler is the same
# at every n; kl_sampler, a floor, is never fitted either), kl_excess_se; and kl, bw, the
# plain plug-ins, which sit on their Monte Carlo floors (kl_floor is the Wishart bias
# b(p, m) exactly; bw has no debiased version here). Floors must not be listed here: the
# fitter drops these rows before it looks the floors up.
NON_RATE = (
    "attn_map", "corr_error_floor", "bw_sampler", "kl_excess_se",
    "kl", "kl_floor", "bw", "bw_floor",
)  # fmt: skip


# ---- Models: name -> build(cell) (called under the cell's seeded initialisation) ----------


def _dit(cell: dict[str, Any]) -> Any:
    from toolkit.attention import SequenceDiT

    return SequenceDiT(
        cell["frames"], cell["dim"], cell["width"], cell["depth"], cell["heads"],
        cell["attention"], norm=NORM,
    )  # fmt: skip


def _mlp(cell: dict[str, Any]) -> Any:
    """The MLP with the dit's parameter count (the dit is drawn first, as its budget)."""
    from toolkit.attention import SequenceMLP, parameter_count

    budget = parameter_count(_dit(cell))
    return SequenceMLP.matched(budget, cell["frames"], cell["dim"], cell["depth"])


def _width_matched(depth: int) -> Any:
    """A dit of `depth` blocks with the parameter count of the cell's dit (--depth,
    --width): the width, a multiple of --heads, whose count is closest (depth experiment:
    depth changes, parameters do not)."""

    def build(cell: dict[str, Any]) -> Any:
        import torch

        from toolkit.attention import SequenceDiT, parameter_count

        budget = parameter_count(_dit(cell))
        heads = cell["heads"]
        with torch.device("meta"):  # counting only: no memory, no random draws
            counts = {
                w: parameter_count(SequenceDiT(cell["frames"], cell["dim"], w, depth, heads))
                for w in range(heads, 4 * cell["width"] + 1, heads)
            }
        width = min(counts, key=lambda w: abs(counts[w] - budget))
        return _dit({**cell, "width": width, "depth": depth})

    return build


DITS = ("dit", "dit1", "dit4")  # attention models (attention rows)
MODELS = {"dit": _dit, "mlp": _mlp, "dit1": _width_matched(1), "dit4": _width_matched(4)}


@dataclass(frozen=True)
class Config(DiffusionParams):
    kernel: tuple[str, ...] = param(("exp",), "temporal decay pattern(s)", choices=KERNELS)
    nu: tuple[float, ...] = param(
        (1.0,), "decay exponent(s) nu (exp: 0 < nu <= 2)", low=0.0, low_open=True
    )
    length: tuple[float, ...] = param((4.0,), "decay length(s) l", low=0.0, low_open=True)
    spatial: str = param("ar1", "spatial covariance Sigma", choices=SPATIAL)
    rho: float = param(
        0.5, "ar1 correlation rho", low=-1.0, high=1.0, low_open=True, high_open=True
    )
    # At least 3 frames: with 2 the off-diagonal of Gamma is one value, and the attention
    # alignment (a correlation over i != j) is undefined.
    frames: int = param(16, "frames N per sequence", low=3, high=512)
    dim: int = param(4, "features d per frame", low=1, high=256)
    n: tuple[int, ...] = param(tuple(2**k for k in range(8, 14)), "training sequences", low=2)
    seeds: int = param(3, "number of seeds (seeds 0..seeds-1)", low=1)
    models: tuple[str, ...] = param(
        ("dit", "mlp"), "models to train (dit1, dit4: the dit at 1, 4 blocks)", choices=MODELS
    )
    width: int = param(64, "dit width D (mlp: same parameter count)", low=2)
    depth: int = param(2, "dit blocks L (mlp: hidden layers)", low=1, high=64)
    heads: int = param(4, "attention heads (must divide --width)", low=1)
    attention: str = param("softmax", "attention activation", choices=ACTIVATIONS)
    samples: int = param(2048, "generated sequences m for the distribution errors", low=2)
    # This study's training budget (the fields of DiffusionParams).
    epochs: float = redefault(DiffusionParams, "epochs", 32.0)
    min_steps: int = redefault(DiffusionParams, "min_steps", 4000)
    lr: float = redefault(DiffusionParams, "lr", 3e-3)

    def check(self) -> None:
        super().check()
        if "exp" in self.kernel and max(self.nu) > 2:
            raise ParameterError(f"--nu must be in (0, 2] for --kernel exp (got {max(self.nu)})")
        if self.width % self.heads:
            raise ParameterError(
                f"--heads must divide --width (got --heads {self.heads}, --width {self.width})"
            )
        if self.samples <= self.frames * self.dim:
            raise ParameterError(
                f"--samples must exceed --frames times --dim = {self.frames * self.dim} "
                f"(the KL of a singular covariance is infinite; got {self.samples})"
            )
        import torch

        from toolkit.data.gaussian_process import temporal_covariance

        for kernel in self.kernel:
            for nu in self.nu:
                for length in self.length:
                    gamma = temporal_covariance(kernel, nu, length, self.frames)
                    if float(torch.linalg.eigvalsh(gamma)[0]) <= 1e-12:
                        raise ParameterError(
                            f"--length {length:g} with --kernel {kernel} --nu {nu:g} and "
                            f"--frames {self.frames} gives a numerically singular Gamma "
                            "(smallest eigenvalue <= 1e-12); use a smaller --length or --nu"
                        )


PROFILES: dict[str, dict[str, Any]] = {
    # Seconds on 2 CPU cores; used by the tests.
    "smoke": {
        "length": (2.0,),
        "frames": 8,
        "dim": 2,
        "n": (16, 1024),
        "seeds": 1,
        "width": 32,
        "depth": 1,
        "heads": 2,
        "min_steps": 200,
        "samples": 256,
        "sampler_steps": 25,
    },
    # Minutes on 2 CPU cores: six decay settings (both kernels, three nu, one length; two
    # lengths do not fit the 12-minute budget), n = 2^8..2^12, two seeds. Training steps
    # grow with n: 64 epochs at lr 3e-3, at least 512 steps (512 up to n = 1024, 1024 at
    # 2048, 2048 at 4096); more steps at small n overfit (docs/studies/st-dit.md).
    "default": {
        "kernel": ("exp", "poly"),
        "nu": (0.5, 1.0, 2.0),
        "length": (2.0,),
        "n": tuple(2**k for k in range(8, 13)),
        "seeds": 2,
        "width": 32,
        "epochs": 64.0,
        "min_steps": 512,
        "samples": 1024,
        "sampler_steps": 50,
    },
    # The depth experiment (separate: it does not fit the default budget): 1, 2 and 4 blocks
    # at the default dit's parameter count (width-matched), at two kappa (exp, nu = 1,
    # l = 1 and 4: kappa 4.5 and 50), n = 1024 and 4096, two seeds.
    "depth": {
        "length": (1.0, 4.0),
        "n": (1024, 4096),
        "seeds": 2,
        "models": ("dit1", "dit", "dit4"),
        "width": 32,
        "epochs": 64.0,
        "min_steps": 1024,
        "samples": 1024,
        "sampler_steps": 50,
    },
    # GPU scale: the study's n grid (docs/studies/st-dit.md), both kernels, more seeds,
    # a bigger network.
    "paper": {
        "kernel": ("exp", "poly"),
        "nu": (0.5, 1.0, 2.0),
        "length": (1.0, 4.0),
        "seeds": 5,
        "width": 128,
        "depth": 4,
        "epochs": 256.0,
        "min_steps": 10000,
        "samples": 8192,
        "sampler_steps": 200,
    },
}


def build_model(cell: dict[str, Any]) -> Any:
    """The cell's network, initialised from (seed, model) on the CPU."""
    import torch

    from toolkit.rng import derive_seed

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cell["seed"], "init", cell["model"]))
        return MODELS[cell["model"]](cell)


def train(model: Any, data: Any, process: Any, cell: dict[str, Any]) -> int:
    """Denoising score matching on data: (n, N, d) on the device; returns the step count."""
    import torch

    from toolkit.diffusion import train_dsm
    from toolkit.rng import generator

    n, seed = data.shape[0], cell["seed"]
    steps = training_steps(n, cell["batch"], cell["epochs"], cell["min_steps"], cell["max_steps"])
    index = torch.randint(n, (steps, min(cell["batch"], n)), generator=generator(seed, "batch", n))
    train_dsm(
        model, process, lambda step: (data[index[step].to(data.device)],), steps, cell["lr"],
        generator(seed, "dsm", n), times="log-uniform", parametrisation="score",
        schedule="cosine",
    )  # fmt: skip
    return steps


def _distribution_rows(x: Any, gp: Any, t0: float, suffix: str = "") -> list[dict[str, Any]]:
    """corr_error, kl and bw of sequences x: (m, N, d), in Gamma's and Sigma's eigenbasis.

    KL and BW are measured against the covariance of p_{t0}, alpha^2 Gamma (x) Sigma +
    sigma^2 I, the law an early-stopped sampler targets: against Gamma (x) Sigma itself a
    perfect sampler would keep the early-stopping bias KL(p_t0 || p_0), which is tiny here
    but about 3.7e3 for a nearly singular Gamma (exp, nu = 2, l = 8 at t0 = 1e-3).
    """
    import torch

    from toolkit.data.gaussian_process import temporal_correlation
    from toolkit.metrics import bures_wasserstein, gaussian_kl, relative_error, second_moment

    x = x.to(torch.float64).cpu()
    if not torch.isfinite(x).all():  # a diverged sampler: every distance is infinite
        return [{"metric": m + suffix, "value": math.inf} for m in ("corr_error", "kl", "bw")]
    corr = relative_error(temporal_correlation(x, gp.sigma), gp.gamma[0])
    cov_hat = second_moment(gp.rotate(x).flatten(1))  # Cov is diagonal in this basis
    cov = torch.diag(gp.marginal_eigenvalues(torch.tensor([t0]))[0].flatten())
    return [
        {"metric": "corr_error" + suffix, "value": corr},
        {"metric": "kl" + suffix, "value": gaussian_kl(cov_hat, cov)},
        {"metric": "bw" + suffix, "value": bures_wasserstein(cov_hat, cov)},
    ]


def _floor_free_rows(
    generated: Any, exact: Any, gp: Any, process: Any, steps: int
) -> list[dict[str, Any]]:
    """kl_sampler, kl_score (+ _se) and kl_excess (+ _se): KLs with no Monte Carlo floor.

    In the eigenbasis of Gamma (x) Sigma (toolkit.gaussian_kl): kl_sampler is the exact KL of
    the exact-score sampler's law N(0, diag v_K) to p_{t0} (the eigen-recursion, no
    sampling); kl_score the debiased common-random-number KL of the network's chain to the
    exact-score chain (the score-induced error), with its jackknife SE over 8 groups;
    kl_excess the plain KL of the generated samples to p_{t0} minus the Wishart bias
    b(p, m), with its jackknife SE. generated, exact: (m, N, d) paired chains."""
    import torch

    from toolkit.gaussian_kl import chain_kl, crn_kl, exact_chain_variances, wishart_debiased_kl

    lam = gp.eigenvalues.flatten()
    grid = process.time_grid(steps)
    y = gp.rotate(generated.to(torch.float64).cpu()).flatten(1)  # (m, p)
    e = gp.rotate(exact.to(torch.float64).cpu()).flatten(1)
    cov_t0 = torch.diag(gp.marginal_eigenvalues(torch.tensor([process.t0]))[0].flatten())
    kl_score, kl_score_se = crn_kl(y, e, torch.diag(exact_chain_variances(lam, grid)))
    kl_excess, kl_excess_se = wishart_debiased_kl(y, cov_t0)
    return [
        {"metric": "kl_sampler", "value": chain_kl(lam, grid)},
        {"metric": "kl_score", "value": kl_score},
        {"metric": "kl_score_se", "value": kl_score_se},
        {"metric": "kl_excess", "value": kl_excess},
        {"metric": "kl_excess_se", "value": kl_excess_se},
    ]


def decay_factors(setting: dict[str, Any]) -> dict[str, float]:
    """The decay setting's constants in the bound sqrt(l^{1/nu} kappa^2 N d^3 / n):
    decay_length = l^{1/nu}, kappa = the condition number of Gamma and their product
    bound_factor = l^{1/nu} kappa^2; and, outside the bound, inverse_min_eigenvalue =
    1 / lambda_min(Gamma) (columns of every row, for the decay table)."""
    import torch

    from toolkit.data.gaussian_process import temporal_covariance

    g = torch.linalg.eigvalsh(
        temporal_covariance(setting["kernel"], setting["nu"], setting["length"], setting["frames"])
    )
    decay_length = setting["length"] ** (1 / setting["nu"])
    kappa = float(g[-1] / g[0])
    return {
        "decay_length": decay_length, "kappa": kappa, "bound_factor": decay_length * kappa**2,
        "inverse_min_eigenvalue": float(1 / g[0]),
    }  # fmt: skip


def _gaussian_process(setting: dict[str, Any], process: Any = None) -> Any:
    from toolkit.data.gaussian_process import GaussianProcessSequences

    return GaussianProcessSequences.build(
        setting["kernel"], setting["nu"], setting["length"], int(setting["frames"]),
        setting["spatial"], setting["rho"], int(setting["dim"]), process,
    )  # fmt: skip


def run_cell(cell: dict[str, Any], device: str = "cpu") -> list[dict[str, Any]]:
    """Train one model on n sequences of one decay setting; score, sample, attention rows."""
    import torch

    from toolkit.attention import parameter_count
    from toolkit.diffusion import OUProcess, eps_prediction, eps_to_score, sample
    from toolkit.metrics import attention_alignment, score_error
    from toolkit.rng import generator

    n, seed = cell["n"], cell["seed"]
    process = OUProcess(cell["t0"], cell["horizon"])
    gp = _gaussian_process(cell, process)
    data = gp.sample(n, generator(seed, "train", n)).float().to(device)
    test = gp.sample(TEST_SIZE, generator(seed, "test")).to(device)  # float64

    model = build_model(cell).to(device)
    steps = train(model, data, process, cell)
    eps_model = eps_prediction(model, process, "score")

    def score_hat(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            eps = eps_model(x.float(), t.float())
        return eps_to_score(eps, t.float(), process).to(x.dtype)

    rows: list[dict[str, Any]] = []
    r, rel = score_error(score_hat, gp.score, test, process, generator(seed, "score"))
    rows += [
        {"metric": "rel_score_error", "value": rel},
        {"metric": "score_error", "value": r},
    ]
    for t in T_GRID:
        if cell["t0"] <= t <= cell["horizon"]:
            times = torch.full((TEST_SIZE,), t, dtype=torch.float64)
            _, rel_t = score_error(
                score_hat, gp.score, test, process, generator(seed, "score", t), times
            )
            rows.append({"metric": f"rel_score_error_t{t:g}", "value": rel_t})

    shape = (cell["samples"], cell["frames"], cell["dim"])
    # Common random numbers: the network's chain and the exact-score chain start from the
    # same x_T and take the same step noise (identically seeded generators), both float64.
    generated = sample(
        score_hat, process, shape, cell["sampler_steps"], generator(seed, "sample", n),
        dtype=torch.float64, device=device,
    )  # fmt: skip
    exact = sample(
        gp.score, process, shape, cell["sampler_steps"], generator(seed, "sample", n),
        dtype=torch.float64, device=device,
    )  # fmt: skip
    rows += _distribution_rows(generated, gp, process.t0)
    rows += _floor_free_rows(generated, exact, gp, process, cell["sampler_steps"])
    # The floor: m exact samples of p_{t0} (exact data pushed through the forward process).
    floor_gen = generator(seed, "floor")
    floor = gp.sample(shape[0], floor_gen)
    eps = torch.randn(floor.shape, generator=floor_gen, dtype=torch.float64)
    floor = process.perturb(floor, torch.full((shape[0],), process.t0, dtype=torch.float64), eps)
    rows += _distribution_rows(floor, gp, process.t0, "_floor")
    sampler_rows = _distribution_rows(exact, gp, process.t0, "_sampler")
    rows += [r for r in sampler_rows if r["metric"] != "kl_sampler"]  # kl_sampler is exact

    if cell["model"] in DITS:
        t = torch.full((ATTN_SIZE,), max(T_ATTN, cell["t0"]), dtype=torch.float64)
        eps = torch.randn(ATTN_SIZE, *shape[1:], generator=generator(seed, "attn"))
        xt = process.perturb(test[:ATTN_SIZE], t, eps.double().to(device))
        maps = model.attention_maps(xt.float(), t.float().to(device)).mean(1).cpu()  # (L,H,N,N)
        rows += [{"metric": k, "value": v} for k, v in attention_alignment(maps, gp.gamma).items()]
        if seed == 0:
            mean_map = maps.mean((0, 1))
            rows += [
                {"metric": "attn_map", "value": float(mean_map[i, j]), "row": i, "col": j}
                for i in range(cell["frames"])
                for j in range(cell["frames"])
            ]
    extra = {
        "train_steps": steps, "params": parameter_count(model), **decay_factors(cell),
        "blocks": len(model.blocks) if hasattr(model, "blocks") else cell["depth"],
    }  # fmt: skip
    return [{**row, **extra} for row in rows]


# ---- Report: the decay pattern as sample complexity (toolkit.report) ------------------------

DECAY_METRICS = ("rel_score_error", "kl_score")  # the dit's errors the decay table reads
FACTORS = {
    "decay_length": "l^(1/nu)",
    "kappa": "kappa(Gamma)",
    "bound_factor": "l^(1/nu) kappa^2",
    # Not in the bound: the spectrum's tail alone (the exact score -C_t^-1 x is steepest
    # along Gamma's smallest eigenvalue at small t).
    "inverse_min_eigenvalue": "1/lambda_min(Gamma)",
}
SETTING_KEYS = ("kernel", "nu", "length", "spatial", "rho", "frames", "dim", "attention")


def _setting_text(row: Any) -> str:
    return (
        f"{row['kernel']}, nu={row['nu']:g}, l={row['length']:g} (l^(1/nu)="
        f"{row['decay_length']:.3g}, kappa={row['kappa']:.3g}, "
        f"l^(1/nu) kappa^2={row['bound_factor']:.3g})"
    )


def _factor_slopes(points: Any, metric: str, n: int) -> list[dict]:
    """Slope of log error on log factor across settings at one n, per factor: least squares
    of the per-setting mean log errors on the log factor (scipy.stats.linregress), with a
    t-interval on settings - 2 df from the residuals around the line, so a factor that
    explains little of the spread across settings (low R^2) gets a wide interval; a sign
    claim (margin 0) judged by toolkit.stats."""
    import numpy as np
    from scipy import stats as scipy_stats

    from toolkit import stats

    y = np.log(points["value"].to_numpy(dtype=float))
    by_setting = points.assign(_y=y).groupby("_setting")
    mean = by_setting["_y"].mean().to_numpy()
    rows = []
    for column, name in FACTORS.items():
        x = np.log(by_setting[column].first().to_numpy(dtype=float))
        if mean.size < 3 or not np.ptp(x) > 0:
            continue
        fit = scipy_stats.linregress(x, mean)
        half = scipy_stats.t.ppf((1 + stats.LEVEL) / 2, mean.size - 2) * fit.stderr
        low, high = fit.slope - half, fit.slope + half
        verdict = str(stats.judge(low, high, stats.Claim(0.0, "lower bound", 0.0)))
        rows.append({
            "claim": f"dit {metric} grows with {name} across decay settings (slope > 0)",
            "setting": f"n={n}, {mean.size} settings",
            "statistic": f"slope of log {metric} on log {name} (R^2={fit.rvalue**2:.2f})",
            "value": float(fit.slope), "ci_low": float(low), "ci_high": float(high),
            "verdict": verdict,
        })  # fmt: skip
    return rows


def _n_eps(curve: Any, eps: float, resamples: int, rng: Any) -> tuple[float, float, float]:
    """n at which the power law fitted to one setting's curve (log error on log n over the
    per-seed points; toolkit.stats' least squares) reaches eps, with a bootstrap over seeds
    within n (n_eps is not linear in the data)."""
    import numpy as np

    from toolkit.rates import LEVEL, bootstrap_within
    from toolkit.stats import slope_coefficients

    x = np.log(curve["n"].to_numpy(dtype=float))
    y = np.log(curve["value"].to_numpy(dtype=float))
    coef = slope_coefficients(x, np.ones_like(x))

    def solve(ys: Any) -> Any:  # ys: (..., points)
        slope = ys @ coef
        with np.errstate(divide="ignore", invalid="ignore"):
            n = np.exp(x.mean() + (np.log(eps) - ys.mean(-1)) / slope)
        return np.where(slope < 0, n, np.inf)  # a flat or rising curve never reaches eps

    boot = solve(bootstrap_within(y, curve["n"].to_numpy(), resamples, rng))
    low, high = np.quantile(boot, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(solve(y)), float(low), float(high)


def _last_step(curve: Any) -> dict | None:
    """Error ratio between the last two n of one setting (geometric means over seeds): the
    toolkit.stats contrast of their mean log errors with its Welch interval, beside the
    seeds' spread at the largest n: whether the training budget still lets it fall."""
    import numpy as np

    from toolkit import stats

    ns = sorted(curve["n"].unique())
    if len(ns) < 2:
        return None
    last = curve[curve["n"].isin(ns[-2:])]
    y, n = np.log(last["value"].to_numpy(dtype=float)), last["n"].to_numpy(dtype=float)
    summary = stats.summarise(np.log(n), y)
    est = stats.contrast(np.array([-1.0, 1.0]), summary)  # log(mean at top / mean below)
    low, high = (float(v) for v in est.interval())
    top = n == ns[-1]
    spread = float(np.exp(np.std(y[top], ddof=1))) if top.sum() > 1 else float("nan")
    # a sign claim on the log ratio (margin 0): the curve still falls
    verdict = str(stats.judge(low, high, stats.Claim(0.0, "upper bound", 0.0)))
    return {
        "statistic": f"error ratio n={int(ns[-1])} / n={int(ns[-2])} (seed spread at "
        f"n={int(ns[-1])}: x{spread:.3g})",
        "value": float(np.exp(est.value)), "ci_low": float(np.exp(low)),
        "ci_high": float(np.exp(high)), "verdict": verdict,
    }  # fmt: skip


def comparisons(frame: Any, resamples: int | None = None, seed: int | None = None) -> Any:
    """The decay claim as sample complexity, for the dit (rows of COMPARISON_COLUMNS).

    Per metric of DECAY_METRICS, at the largest n: the slope of log error on the log of each
    of l^(1/nu), kappa(Gamma) and l^(1/nu) kappa^2 across the decay settings (their
    per-setting mean log error over seeds), with R^2 (which factor predicts) and a
    t-interval from the residuals across settings; then per setting n_eps, the n at which
    its fitted power law reaches eps = the geometric mean over settings of the error at the
    largest n, with its interval, and the error ratio between the last two n against the
    seeds' spread (does the training budget flatten the curve?).
    """
    import numpy as np
    import pandas as pd

    from toolkit.rates import RESAMPLES, SEED
    from toolkit.study import COMPARISON_COLUMNS

    resamples = RESAMPLES if resamples is None else resamples
    seed = SEED if seed is None else seed
    rows: list[dict] = []
    needed = {*FACTORS, *SETTING_KEYS}
    if not needed <= set(frame.columns):
        return pd.DataFrame(columns=list(COMPARISON_COLUMNS))
    dit = frame[frame["model"] == "dit"]
    for metric in DECAY_METRICS:
        points = dit[dit["metric"] == metric].copy()
        if points.empty:
            continue
        points["_setting"] = points.apply(_setting_text, axis=1)
        n_max = int(points["n"].max())
        last = points[points["n"] == n_max]
        rows += _factor_slopes(last, metric, n_max)
        eps = float(np.exp(np.log(last["value"]).groupby(last["_setting"]).mean().mean()))
        for label, curve in points.groupby("_setting", sort=True):
            if curve["n"].nunique() < 2:
                continue
            step = _last_step(curve)
            claim = f"the dit's {metric} still falls between the last two n (ratio < 1)"
            rows.append({"claim": claim, "setting": label, **step})
            value, low, high = _n_eps(curve, eps, resamples, np.random.default_rng(seed))
            rows.append({
                "claim": f"samples the dit needs to reach {metric} = {eps:.3g} (n_eps)",
                "setting": label, "statistic": "n_eps from the fitted power law in n",
                "value": value, "ci_low": low, "ci_high": high, "verdict": "measured",
            })  # fmt: skip
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS[1:])).assign(study=NAME)[
        list(COMPARISON_COLUMNS)
    ]


def figures(frame: Any) -> dict[str, bytes]:
    """Mean attention maps of the dit (seed 0) at each n next to Gamma, one row per setting,
    each with its colour bar."""
    import matplotlib.pyplot as plt

    from toolkit.plots import apply_style, heatmap, png_bytes

    maps = frame[(frame["metric"] == "attn_map") & (frame["model"] == "dit")]
    if maps.empty:
        return depth_figure(frame)
    keys = ["kernel", "nu", "length", "frames", "spatial", "rho", "dim"]
    settings = maps[keys].drop_duplicates().to_dict("records")
    ns = sorted(maps["n"].unique())
    apply_style()
    fig, axes = plt.subplots(
        len(settings),
        len(ns) + 1,
        figsize=(2.9 * (len(ns) + 1), 2.5 * len(settings)),
        squeeze=False,
        layout="constrained",
    )
    for r, s in enumerate(settings):
        sub = maps
        for k in keys:
            sub = sub[sub[k] == s[k]]
        for c, n in enumerate(ns):
            m = sub[sub["n"] == n].pivot_table(index="row", columns="col", values="value")
            heatmap(axes[r, c], m.to_numpy(), f"attention, n={int(n)}", "weight")
        gamma = _gaussian_process(s).gamma.numpy()
        title = f"Gamma ({s['kernel']}, nu={s['nu']:g}, l={s['length']:g})"
        heatmap(axes[r, -1], gamma, title, "correlation")
    fig.suptitle("dit mean attention (seed 0, averaged over layers and heads) and Gamma")
    return {STUDY.figure_name("attention"): png_bytes(fig), **depth_figure(frame)}


def depth_figure(frame: Any) -> dict[str, bytes]:
    """Error against depth (dit1, dit, dit4: equal parameter counts) at the largest n, one
    line per decay setting (labelled by kappa), mean over seeds with the seeds' range;
    nothing unless at least two depths were run."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = frame[frame["model"].isin(DITS) & frame["metric"].isin(DECAY_METRICS)]
    if "blocks" not in rows or rows["blocks"].nunique() < 2:
        return {}
    rows = rows[rows["n"] == rows["n"].max()]
    fig, axes = plt.subplots(1, len(DECAY_METRICS), figsize=(4.2 * len(DECAY_METRICS), 3.4))
    for ax, metric in zip(axes, DECAY_METRICS, strict=True):
        for keys, sub in rows[rows["metric"] == metric].groupby(["kernel", "nu", "length"]):
            stats = sub.groupby("blocks")["value"].agg(["mean", "min", "max"])
            label = f"{keys[0]}, nu={keys[1]:g}, l={keys[2]:g}, kappa={sub['kappa'].iloc[0]:.3g}"
            ax.errorbar(
                stats.index, stats["mean"],
                yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]],
                marker="o", capsize=3, label=label,
            )  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("blocks (width set to hold the parameter count)")
        ax.set_ylabel(metric)
        ax.legend(fontsize=7)
    fig.suptitle(f"dit error against depth at n={int(rows['n'].max())} (mean, seed range)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return {STUDY.figure_name("depth"): buffer.getvalue()}


# ---- Resources: estimated peak memory (bytes) and relative run time of a cell ---------------

BASE_BYTES = 400 * 2**20  # the interpreter, torch and small tensors


def memory(cell: dict[str, Any]) -> float:
    """Training data (float32), held-out and generated sequences (float64, a few copies),
    the (N d)^2 covariances of the distribution metrics, the network with Adam state, and
    its activations (training batch with gradients, sampling batch, attention maps)."""
    frames, dim, width, depth = cell["frames"], cell["dim"], cell["width"], cell["depth"]
    p = frames * dim
    sequences = 4 * cell["n"] * p + 8 * p * (TEST_SIZE * 3 + cell["samples"] * 8)
    covariances = 8 * p * p * 8
    network = 4 * 4 * (12 * width * width * depth + 64 * width + p * width)
    tokens = frames * width * (12 * depth + 4) + cell["heads"] * frames**2 * depth * 3
    activations = 4 * tokens * max(cell["batch"] * 3, cell["samples"], ATTN_SIZE * 2)
    return BASE_BYTES + sequences + covariances + network + activations


def cost(cell: dict[str, Any]) -> float:
    """Seconds on one CPU core, roughly: multiply-adds of the training steps (forward and
    backward) and of the network's sampler (the exact-score chain, the exact samples and
    the eigen-recursion cost next to nothing), at about 5 GFLOP/s for these small
    matrices; the mlp spends the same parameters on one token instead of N. Measured on a
    shared 2-core machine (other jobs running, so slower than idle): width-32 dit cells
    took 76 s for an estimate of 102 (n = 4096, 1536 steps, load 3.8) and 176 s for an
    estimate of 71 (n = 1024, 1024 steps, load 6)."""
    steps = training_steps(
        cell["n"], cell["batch"], cell["epochs"], cell["min_steps"], cell["max_steps"]
    )
    tokens = cell["frames"] if cell["model"] == "dit" else 1
    per_sample = 2 * tokens * 12 * cell["width"] ** 2 * cell["depth"]
    work = per_sample * (3 * steps * cell["batch"] + cell["samples"] * cell["sampler_steps"])
    return 1.0 + work / 5e9


STUDY = Study(
    name=NAME,
    summary="A diffusion transformer learns Gaussian-process sequence data at rate "
    "sqrt(l^(1/nu) kappa^2 N d^3 / n), faster covariance decay is learned with fewer "
    "samples, and its attention captures the temporal covariance [DiT-GP].",
    config=Config,
    axes={"n": "n", "kernel": "kernel", "nu": "nu", "length": "length", "models": "model"},
    run_cell=run_cell,
    profiles=PROFILES,
    memory=memory,
    cost=cost,
    readme="docs/studies/st-dit.md",
    claims=CLAIMS,
    rate_groups=("kernel", "nu", "length", "spatial", "rho", "frames", "dim", "attention"),
    theory=theory,
    floors=FLOORS,
    resolutions=RESOLUTIONS,
    non_rate_metrics=NON_RATE,
    comparisons=comparisons,
    figures=figures,
)
