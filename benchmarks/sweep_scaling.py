"""Parallel efficiency of the sweep runner: local joblib workers and a dask LocalCluster.

The same CPU-bound sweep (rf-attention, 16 cells of a few seconds each: M = 1024 heads,
n = 4096, 8 seeds, models rfa and rfmlp, 2 targets) is run, from an empty cache each time:

    serial     local, --jobs 1, torch limited to 1 thread (the reference T_1)
    local-1    local, --jobs 1, torch's default threads
    local-2    local, --jobs 2 (each worker process gets cores/2 threads)
    dask-1     dask LocalCluster, 1 worker process (it gets all cores)
    dask-2     dask LocalCluster, 2 worker processes (each gets cores/2 threads)

and the script prints wall times, the speed-up T_1 / T and the parallel efficiency
T_1 / (cores * T). Goal: efficiency >= 0.8 with 2 workers on a 2-core machine.

    python benchmarks/sweep_scaling.py [--seeds 8] [--heads 1024] [--n 4096]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from studies import rf_attention
from toolkit.params import build
from toolkit.sweep import run_sweep


def timed(config, **kwargs) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = run_sweep(rf_attention, config, out, progress=False, **kwargs)
        elapsed = time.perf_counter() - start
    assert result.failed == 0 and result.computed == result.cells
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--heads", type=int, default=1024)
    parser.add_argument("--n", type=int, default=4096)
    args = parser.parse_args()
    config = build(
        rf_attention.Config,
        {
            "heads": args.heads,
            "n": (args.n,),
            "seeds": args.seeds,
            "models": ("rfa", "rfmlp"),
            "targets": ("inner1", "inner2"),
            "test_size": 1024,
        },
    )
    cells = len(rf_attention.cells(config))
    cores = os.cpu_count() or 1
    print(f"{cells} cells, {cores} cores, torch {torch.__version__}")

    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    serial = timed(config)
    torch.set_num_threads(default_threads)
    print(f"{'run':<10}{'wall s':>9}{'s/cell':>9}{'speed-up':>10}{'efficiency':>12}")
    print(f"{'serial':<10}{serial:>9.1f}{serial / cells:>9.2f}{1.0:>10.2f}{1.0:>12.2f}")
    runs = {
        "local-1": {"jobs": 1},
        "local-2": {"jobs": 2},
        "dask-1": {"backend": "dask", "workers": 1},
        "dask-2": {"backend": "dask", "workers": 2},
    }
    for name, kwargs in runs.items():
        wall = timed(config, **kwargs)
        used = min(cores, 2)
        print(
            f"{name:<10}{wall:>9.1f}{wall / cells:>9.2f}{serial / wall:>10.2f}"
            f"{serial / (used * wall):>12.2f}"
        )


if __name__ == "__main__":
    main()
