"""Time the two inner loops of the diffusion studies against their previous routes, in one run.

1. The order-4 kernel score at one condition on the Fokker-Planck grid (conditional-diffusion's
   TV, the kernel estimator's main cost): KernelScore.at_condition (one exp pass and one
   matrix product per distinct x-variance, the y-kernels fixed vectors) against the general
   route, KernelScore.score with the condition repeated on every row (a log-sum-exp per
   component over the (batch, n) logits). Shape: n = 10^4 pairs, beta 2.5, 301 faces,
   51 grid times (the default profile's --fp-cells 300, --sampler-steps 50). The script
   prints their largest relative difference (measured 8.0e-10 to 8.5e-10, in the far tails of the
   grid where both routes cancel large logits; tests/test_kernel_score.py checks 1e-12 on
   points near the data).
2. One DiT training step of st-dit's default model (width 32, 2 blocks, 4 heads, batch 128,
   N = 16 frames, d = 4) with the exact (erf) GELU, as toolkit.attention has it, against the
   tanh approximation it used before (measured 1.04x: a first, cold call of the tanh kernel
   is ~6x slower than later ones, which made it look like 30% of a step in a short profile).

3. One training step of conditional-diffusion's network at n = 10^4 (width 128, 2 blocks,
   batch 256, inverse-variance times) with its 64 Fourier features of (x, y) against none,
   with the step's FLOPs (forward + backward ~ 3x forward) and the rate they imply
   (measured 3.1 ms and 3.5 ms, x1.12, ~43 GFLOP/s, against ~165 GFLOP/s for a lone
   (256, 128) @ (128, 128) product on one core: the rest of the step is elementwise work
   (SiLU, LayerNorm, sin/cos), Adam's update and per-operator overhead).

4. The kernel estimator's leave-one-out choice of h_y (conditional-diffusion, n = 10^4,
   beta 2.5, order 4, three candidates): toolkit.kernel_score.leave_one_out_log_likelihood
   (chunks of 2^18 entries, x-kernels shared across candidates, the wider kernels from the
   narrower ones' exponents, the four N_c and two D_c of a row one batched product) against
   the log-sum-exp route over the same pairs (_log_conditional per chunk of 2^22 entries,
   the size the score evaluation uses), with their largest difference (measured 2.6-2.7 s
   against 20-22 s, x7.4-8.4, 8.8-8.9 ns a pair and candidate, difference 1.6e-14; the
   first version, four log-sum-exps in chunks of 2^22, took 12 s: at that size every
   temporary is a fresh 32 MiB mapping and its page faults cost more than the arithmetic).

Prints seconds and the ratio of each pair; one thread (the studies run one worker per core).

    python benchmarks/diffusion_steps.py
"""

from __future__ import annotations

import time

import torch


def kink_pairs(process, beta: float, n: int) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    """n pairs (x, y) of conditional-diffusion's kink density, seed "benchmark"."""
    from toolkit.data.hoelder_conditional import HoelderConditional
    from toolkit.rng import generator

    data = HoelderConditional(beta, process=process)
    g = generator(0, "benchmark")
    y = data.sample_conditions(n, g)
    return data.sample(y, g), y


def kernel_tv_grid() -> None:
    from toolkit.diffusion import OUProcess
    from toolkit.kernel_score import KernelScore

    process, beta, n = OUProcess(), 2.5, 10_000
    x, y = kink_pairs(process, beta, n)
    h = n ** (-1 / (2 + 2 * beta))
    est = KernelScore(x, y, h, h, process, order=4)
    y0 = torch.tensor([0.35], dtype=torch.float64)
    faces = torch.linspace(-8, 8, 301, dtype=torch.float64).unsqueeze(1)
    grid = process.time_grid(50)
    fixed = est.at_condition(y0)
    rows = y0.expand(faces.shape[0], 1)

    def run(route):  # noqa: ANN001 - a score(x, t) closure
        start = time.perf_counter()
        out = torch.cat([route(faces, t.expand(faces.shape[0])) for t in grid])
        return out, time.perf_counter() - start

    new, t_new = run(fixed)
    old, t_old = run(lambda xs, t: est.score(xs, rows, t))
    rel = float(((new - old).abs() / old.abs().clamp_min(1e-300)).max())
    print(f"kernel score, 1 condition x {grid.numel()} times x {faces.shape[0]} faces, n = {n}:")
    print(f"  at_condition {t_new:.2f} s, general route {t_old:.2f} s: x{t_old / t_new:.1f}")
    print(f"  largest relative difference {rel:.1e}")


def kernel_leave_one_out() -> None:
    import math

    from toolkit import kernel_score
    from toolkit.diffusion import OUProcess

    beta, n = 2.5, 10_000
    x, y = kink_pairs(OUProcess(), beta, n)
    scale = n ** (-1 / (2 + 2 * beta))
    h_ys = [c * scale for c in (0.5, 0.7, 1.0)]

    start = time.perf_counter()
    fast = kernel_score.leave_one_out_log_likelihood(x, y, scale, h_ys, 4)
    t_fast = time.perf_counter() - start

    start = time.perf_counter()
    size = kernel_score.MAX_ELEMENTS // n
    slow = torch.empty_like(fast)
    for i in range(0, n, size):
        rows = torch.arange(i, min(i + size, n))
        dx2 = torch.cdist(x[rows], x).square()
        dy2 = torch.cdist(y[rows], y).square()
        dx2[torch.arange(rows.numel()), rows] = math.inf  # pair j left out of N and D
        dy2[torch.arange(rows.numel()), rows] = math.inf
        for k, h_y in enumerate(h_ys):
            slow[k, rows] = kernel_score._log_conditional(dx2, dy2, scale, h_y, 1, 1, 4)
    t_slow = time.perf_counter() - start
    pairs = n * n * len(h_ys)
    print(f"leave-one-out likelihood, n = {n}, {len(h_ys)} candidates, order 4:")
    print(
        f"  batched {t_fast:.2f} s ({t_fast / pairs * 1e9:.1f} ns a pair and candidate), "
        f"log-sum-exp {t_slow:.2f} s: x{t_slow / t_fast:.1f}"
    )
    print(f"  largest difference {float((fast - slow).abs().max()):.1e}")


def adam_step_seconds(loss_fn, params, steps: int, warm: int = 10) -> float:  # noqa: ANN001
    """Seconds per Adam step on loss_fn() (a closure returning the loss), after `warm`."""
    opt = torch.optim.Adam(params, lr=1e-3)

    def step() -> None:
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warm):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def dit_step(approximate: str, steps: int = 60) -> float:
    from toolkit import attention
    from toolkit.diffusion import OUProcess, dsm_loss, eps_prediction, log_uniform_times

    gelu = torch.nn.functional.gelu
    attention.nn.functional.gelu = lambda v: gelu(v, approximate=approximate)
    try:
        torch.manual_seed(0)
        model = attention.SequenceDiT(16, 4, 32, 2, 4, "softmax", norm=False)
        process = OUProcess()
        eps_model = eps_prediction(model, process, "score")
        g = torch.Generator().manual_seed(0)
        x0 = torch.randn(128, 16, 4)
        return adam_step_seconds(
            lambda: dsm_loss(eps_model, process, x0, g, times=log_uniform_times),
            model.parameters(),
            steps,
        )
    finally:
        attention.nn.functional.gelu = gelu


def score_net_step(fourier: int, steps: int = 200) -> tuple[float, float]:
    """Seconds per step and FLOPs per step (matrix products only)."""
    from toolkit.diffusion import OUProcess, dsm_loss, inverse_variance_times, token_drop
    from toolkit.score_network import ConditionalScoreNet

    width, depth, batch = 128, 2, 256
    torch.manual_seed(0)
    net = ConditionalScoreNet(1, 1, width, depth, fourier=fourier, fourier_scale=4.0)
    process = OUProcess()
    g = torch.Generator().manual_seed(0)
    x0, y = torch.randn(batch, 1), torch.rand(batch, 1)

    def loss() -> torch.Tensor:
        drop = token_drop(batch, 0.5, g)
        return dsm_loss(net, process, x0, g, y, drop, times=inverse_variance_times)

    seconds = adam_step_seconds(loss, net.parameters(), steps, warm=20)
    # Per sample, forward: 2 blocks of two width x width products, the time MLP (32 -> w,
    # w -> w), the Fourier map (2 fourier -> w); x2 for multiply-add, x3 for the backward.
    macs = depth * 2 * width**2 + (32 * width + width**2) + 2 * fourier * width
    return seconds, 3 * 2 * macs * batch


def main() -> None:
    torch.set_num_threads(1)
    kernel_tv_grid()
    kernel_leave_one_out()
    exact, tanh = dit_step("none"), dit_step("tanh")
    print("DiT training step (width 32, 2 blocks, batch 128, N = 16, d = 4):")
    print(f"  exact GELU {exact * 1e3:.1f} ms, tanh GELU {tanh * 1e3:.1f} ms: x{tanh / exact:.2f}")
    (plain, f_plain), (feat, f_feat) = score_net_step(0), score_net_step(64)
    print("conditional-diffusion network step (width 128, 2 blocks, batch 256):")
    print(
        f"  no features {plain * 1e3:.2f} ms ({f_plain / plain / 1e9:.1f} GFLOP/s), 64 Fourier "
        f"features {feat * 1e3:.2f} ms ({f_feat / feat / 1e9:.1f} GFLOP/s): x{feat / plain:.2f}"
    )


if __name__ == "__main__":
    main()
