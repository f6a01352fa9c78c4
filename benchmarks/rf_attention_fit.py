"""Time one rf-attention fit against the straightforward route, in one run.

Shape (defaults): heads M = 4096, dim d = 8, keys N = 8, n = 8192 training inputs, all five
targets, the ridge grid toolkit.ridge.DEFAULT_GRID, 4096 test inputs.

- toolkit: toolkit's route (studies.rf_attention.run_cell: feature blocks -> upper-triangle
  Gram in float32 panels accumulated in float64 -> one Cholesky per grid value on the
  hold-out split -> refit -> block-wise test predictions).
- sklearn: the straightforward route: the explicit (n, M (d+1)) feature matrix, then
  sklearn's RidgeCV with the same absolute grid (efficient leave-one-out), one call for all
  targets (alpha_per_target=True), then predictions on the explicit test features.

The floor of an exact solve in this shape is one n x n Gram product, n^2 M (d+1)
multiply-adds; the script prints it in seconds at the machine's measured matmul rate
(float32 4096^3 GEMM), the achieved GFLOP/s of toolkit's Gram step, each route's peak
resident memory (each route runs in its own process) and the speed-up.

    python benchmarks/rf_attention_fit.py [--heads 4096] [--n 8192] [--skip-sklearn]
"""

from __future__ import annotations

import argparse
import inspect
import multiprocessing as mp
import resource
import time


def matmul_gflops(size: int = 4096, repeat: int = 3) -> float:
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * size**3 * repeat / (time.perf_counter() - start) / 1e9


def cell(args) -> dict:
    from studies.rf_attention import TARGETS

    return {
        "model": "rfa",
        "n": args.n,
        "seed": 0,
        "heads": args.heads,
        "dim": args.dim,
        "keys": args.keys,
        "bias": 1.0,
        "noise": 0.0,
        "test_size": args.test_size,
        "targets": list(TARGETS),
    }


def route_toolkit(args, queue) -> None:
    from studies import rf_attention
    from toolkit.random_features import RandomFeatureAttention
    from toolkit.ridge import gram
    from toolkit.rng import generator

    c = cell(args)
    x0, xs = rf_attention._tokens(args.n, c, "train", args.n)
    fmap = RandomFeatureAttention.draw(args.heads, args.dim, generator(0, "qk"))
    start = time.perf_counter()
    blocks = list(fmap.blocks(x0, xs))
    features_s = time.perf_counter() - start
    start = time.perf_counter()
    gram(blocks)
    gram_s = time.perf_counter() - start
    del blocks
    start = time.perf_counter()
    rows = rf_attention.run_cell(c)
    total = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    queue.put(
        {
            "total_s": total,
            "gram_s": gram_s,
            "features_s": features_s,
            "peak_gib": peak,
            "rows": rows,
        }
    )


def route_sklearn(args, queue) -> None:
    import numpy as np
    import torch
    from sklearn.linear_model import RidgeCV

    from studies import rf_attention
    from toolkit.random_features import RandomFeatureAttention
    from toolkit.ridge import DEFAULT_GRID
    from toolkit.rng import generator

    c = cell(args)
    start = time.perf_counter()
    x0, xs = rf_attention._tokens(args.n, c, "train", args.n)
    t0, ts = rf_attention._tokens(args.test_size, c, "test")
    y = rf_attention._targets(x0, xs, c["targets"]).numpy()
    f_test = rf_attention._targets(t0, ts, c["targets"]).numpy()
    fmap = RandomFeatureAttention.draw(args.heads, args.dim, generator(0, "qk"))
    feats = fmap.features(x0, xs).numpy()
    scale = float(np.einsum("ij,ij->", feats, feats, dtype=np.float64)) / args.n
    model = RidgeCV(
        alphas=np.array(DEFAULT_GRID) * scale, fit_intercept=False, alpha_per_target=True
    )
    model.fit(feats, y)
    pred = model.predict(fmap.features(t0, ts).numpy())
    total = time.perf_counter() - start
    err = ((pred - f_test) ** 2).mean(0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    queue.put(
        {
            "total_s": total,
            "peak_gib": peak,
            "errors": err.tolist(),
            "alphas": np.atleast_1d(model.alpha_).tolist(),
        }
    )
    del torch


def in_process(target, args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--keys", type=int, default=8)
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--test-size", type=int, default=4096)
    parser.add_argument("--skip-sklearn", action="store_true")
    args = parser.parse_args()

    import torch

    from toolkit.ridge import gram

    rate = matmul_gflops()
    p = args.heads * (args.dim + 1)
    floor_flop = 2 * args.n**2 * p  # one full n x n Gram: n^2 p multiply-adds
    print(
        f"machine: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"float32 matmul {rate:.0f} GFLOP/s"
    )
    print(
        f"shape: n={args.n}, features={p}, test={args.test_size}; floor (full Gram) "
        f"{floor_flop / 1e9:.0f} GFLOP = {floor_flop / rate / 1e9:.1f} s at that rate"
    )

    ours = in_process(route_toolkit, args)
    # toolkit's Gram computes the upper block-triangle: about (n^2 + n * panel) p / 2 MACs.
    panel = inspect.signature(gram).parameters["panel"].default
    gram_flop = floor_flop / 2 * (1 + panel / args.n)
    print(
        f"toolkit: total {ours['total_s']:.1f} s; measured apart: training features "
        f"{ours['features_s']:.1f} s, Gram {ours['gram_s']:.1f} s "
        f"({gram_flop / ours['gram_s'] / 1e9:.0f} GFLOP/s achieved on "
        f"{gram_flop / 1e9:.0f} GFLOP); {ours['total_s'] / (floor_flop / rate / 1e9):.2f}x "
        f"the floor; peak memory {ours['peak_gib']:.2f} GiB"
    )
    print("toolkit test errors:", {r["target"]: round(r["value"], 4) for r in ours["rows"]})
    if args.skip_sklearn:
        return
    ref = in_process(route_sklearn, args)
    print(f"sklearn RidgeCV: total {ref['total_s']:.1f} s; peak memory {ref['peak_gib']:.2f} GiB")
    print("sklearn test errors:", [round(e, 4) for e in ref["errors"]])
    print(f"speed-up toolkit vs sklearn: {ref['total_s'] / ours['total_s']:.2f}x")


if __name__ == "__main__":
    main()
