"""Parallel efficiency of the sweep runner: local joblib workers and a dask LocalCluster.

The same CPU-bound sweep (rf-attention, 16 cells of a few seconds each: M = 1024 heads,
n = 4096, 8 seeds, models rfa and rfmlp, 2 targets) is run, from an empty cache each time:

    serial     local, --jobs 1, this process pinned to one core (the sweep then gives
               each cell 1 torch thread; the reference T_1)
    local-1    local, --jobs 1 (the cell gets all usable cores as torch threads)
    local-2    local, --jobs 2 (each worker process gets cores/2 threads)
    dask-1     dask LocalCluster, 1 worker process (it gets all cores)
    dask-2     dask LocalCluster, 2 worker processes (each gets cores/2 threads)

The sweep sets every cell's torch thread count itself (usable cores // cells run at once),
so the serial reference restricts the CPU affinity rather than torch's threads.

and the script prints wall times, the speed-up T_1 / T and the parallel efficiency
T_1 / (cores * T). Goal: efficiency >= 0.8 with 2 workers on a 2-core machine.

    python benchmarks/sweep_scaling.py [--seeds 8] [--heads 1024] [--n 4096]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time

import torch

from studies import rf_attention
from toolkit.params import build
from toolkit.sweep import run_sweep, usable_cores

STUDY = rf_attention.STUDY


@contextlib.contextmanager
def one_core():
    """This process on one of its cores (Linux), so the sweep runs cells on 1 thread."""
    if not hasattr(os, "sched_setaffinity"):
        raise SystemExit("the serial reference needs os.sched_setaffinity (Linux)")
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)


def timed(config, **kwargs) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = run_sweep(STUDY, config, out, progress=False, **kwargs)
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
        STUDY.config,
        {
            "heads": args.heads,
            "n": (args.n,),
            "seeds": args.seeds,
            "models": ("rfa", "rfmlp"),
            "targets": ("inner1", "inner2"),
            "test_size": 1024,
        },
    )
    cells = STUDY.grid_size(config)
    cores = usable_cores()
    print(f"{cells} cells, {cores} cores, torch {torch.__version__}")

    with one_core():
        serial = timed(config)
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
