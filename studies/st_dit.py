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

Models are looked up in MODELS (name -> builder): a new model is one entry there.

Training rule (recorded per row as `train_steps`): toolkit.diffusion.train_dsm, Adam at
--lr with cosine decay to 0, batch --batch, for toolkit.params.training_steps steps:
--epochs (32) passes over the data, at least --min-steps S at every n (no cap by
default). A rule that gives small n fewer steps
(32 epochs, at least S/8) was tried first and measured optimisation, not sample size: at
n = 256 (l = 4, seed 0) 128 steps gave rel_score_error 0.072 and 1024 steps 0.005.
Estimator choices (documented deviations from a plain DiT / plain DSM):
- eps_hat = sigma_t f(x, t) (train_dsm's "score" parametrisation): the network f predicts
  minus the score (-eps_hat / sigma_t), and the loss is the usual eps loss. An eps network
  must output O(sigma_t) at small t to get the score right; the Gaussian score is bounded
  (|C_t^-1| <= 1 / min eigenvalue), so f extrapolates to small t where an unscaled eps
  network blew the sampler up (smoke problem: corr_error 71 for the dit at n = 1024).
- Training times are log-uniform on [t0, T] (toolkit.diffusion.log_uniform_times: the
  same minimiser, each decade of t trained equally); under U[t0, T] the times t < 0.1 that the
  sampler crosses get ~1% of the batch. Score errors are still averaged over U[t0, T].
- The dit has no LayerNorm (NORM = False): per-token normalisation makes features
  scale-free, while the Gaussian score -C_t^-1 x is linear in x (smoke problem, n = 1024:
  kl of the generated samples 8.5 with LayerNorm, 2.9 without).
- The mlp gets the hidden width whose parameter count is closest to the dit's (`params`).

Profiles: smoke (8 frames, d = 2, n = 16 and 1024, width 32, one block; ~20 s with
--jobs 2), default (exp kernel, nu = 1, l = 1 and 4, n = 256, 1024, 4096, two seeds,
width 48, two blocks, --min-steps 1024; about 8 minutes on 2 CPU cores with --jobs 2), paper
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


def theory_exponent(setting: dict[str, Any]) -> float | None:
    """[DiT-GP] bounds the distribution error by sqrt(1/n) up to logs: slope -1/2 for the
    distances corr_error and bw; KL behaves like a squared distance (TV <= sqrt(KL / 2)), so
    the same bound means slope -1 for kl. The paper states no rate for the score error."""
    return {"corr_error": -0.5, "bw": -0.5, "kl": -1.0}.get(setting.get("metric", ""))


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


MODELS = {"dit": _dit, "mlp": _mlp}


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
    models: tuple[str, ...] = param(tuple(MODELS), "models to train (comma list)", choices=MODELS)
    width: int = param(64, "dit width D (mlp: same parameter count)", low=2)
    depth: int = param(2, "dit blocks L (mlp: hidden layers)", low=1, high=64)
    heads: int = param(4, "attention heads (must divide --width)", low=1)
    attention: str = param("softmax", "attention activation", choices=ACTIVATIONS)
    samples: int = param(2048, "generated sequences m for the distribution errors", low=2)
    # This study's training budget (the fields of DiffusionParams).
    epochs: float = redefault(DiffusionParams, "epochs", 32.0)
    min_steps: int = redefault(DiffusionParams, "min_steps", 4000)

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
    # Minutes on 2 CPU cores: two decay lengths, three n, two seeds.
    "default": {
        "length": (1.0, 4.0),
        "n": (256, 1024, 4096),
        "seeds": 2,
        "width": 48,
        "min_steps": 1024,
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


def figures(frame: Any) -> dict[str, bytes]:
    """Mean attention maps of the dit (seed 0) at each n next to Gamma, one row per setting."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = frame[(frame["metric"] == "attn_map") & (frame["model"] == "dit")]
    if maps.empty:
        return {}
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
        axes[r, -1].imshow(_gaussian_process(s).gamma.numpy(), cmap="viridis")
        axes[r, -1].set_title(
            f"Gamma ({s['kernel']}, nu={s['nu']:g}, l={s['length']:g})", fontsize=8
        )
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("dit mean attention (seed 0, averaged over layers and heads) and Gamma")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return {STUDY.figure_name("attention"): buffer.getvalue()}


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
    backward) and of the three samplers, at about 5 GFLOP/s for these small matrices; the
    mlp spends the same parameters on one token instead of N."""
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
    readme="Study 3: st-dit",
    claims=CLAIMS,
    rate_groups=("kernel", "nu", "length", "spatial", "rho", "frames", "dim", "attention"),
    theory_exponent=theory_exponent,
    floors={"corr_error": "corr_error_floor", "kl": "kl_floor", "bw": "bw_floor"},
    # A matrix for the figure, and the exact-score sampler's errors (the same at every n).
    non_rate_metrics=("attn_map", "corr_error_sampler", "kl_sampler", "bw_sampler"),
    figures=figures,
)
