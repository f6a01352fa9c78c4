"""Study 3, st-dit [DiT-GP]: a diffusion transformer on Gaussian-process sequences.

H. Fu, Z. Dou, J. Guo, M. Wang, M. Chen. Diffusion transformer captures spatial-temporal
dependencies: a theory for Gaussian process data. arXiv 2407.16134 (ICLR 2025).

Claim: a DiT trained by denoising score matching on n sequences vec(X) ~ N(0, Gamma (x)
Sigma) learns the distribution at rate sqrt(l^{1/nu} kappa^2 N d^3 / n) (slope -1/2 in n),
faster temporal decay (larger nu, smaller l) is learned better at equal n, its attention
maps resemble Gamma, and it beats an MLP with the same parameter budget.

One cell is (kernel, nu, length, model, n, seed). Data come from the seed alone (training
set from (seed, n), held-out set from the seed), shared by every decay setting through the
same standard-normal draws (common random numbers), so curves differ by the covariance only.

Training rule (recorded per row as `train_steps`): Adam at --lr with cosine decay to 0,
batch --batch, for steps(n) = max(S, ceil(32 n / batch)) steps, S = --steps: at least S
steps at every n, and 32 epochs once that is more. A rule that gives small n fewer steps
(32 epochs, at least S/8) was tried first and measured optimisation, not sample size: at
n = 256 (l = 4, seed 0) 128 steps gave rel_score_error 0.072 and 1024 steps 0.005.
Estimator choices (documented deviations from a plain DiT / plain DSM):
- eps_hat = sigma_t f(x, t): the network f predicts minus the score (-eps_hat / sigma_t,
  toolkit.diffusion), and the loss is the usual eps loss. An eps network must output
  O(sigma_t) at small t to get the score right; the Gaussian score is bounded
  (|C_t^-1| <= 1 / min eigenvalue), so f extrapolates to small t where an unscaled eps
  network blew the sampler up (smoke problem: corr_error 71 for the dit at n = 1024).
- Training times are log-uniform on [t0, T] (toolkit.diffusion.LogUniformTimes: the same
  minimiser, each decade of t trained equally); under U[t0, T] the times t < 0.1 that the
  sampler crosses get ~1% of the batch. Score errors are still averaged over U[t0, T].
- The dit has no LayerNorm (NORM = False): per-token normalisation makes features
  scale-free, while the Gaussian score -C_t^-1 x is linear in x (smoke problem, n = 1024:
  kl of the generated samples 8.5 with LayerNorm, 2.9 without).
- The mlp gets the hidden width whose parameter count is closest to the dit's (`params`).

Profiles: smoke (8 frames, d = 2, n = 16 and 1024, width 32, one block; ~20 s with
--jobs 2), default (exp kernel, nu = 1, l = 1 and 4, n = 256, 1024, 4096, two seeds,
width 48, two blocks, S = 1024; about 8 minutes on 2 CPU cores with --jobs 2), paper
(GPU: both kernels, nu = 1, 2, l = 2, 8, STUDIES.md's n grid 2^8..2^13, five seeds).

Rows (metric, value), all on held-out or generated data, never the training loss:
- rel_score_error, score_error: R / E||grad log p_t||^2 and R time-averaged over
  t ~ U[t0, T] (TEST_SIZE held-out sequences, one t each);
- rel_score_error_t<t> for t in T_GRID (0.01, 0.1, 1; points outside [t0, T] skipped);
- from m = --samples sequences by the reverse SDE (exponential integrator, --sampler-steps
  geometric steps from T to t0): corr_error = ||gamma_hat - gamma|| / ||gamma|| over lags
  0..N-1 (toolkit.data.gaussian_process.temporal_correlation), kl = KL(N(0, C_hat) ||
  N(0, C_t0)) and bw = Bures-Wasserstein W2 distance, C_hat the second moment of the
  samples (known zero mean) and C_t0 = alpha_t0^2 Gamma (x) Sigma + sigma_t0^2 I the
  covariance of p_{t0}, the law of the early-stopped sampler (against Gamma (x) Sigma the
  early-stopping bias would be counted as estimation error); each *_floor is the same
  estimator on m exact samples of p_{t0}
  (the Monte Carlo floor, FLOORS), each *_sampler the same for m samples of the same
  sampler driven by the exact score (the discretisation floor of --sampler-steps); all
  three are inf when the sampler diverged (non-finite samples);
- dit only: attn_pearson_best/mean, attn_spearman_best/mean: per layer and head the mean
  attention matrix over ATTN_SIZE held-out inputs at t = T_ATTN, correlated with Gamma over
  i != j; best and mean over (layer, head);
- dit and seed 0 only: attn_map rows (columns row, col), the mean attention matrix averaged
  over layers and heads, for the figure (not a curve: no rate is fitted to it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from toolkit.attention import ACTIVATIONS, SequenceDiT, SequenceMLP, parameter_count
from toolkit.data.gaussian_process import (
    KERNELS,
    SPATIAL,
    GaussianProcessSequences,
    temporal_correlation,
    temporal_covariance,
)
from toolkit.diffusion import LogUniformTimes, OUProcess, dsm_loss, eps_to_score, sample
from toolkit.metrics import (
    attention_alignment,
    bures_wasserstein,
    gaussian_kl,
    relative_error,
    score_error,
    second_moment,
)
from toolkit.params import ParameterError, param
from toolkit.rng import derive_seed, generator
from toolkit.sweep import grid_cells

NAME = "st-dit"
OUTPUT = "st_dit.csv"
MODELS = ("dit", "mlp")
TEST_SIZE = 2048
ATTN_SIZE = 512
T_GRID = (0.01, 0.1, 1.0)
T_ATTN = 0.1
EPOCHS = 32
NORM = False

CLAIMS = """\
- A diffusion transformer learns Gaussian-process sequences: its score and distribution
  errors fall with n (distribution bound ~ sqrt(l^{1/nu} kappa^2 N d^3 / n): slope -1/2,
  -1 for KL, a squared distance).
- Faster covariance decay (larger nu or smaller l) is learned better at equal n.
- The dit beats an MLP with the same parameter budget.
- Attention maps of the trained dit resemble the temporal covariance Gamma
  (attn_pearson_* and attn_spearman_*, and figures/st_dit_attention.png)."""
RATE_GROUPS = ("kernel", "nu", "length", "spatial", "rho", "frames", "dim", "attention")
FLOORS = {"corr_error": "corr_error_floor", "kl": "kl_floor", "bw": "bw_floor"}
NON_RATE_METRICS = ("attn_map",)  # a matrix for the figure, not a curve in n


def theory_exponent(setting: dict[str, Any]) -> float | None:
    """[DiT-GP] bounds the distribution error by sqrt(1/n) up to logs: slope -1/2 for the
    distances corr_error and bw; KL behaves like a squared distance (TV <= sqrt(KL / 2)), so
    the same bound means slope -1 for kl. The paper states no rate for the score error."""
    return {"corr_error": -0.5, "bw": -0.5, "kl": -1.0}.get(setting.get("metric", ""))


@dataclass(frozen=True)
class Config:
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
    models: tuple[str, ...] = param(MODELS, "models to train (comma list)", choices=MODELS)
    width: int = param(64, "dit width D (mlp: same parameter count)", low=2)
    depth: int = param(2, "dit blocks L (mlp: hidden layers)", low=1, high=64)
    heads: int = param(4, "attention heads (must divide --width)", low=1)
    attention: str = param("softmax", "attention activation", choices=ACTIVATIONS)
    steps: int = param(4000, "training steps S at least (steps(n) rule in the docstring)", low=1)
    batch: int = param(128, "training batch size", low=1)
    lr: float = param(1e-3, "Adam learning rate (cosine decay to 0)", low=0.0, low_open=True)
    t0: float = param(1e-3, "early-stopping time t0", low=0.0, low_open=True)
    horizon: float = param(8.0, "diffusion horizon T", low=0.0, low_open=True)
    sampler_steps: int = param(100, "reverse-SDE steps", low=1)
    samples: int = param(2048, "generated sequences m for the distribution errors", low=2)

    def check(self) -> None:
        if "exp" in self.kernel and max(self.nu) > 2:
            raise ParameterError(f"--nu must be in (0, 2] for --kernel exp (got {max(self.nu)})")
        if self.width % self.heads:
            raise ParameterError(
                f"--heads must divide --width (got --heads {self.heads}, --width {self.width})"
            )
        if self.t0 >= self.horizon:
            raise ParameterError(f"--t0 must be below --horizon (got {self.t0} >= {self.horizon})")
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
        if self.samples <= self.frames * self.dim:
            raise ParameterError(
                f"--samples must exceed --frames times --dim = {self.frames * self.dim} "
                f"(the KL of a singular covariance is infinite; got {self.samples})"
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
        "steps": 200,
        "samples": 256,
        "sampler_steps": 25,
    },
    # Minutes on 2 CPU cores: two decay lengths, three n, two seeds.
    "default": {
        "length": (1.0, 4.0),
        "n": (256, 1024, 4096),
        "seeds": 2,
        "width": 48,
        "steps": 1024,
        "samples": 2048,
        "sampler_steps": 50,
    },
    # GPU scale: STUDIES.md's n grid, both kernels, more seeds, a bigger network.
    "paper": {
        "kernel": ("exp", "poly"),
        "nu": (1.0, 2.0),
        "length": (2.0, 8.0),
        "seeds": 5,
        "width": 128,
        "depth": 4,
        "steps": 10000,
        "samples": 8192,
        "sampler_steps": 200,
    },
}


def cells(config: Config) -> list[dict[str, Any]]:
    """(n, kernel, nu, length, model, seed) cells, largest n first to balance workers."""
    axes = {"n": "n", "kernel": "kernel", "nu": "nu", "length": "length", "models": "model"}
    return grid_cells(config, axes)


def training_steps(n: int, batch: int, minimum: int) -> int:
    """steps(n) = max(S, ceil(EPOCHS n / batch))."""
    return max(minimum, math.ceil(EPOCHS * n / batch))


def build_model(cell: dict[str, Any]) -> torch.nn.Module:
    """The cell's network, initialised from (seed, model) on the CPU."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cell["seed"], "init", cell["model"]))
        dit = SequenceDiT(
            cell["frames"],
            cell["dim"],
            cell["width"],
            cell["depth"],
            cell["heads"],
            cell["attention"],
            norm=NORM,
        )
        if cell["model"] == "dit":
            return dit
        if cell["model"] == "mlp":
            return SequenceMLP.matched(
                parameter_count(dit), cell["frames"], cell["dim"], cell["depth"]
            )
    raise ValueError(f"model must be one of {', '.join(MODELS)} (got {cell['model']!r})")


def eps_model(model: torch.nn.Module, process: OUProcess):
    """eps_hat(x, t) = sigma_t f(x, t): the network f predicts minus the score."""

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return process.sigma(t).view(-1, 1, 1) * model(x, t)

    return eps


def train(
    model: torch.nn.Module, data: torch.Tensor, process: OUProcess, cell: dict[str, Any]
) -> int:
    """Denoising score matching on data: (n, N, d) on the device; returns the step count."""
    n, seed = data.shape[0], cell["seed"]
    steps = training_steps(n, cell["batch"], cell["steps"])
    opt = torch.optim.Adam(model.parameters(), lr=cell["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    index = torch.randint(n, (steps, min(cell["batch"], n)), generator=generator(seed, "batch", n))
    noise = generator(seed, "dsm", n)
    times = LogUniformTimes(process.t0, process.horizon)
    model.train()
    for step in range(steps):
        loss = dsm_loss(eps_model(model, process), times, data[index[step].to(data.device)], noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return steps


def _distribution_rows(
    x: torch.Tensor, gp: GaussianProcessSequences, t0: float, suffix: str = ""
) -> list[dict[str, Any]]:
    """corr_error, kl and bw of sequences x: (m, N, d), in Gamma's and Sigma's eigenbasis.

    KL and BW are measured against the covariance of p_{t0}, alpha^2 Gamma (x) Sigma +
    sigma^2 I, the law an early-stopped sampler targets: against Gamma (x) Sigma itself a
    perfect sampler would keep the early-stopping bias KL(p_t0 || p_0), which is tiny here
    but about 3.7e3 for a nearly singular Gamma (exp, nu = 2, l = 8 at t0 = 1e-3).
    """
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


def run_cell(cell: dict[str, Any], device: str = "cpu") -> list[dict[str, Any]]:
    """Train one model on n sequences of one decay setting; score, sample, attention rows."""
    n, seed = cell["n"], cell["seed"]
    gp = GaussianProcessSequences.build(
        cell["kernel"],
        cell["nu"],
        cell["length"],
        cell["frames"],
        cell["spatial"],
        cell["rho"],
        cell["dim"],
    )
    process = OUProcess(cell["t0"], cell["horizon"])
    data = gp.sample(n, generator(seed, "train", n)).float().to(device)
    test = gp.sample(TEST_SIZE, generator(seed, "test")).to(device)  # float64

    model = build_model(cell).to(device)
    steps = train(model, data, process, cell)

    def score_hat(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            eps = eps_model(model, process)(x.float(), t.float())
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
    generated = sample(
        score_hat,
        process,
        shape,
        cell["sampler_steps"],
        generator(seed, "sample", n),
        device=device,
    )
    rows += _distribution_rows(generated, gp, process.t0)
    # The floor: m exact samples of p_{t0} (exact data pushed through the forward process).
    floor_gen = generator(seed, "floor")
    floor = gp.sample(shape[0], floor_gen)
    eps = torch.randn(floor.shape, generator=floor_gen, dtype=torch.float64)
    floor = process.perturb(floor, torch.full((shape[0],), process.t0, dtype=torch.float64), eps)
    rows += _distribution_rows(floor, gp, process.t0, "_floor")
    exact = sample(
        gp.score,
        process,
        shape,
        cell["sampler_steps"],
        generator(seed, "sampler"),
        dtype=torch.float64,
        device=device,
    )
    rows += _distribution_rows(exact, gp, process.t0, "_sampler")

    if cell["model"] == "dit":
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
    params = parameter_count(model)
    return [{**row, "train_steps": steps, "params": params} for row in rows]


def figures(frame: Any, figdir: Path) -> list[Path]:
    """Mean attention maps of the dit (seed 0) at each n next to Gamma, one row per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = frame[(frame["metric"] == "attn_map") & (frame["model"] == "dit")]
    if maps.empty:
        return []
    keys = ["kernel", "nu", "length", "frames", "spatial", "rho", "dim"]
    settings = maps[keys].drop_duplicates().to_dict("records")
    ns = sorted(maps["n"].unique())
    fig, axes = plt.subplots(
        len(settings),
        len(ns) + 1,
        figsize=(2.4 * (len(ns) + 1), 2.4 * len(settings)),
        squeeze=False,
    )
    for r, s in enumerate(settings):
        sub = maps
        for k in keys:
            sub = sub[sub[k] == s[k]]
        for c, n in enumerate(ns):
            m = sub[sub["n"] == n].pivot_table(index="row", columns="col", values="value")
            axes[r, c].imshow(m.to_numpy(), cmap="viridis")
            axes[r, c].set_title(f"attention, n={n}", fontsize=8)
        gamma = GaussianProcessSequences.build(
            s["kernel"],
            s["nu"],
            s["length"],
            int(s["frames"]),
            s["spatial"],
            s["rho"],
            int(s["dim"]),
        ).gamma
        axes[r, -1].imshow(gamma.numpy(), cmap="viridis")
        axes[r, -1].set_title(
            f"Gamma ({s['kernel']}, nu={s['nu']:g}, l={s['length']:g})", fontsize=8
        )
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("dit mean attention (seed 0, averaged over layers and heads) and Gamma")
    fig.tight_layout()
    figdir.mkdir(parents=True, exist_ok=True)
    path = figdir / "st_dit_attention.png"
    tmp = figdir / ".st_dit_attention.tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return [path]
