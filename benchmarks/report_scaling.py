"""How the report scales: a synthetic study of R rows in C curves through toolkit report.

    python benchmarks/report_scaling.py [rows] [curves]     (default 100000 rows, 5000 curves)

Prints the wall time and peak memory (ru_maxrss) of write_report on a temporary folder.
The curves are power laws c n^-0.5 e^noise over 5 n with rows / (5 curves) seeds each,
one setting column; the toy study declares an exact-rate claim, so every curve gets the
full treatment (fit, curvature, power, sample complexity), and one figure per metric
(capped at toolkit.plots.MAX_PANELS panels).
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.report import write_report
from toolkit.stats import Claim
from toolkit.study import Study


@dataclass(frozen=True)
class Config:
    n: tuple[int, ...] = (100, 300, 1000, 3000, 10000)
    g: tuple[int, ...] = (0,)
    seeds: int = 2


def main(rows: int = 100_000, curves: int = 5_000) -> None:
    n_grid = np.array(Config.n)
    seeds = max(2, rows // (curves * n_grid.size))
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(curves), n_grid.size * seeds)
    n = np.tile(np.repeat(n_grid, seeds), curves)
    seed = np.tile(np.arange(seeds), curves * n_grid.size)
    value = n**-0.5 * np.exp(0.1 * rng.standard_normal(n.size))
    frame = pd.DataFrame({"study": "toy", "model": "m", "n": n, "seed": seed,
                          "metric": "err", "value": value, "g": g, "status": "ok"})  # fmt: skip
    study = Study(
        name="toy", summary="A synthetic study.", config=Config, axes={"n": "n", "g": "g"},
        run_cell=lambda cell, device: [], profiles={"default": {}}, memory=lambda cell: 0.0,
        rate_groups=("g",), theory=lambda s: Claim(-0.5),
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        frame.to_csv(Path(folder) / "toy.csv", index=False)
        start = time.perf_counter()
        write_report(folder, {"toy": study})
        wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{len(frame)} rows, {curves} curves ({seeds} seeds x {n_grid.size} n): "
          f"report {wall:.1f} s, peak memory {peak:.2f} GiB")  # fmt: skip


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
