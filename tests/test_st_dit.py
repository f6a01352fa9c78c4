"""st-dit: GP ground truth, attention layers, metrics, one smoke training and the CLI."""

import math

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch

from studies import st_dit as study
from toolkit.attention import (
    ACTIVATIONS,
    MultiHeadAttention,
    SequenceDiT,
    SequenceMLP,
    _mlp_parameters,
    parameter_count,
)
from toolkit.cli import main
from toolkit.data.gaussian_process import (
    KERNELS,
    SPATIAL,
    GaussianProcessSequences,
    spatial_covariance,
    temporal_correlation,
    temporal_covariance,
)
from toolkit.diffusion import OUProcess, sample
from toolkit.metrics import (
    attention_alignment,
    bures_wasserstein,
    gaussian_kl,
    score_error,
    second_moment,
)
from toolkit.params import build, training_steps
from toolkit.rng import generator


def _gp(kernel="exp", nu=1.0, length=3.0, frames=6, spatial="ar1", rho=0.5, dim=3):
    return GaussianProcessSequences.build(kernel, nu, length, frames, spatial, rho, dim)


# --- Ground truth --------------------------------------------------------------------------


@pytest.mark.parametrize("kernel,nu", [("exp", 1.0), ("exp", 2.0), ("poly", 1.5)])
def test_kronecker_eigen_score_equals_dense_solve_and_autograd(kernel, nu):
    gp = _gp(kernel, nu)
    cov = gp.covariance()  # (Nd, Nd), row-major vec
    x = torch.randn(5, 6, 3, generator=generator(0, "x"), dtype=torch.float64)
    for t in (1e-3, 0.05, 0.7, 5.0):
        tt = torch.full((5,), t, dtype=torch.float64)
        ct = math.exp(-t) * cov + (-math.expm1(-t)) * torch.eye(18, dtype=torch.float64)
        dense = -torch.linalg.solve(ct, x.reshape(5, 18).T).T.reshape(5, 6, 3)
        assert torch.allclose(gp.score(x, tt), dense, rtol=1e-9, atol=1e-9)
        xg = x.clone().requires_grad_(True)
        law = torch.distributions.MultivariateNormal(torch.zeros(18, dtype=torch.float64), ct)
        (grad,) = torch.autograd.grad(law.log_prob(xg.reshape(5, 18)).sum(), xg)
        assert torch.allclose(gp.score(x, tt), grad, rtol=1e-9, atol=1e-9)
        assert torch.allclose(gp.log_density(x, tt), law.log_prob(x.reshape(5, 18)), atol=1e-9)


def test_kernel_values():
    g = temporal_covariance("exp", 2.0, 4.0, 4)
    assert g[0, 3].item() == pytest.approx(math.exp(-9 / 4))
    assert temporal_covariance("poly", 2.0, 0.5, 3)[2, 0].item() == pytest.approx(1 / 25)
    assert spatial_covariance("ar1", -0.5, 3)[0, 2].item() == pytest.approx(0.25)


@pytest.mark.parametrize("kernel", ["exp", "poly"])
def test_decay_kernels_are_positive_definite_on_documented_ranges(kernel):
    nus = (0.1, 0.5, 1.0, 1.5, 2.0) if kernel == "exp" else (0.05, 0.5, 1.0, 3.0, 10.0)
    for nu in nus:
        for length in (0.2, 1.0, 4.0, 16.0):
            g = temporal_covariance(kernel, nu, length, 24)
            assert torch.allclose(g, g.T) and g.diagonal().eq(1).all()
            assert torch.linalg.eigvalsh(g).min() > 0, (kernel, nu, length)


def test_exp_kernel_beyond_nu_2_is_not_positive_definite_and_is_rejected():
    # Why the range matters: exp(-h^3 / l) is not a covariance (a negative eigenvalue).
    lag = torch.arange(24.0, dtype=torch.float64)
    bad = torch.exp(-((lag[:, None] - lag[None]).abs() ** 3) / 64.0)
    assert torch.linalg.eigvalsh(bad).min() < -1e-6
    with pytest.raises(ValueError, match=r"nu must be in \(0, 2\]"):
        temporal_covariance("exp", 3.0, 64.0, 24)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: temporal_covariance("exp", 0.0, 1.0, 4), "nu"),
        (lambda: temporal_covariance("poly", -1.0, 1.0, 4), "nu"),
        (lambda: temporal_covariance("exp", 1.0, 0.0, 4), "length"),
        (lambda: temporal_covariance("gauss", 1.0, 1.0, 4), "kernel must be one of exp, poly"),
        (lambda: spatial_covariance("ar1", 1.0, 3), r"rho must be in \(-1, 1\)"),
        (lambda: spatial_covariance("diag", 0.5, 3), "spatial must be one of"),
    ],
)
def test_out_of_range_parameters_are_rejected(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.slow
def test_exact_samples_and_exact_score_sampler_reproduce_the_covariance():
    gp = _gp(frames=5, dim=2, length=2.0)
    m = 8192
    exact = gp.sample(m, generator(0, "exact"))
    floor_kl = gaussian_kl(second_moment(exact.flatten(1)), gp.covariance())
    # Expected KL of an m-sample second moment in k = 10 dimensions: k (k + 1) / (4 m).
    assert floor_kl == pytest.approx(10 * 11 / (4 * m), rel=0.5)
    process = OUProcess(1e-3, 8.0)
    x = sample(gp.score, process, (m, 5, 2), 400, generator(0, "sde"), dtype=torch.float64)
    kl = gaussian_kl(second_moment(x.flatten(1)), gp.covariance())
    assert kl < 2.5 * 10 * 11 / (4 * m)  # within the floor's scale: no sampler bias visible
    corr = temporal_correlation(x, gp.sigma)
    assert torch.allclose(corr, gp.gamma[0], atol=0.03)


# --- Metrics -------------------------------------------------------------------------------


def test_gaussian_kl_and_bures_wasserstein_match_dense_formulas():
    a = torch.randn(6, 6, generator=generator(1, "a"), dtype=torch.float64)
    b = torch.randn(6, 6, generator=generator(1, "b"), dtype=torch.float64)
    s1, s2 = a @ a.T + 0.1 * torch.eye(6), b @ b.T + 0.1 * torch.eye(6)
    p, q = s1.numpy(), s2.numpy()
    kl = 0.5 * (
        np.trace(np.linalg.solve(q, p)) - 6 + np.linalg.slogdet(q)[1] - np.linalg.slogdet(p)[1]
    )
    assert gaussian_kl(s1, s2) == pytest.approx(kl, rel=1e-8)
    rq = scipy.linalg.sqrtm(q).real
    w2 = np.trace(p) + np.trace(q) - 2 * np.trace(scipy.linalg.sqrtm(rq @ p @ rq).real)
    assert bures_wasserstein(s1, s2) == pytest.approx(math.sqrt(w2), rel=1e-6)
    assert gaussian_kl(s2, s2) == pytest.approx(0, abs=1e-10)
    assert bures_wasserstein(s2, s2) == pytest.approx(0, abs=1e-5)
    s1[0, 0] = math.nan  # a diverged sampler
    assert gaussian_kl(s1, s2) == math.inf and bures_wasserstein(s1, s2) == math.inf


def test_attention_alignment():
    gamma = temporal_covariance("exp", 1.0, 3.0, 6)
    maps = torch.stack([gamma, 2 * gamma + 1, gamma.flip(0)]).view(1, 3, 6, 6)
    out = attention_alignment(maps, gamma)
    assert out["attn_pearson_best"] == pytest.approx(1.0)
    assert out["attn_spearman_best"] == pytest.approx(1.0)
    assert out["attn_pearson_mean"] < 0.9


# --- Networks ------------------------------------------------------------------------------


def test_attention_rows_sum_as_documented():
    torch.manual_seed(0)
    x = torch.randn(3, 7, 16)
    for activation in ("relu", "softmax"):
        attn = MultiHeadAttention(16, 4, activation).double()
        q, k, _ = attn.qkv(x.double()).view(3, 7, 3, 4, 4).permute(2, 0, 3, 1, 4)
        w = attn.attention_weights(q, k)  # (3, 4, 7, 7)
        assert (w >= 0).all()
        if activation == "softmax":
            assert torch.allclose(w.sum(-1), torch.ones(3, 4, 7, dtype=torch.float64))
        else:  # row i sums to the mean over j of relu(q_i . k_j / sqrt(d_head))
            scores = torch.einsum("bhid,bhjd->bhij", q, k) / 2.0
            assert torch.allclose(w.sum(-1), torch.relu(scores).mean(-1))
            assert (w.sum(-1) - 1).abs().max() > 0.1  # not normalised to 1


def test_dit_starts_at_zero_and_exposes_attention_maps():
    dit = SequenceDiT(frames=5, dim=3, width=16, depth=2, heads=2, activation="relu")
    x, t = torch.randn(4, 5, 3), torch.full((4,), 0.3)
    assert dit(x, t).abs().max() == 0  # adaLN-Zero and a zero output layer
    maps = dit.attention_maps(x, t)
    assert maps.shape == (2, 4, 2, 5, 5)
    assert all(block.attn.weights is None for block in dit.blocks)


def test_mlp_parameter_count_is_matched():
    dit = SequenceDiT(frames=16, dim=4, width=48, depth=2, heads=4)
    mlp = SequenceMLP.matched(parameter_count(dit), 16, 4, depth=2)
    assert parameter_count(mlp) == _mlp_parameters(mlp.net[0].out_features, 16, 4, 2)
    assert abs(parameter_count(mlp) / parameter_count(dit) - 1) < 0.01


# --- The study -----------------------------------------------------------------------------


@pytest.mark.slow
def test_smoke_dit_learns_the_score_and_improves_with_n(tmp_path):
    config = build(study.STUDY.config, study.STUDY.profiles["smoke"])
    cells = [c for c in study.STUDY.cells(config) if c["model"] == "dit"]
    rows = {c["n"]: study.STUDY.run_cell(c, "cpu") for c in cells}
    runs = {n: {r["metric"]: r["value"] for r in rs} for n, rs in rows.items()}
    small, large = runs[min(runs)], runs[max(runs)]
    # The zero predictor has relative score error exactly 1.
    gp = GaussianProcessSequences.build("exp", 1.0, 2.0, 8, "ar1", 0.5, 2)
    zero = score_error(
        lambda x, t: torch.zeros_like(x),
        gp.score,
        gp.sample(256, generator(0, "z")),
        OUProcess(),
        generator(0, "zt"),
    )[1]
    assert zero == pytest.approx(1.0)
    assert large["rel_score_error"] < 0.15 * zero
    assert large["rel_score_error"] < 0.7 * small["rel_score_error"]  # 0.028 vs 0.054
    assert large["attn_pearson_best"] > 0.3
    assert large["kl_floor"] == small["kl_floor"]  # the floor depends on the seed only
    # The figure hook plots the attention-map rows next to Gamma.
    scalars = [{k: v for k, v in c.items() if not isinstance(v, list)} for c in cells]
    frame = pd.DataFrame([{**c, **r} for c in scalars for r in rows[c["n"]]])
    assert len(frame[frame["metric"] == "attn_map"]) == 2 * 8 * 8
    ((name, png),) = study.STUDY.figures(frame).items()
    assert name == "st_dit_attention.png" and png.startswith(b"\x89PNG") and len(png) > 10_000
    (tmp_path / name).write_bytes(png)  # the bytes are a whole file, as the report writes it
    assert (tmp_path / name).stat().st_size > 10_000


@pytest.mark.parametrize(
    "args,message",
    [
        (["--nu", "3"], "--nu must be in (0, 2] for --kernel exp"),
        (["--heads", "5"], "--heads must divide --width"),
        (["--samples", "10"], "--samples must exceed"),
        (["--kernel", "gauss"], "--kernel must be one of exp, poly"),
        (["--rho", "1"], "--rho must be"),
        (["--t0", "9"], "--t0 must be smaller than --horizon"),
        (["--attention", "linear"], "--attention must be one of relu, softmax"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    args, message, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")
    out = tmp_path / "out"
    assert main(["run", "st-dit", "--profile", "smoke", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_rates_interface():
    floors = {
        "corr_error": "corr_error_sampler",  # what the exact score reaches, same m and noise
        "kl_excess": "kl_sampler",
    }
    assert study.STUDY.floors == floors  # subtracted
    assert study.STUDY.resolutions == {"kl_score": "kl_score_se"}  # points within 1 SE go
    claim = study.STUDY.theory({"metric": "kl_score", "model": "dit"})
    assert (claim.theta, claim.kind) == (-1.0, "upper bound")
    assert study.STUDY.theory({"metric": "rel_score_error", "model": "dit"}) is None
    # Nothing that cannot change with n is fitted; no floor is dropped before the fit.
    assert {"kl_sampler", "bw_sampler", "corr_error_sampler", "corr_error_floor"} <= set(
        study.STUDY.non_rate_metrics
    ) | set(floors.values())
    assert not set(floors.values()) & set(study.STUDY.non_rate_metrics)
    # The budget rule at this study's defaults: epochs passes, at least --min-steps, no cap.
    config = study.STUDY.config()
    assert (config.epochs, config.max_steps, config.batch) == (32.0, 0, 128)
    assert training_steps(256, 128, config.epochs, 1024, config.max_steps) == 1024
    assert training_steps(8192, 128, config.epochs, 1024, config.max_steps) == 2048


def test_rates_skip_n_independent_metrics_and_use_the_kl_score_se_as_floor():
    from toolkit.rates import study_rates

    rows = []
    for n, value, se in ((256, 0.4, 0.01), (1024, 0.2, 0.01), (4096, 0.1, 0.2), (16384, 0.05, 0.1)):
        for seed in (0, 1):
            base = {"study": "st-dit", "model": "dit", "n": n, "seed": seed, "kernel": "exp"}
            value_s = value * (1 + 0.01 * seed)
            rows += [
                {**base, "metric": "kl_score", "value": value_s},
                {**base, "metric": "kl_score_se", "value": se},
                {**base, "metric": "kl_sampler", "value": 0.146},
                {**base, "metric": "bw_sampler", "value": 0.3},
                {**base, "metric": "kl", "value": 0.9},
            ]
    frame = pd.DataFrame(rows)
    for col in study.STUDY.rate_groups:
        frame[col] = frame.get(col, "x")
    rates = study_rates(frame, study.STUDY)
    assert set(rates["metric"]) == {"kl_score"}
    (fit,) = rates.itertuples()
    assert (fit.n_min, fit.n_max, fit.n_points) == (256, 1024, 2)  # points within 1 SE go
    assert fit.slope == pytest.approx(-0.5, abs=0.01)


def test_decay_factors_and_comparisons_rank_settings():
    f = study.decay_factors({"kernel": "exp", "nu": 1.0, "length": 4.0, "frames": 16})
    g = torch.linalg.eigvalsh(temporal_covariance("exp", 1.0, 4.0, 16))
    assert f["decay_length"] == 4.0 and f["kappa"] == pytest.approx(float(g[-1] / g[0]))
    assert f["bound_factor"] == pytest.approx(4.0 * f["kappa"] ** 2)
    assert f["inverse_min_eigenvalue"] == pytest.approx(float(1 / g[0]))
    # Synthetic errors 0.01 kappa^0.5 (n / 256)^-0.5: the kappa slope is 0.5 with R^2 = 1 and
    # n_eps solves the power law.
    rng = np.random.default_rng(0)
    rows = []
    settings = (("exp", 1.0, 1.0), ("exp", 1.0, 4.0), ("poly", 2.0, 2.0), ("poly", 0.5, 2.0))
    for kernel, nu, length in settings:
        f = study.decay_factors({"kernel": kernel, "nu": nu, "length": length, "frames": 16})
        for n in (256, 1024, 4096):
            for seed in (0, 1):
                value = 0.01 * f["kappa"] ** 0.5 * (n / 256) ** -0.5
                value *= math.exp(0.02 * rng.standard_normal())
                rows.append({
                    "study": "st-dit", "model": "dit", "n": n, "seed": seed,
                    "metric": "rel_score_error", "value": value, "kernel": kernel, "nu": nu,
                    "length": length, "spatial": "ar1", "rho": 0.5, "frames": 16, "dim": 4,
                    "attention": "softmax", **f,
                })  # fmt: skip
    out = study.comparisons(pd.DataFrame(rows), resamples=200)
    kappa = out[out["statistic"].str.contains("kappa\\(Gamma\\)")].iloc[0]
    assert kappa["value"] == pytest.approx(0.5, abs=0.03) and kappa["verdict"] == "holds"
    assert "R^2=1.00" in kappa["statistic"] and kappa["ci_low"] < 0.5 < kappa["ci_high"]
    factors = out[out["statistic"].str.startswith("slope of log")]["statistic"]
    assert len(factors) == 4 and factors.str.contains("1/lambda_min\\(Gamma\\)").sum() == 1
    n_eps = out[out["statistic"].str.startswith("n_eps")]
    assert len(n_eps) == 4 and (n_eps["ci_low"] < n_eps["value"]).all()
    first = n_eps[n_eps["setting"].str.startswith("exp, nu=1, l=1 ")].iloc[0]
    kappas = [study.decay_factors({"kernel": k, "nu": v, "length": w, "frames": 16})["kappa"]
              for k, v, w in settings]  # fmt: skip
    eps = 0.01 * 0.25 * math.prod(kappas) ** (1 / 8)
    expected = 256 * (0.01 * kappas[0] ** 0.5 / eps) ** 2
    assert first["value"] == pytest.approx(expected, rel=0.05)


def test_study_choices_match_the_library():
    """st_dit names the choices itself (so `toolkit list` needs no torch); they must agree."""
    assert study.KERNELS == KERNELS
    assert study.SPATIAL == SPATIAL
    assert study.ACTIVATIONS == ACTIVATIONS


def test_depth_models_hold_the_parameter_count_and_the_depth_figure_draws():
    cell = {"frames": 16, "dim": 4, "width": 32, "depth": 2, "heads": 4,
            "attention": "softmax", "seed": 0}  # fmt: skip
    dit = study.build_model({**cell, "model": "dit"})
    for name, blocks in (("dit1", 1), ("dit4", 4)):
        net = study.build_model({**cell, "model": name})
        assert len(net.blocks) == blocks
        assert abs(parameter_count(net) / parameter_count(dit) - 1) < 0.1
    rows = [
        {"model": m, "metric": metric, "n": 4096, "seed": s, "value": 0.01 * b**-0.3 * (s + 1),
         "blocks": b, "kernel": "exp", "nu": 1.0, "length": 4.0, "kappa": 49.8}
        for m, b in (("dit1", 1), ("dit", 2), ("dit4", 4))
        for metric in study.DECAY_METRICS
        for s in (0, 1)
    ]  # fmt: skip
    ((name, png),) = study.depth_figure(pd.DataFrame(rows)).items()
    assert name == "st_dit_depth.png" and png.startswith(b"\x89PNG")
    assert study.depth_figure(pd.DataFrame(rows[:4])) == {}  # one depth: no figure


def test_default_profile_spans_three_nu_and_its_steps_grow_with_n():
    """The default: both kernels x nu = 0.5, 1, 2 (six decay settings), n = 2^8..2^12, two
    seeds, lr 3e-3; 64 epochs and at least 512 steps: 512 up to n = 1024, then ~ n / 2."""
    from toolkit.params import build

    config = build(study.STUDY.config, study.STUDY.profiles["default"])
    assert config.kernel == ("exp", "poly") and config.nu == (0.5, 1.0, 2.0)
    assert config.n == (256, 512, 1024, 2048, 4096) and config.seeds == 2
    assert config.lr == 3e-3
    steps = [
        training_steps(n, config.batch, config.epochs, config.min_steps, config.max_steps)
        for n in config.n
    ]
    assert steps == [512, 512, 512, 1024, 2048]
    assert study.STUDY.grid_size(config) == 6 * 5 * 2 * 2  # settings x n x seeds x models
