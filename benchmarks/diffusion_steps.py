"""Time the two inner loops of the diffusion studies against their previous routes, in one run.

1. The order-4 kernel score at one condition on the Fokker-Planck grid (conditional-diffusion's
   TV, the kernel estimator's main cost): KernelScore.at_condition (one exp pass and one
   matrix product per distinct x-variance, the y-kernels fixed vectors) against the general
   route, KernelScore.score with the condition repeated on every row (a log-sum-exp per
   component over the (batch, n) logits). Shape: n = 10^4 pairs, beta 2.5, 301 faces,
   51 grid times (the default profile's --fp-cells 300, --sampler-steps 50). The script
   prints their largest relative difference (measured 8.5e-10, in the far tails of the
   grid where both routes cancel large logits; tests/test_kernel_score.py checks 1e-12 on
   points near the data).
2. One DiT training step of st-dit's default model (width 32, 2 blocks, 4 heads, batch 128,
   N = 16 frames, d = 4) with the exact (erf) GELU, as toolkit.attention has it, against the
   tanh approximation it used before (measured 1.04x: a first, cold call of the tanh kernel
   is ~6x slower than later ones, which made it look like 30% of a step in a short profile).

Prints seconds and the ratio of each pair; one thread (the studies run one worker per core).

    python benchmarks/diffusion_steps.py
"""

from __future__ import annotations

import time

import torch


def kernel_tv_grid() -> None:
    from toolkit.data.hoelder_conditional import HoelderConditional
    from toolkit.diffusion import OUProcess
    from toolkit.kernel_score import KernelScore
    from toolkit.rng import generator

    process, beta, n = OUProcess(), 2.5, 10_000
    data = HoelderConditional(beta, process=process)
    g = generator(0, "benchmark")
    y = data.sample_conditions(n, g)
    x = data.sample(y, g)
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
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        x0 = torch.randn(128, 16, 4)

        def step() -> None:
            loss = dsm_loss(eps_model, process, x0, g, times=log_uniform_times)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(10):
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return (time.perf_counter() - start) / steps
    finally:
        attention.nn.functional.gelu = gelu


def main() -> None:
    torch.set_num_threads(1)
    kernel_tv_grid()
    exact, tanh = dit_step("none"), dit_step("tanh")
    print("DiT training step (width 32, 2 blocks, batch 128, N = 16, d = 4):")
    print(f"  exact GELU {exact * 1e3:.1f} ms, tanh GELU {tanh * 1e3:.1f} ms: x{tanh / exact:.2f}")


if __name__ == "__main__":
    main()
