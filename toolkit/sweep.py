"""The sweep runner: a study's grid of independent cells, run, cached and collected.

A study module provides
    NAME              the CLI name, e.g. "rf-attention"
    OUTPUT            the CSV file name, e.g. "rf_attention.csv"
    Config            a frozen dataclass of parameters (see toolkit.params)
    PROFILES          {"smoke": {...}, "default": {...}, "paper": {...}} field overrides
    cells(config)     -> list of cells; a cell is a JSON-serialisable dict of parameters
    run_cell(cell, device) -> list of rows (dicts with at least metric and value)
and optionally, for `toolkit report` (see toolkit.rates and toolkit.report)
    RATE_GROUPS       tuple of CSV columns that, with model and metric, identify one curve
    theory_exponent(setting) -> the theory's log-log slope of the curve, or None
    FLOORS            {metric: metric recording its noise floor at the same setting, n, seed}
    CLAIMS            the claims under test, as short text for REPORT.md
    comparisons(frame) -> DataFrame of claims that are orderings between models
    figures(frame, figdir) -> list of figure paths the study draws itself

A cell is a pure function of its parameters (all randomness is seeded from them), so a
finished cell is cached under <out>/.cache/<study>/<key>.json and never recomputed: a
rerun or an interrupted run resumes with only the missing cells. The study's CSV is
assembled from the cache of the current grid and written atomically at the end.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tqdm.auto import tqdm

from toolkit import __version__
from toolkit.results import atomic_write_json, write_csv


def cell_key(study: str, cell: dict[str, Any]) -> str:
    """A stable name for a cell's cache entry (it changes with the toolkit version)."""
    text = json.dumps({"study": study, "cell": cell, "version": __version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_dir(out: Path, study: ModuleType) -> Path:
    return Path(out) / ".cache" / Path(study.OUTPUT).stem


def _execute(module: str, cell: dict[str, Any], device: str, threads: int) -> dict[str, Any]:
    """Run one cell (in this process or a worker) and time it."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    study = importlib.import_module(module)
    start = time.perf_counter()
    rows = study.run_cell(cell, device)
    return {"rows": rows, "runtime_s": time.perf_counter() - start, "device": device}


def _rows(study: ModuleType, cell: dict[str, Any], entry: dict[str, Any]) -> list[dict]:
    """Cell parameters joined to each row; a list-valued cell parameter (handled by the cell
    in one go, e.g. all targets of one fit) is replaced by the element each row names."""
    scalars = {k: v for k, v in cell.items() if not isinstance(v, list | tuple)}
    return [
        {
            "study": study.NAME,
            **scalars,
            **row,
            "runtime_s": round(entry["runtime_s"], 4),
            "device": entry["device"],
            "version": __version__,
        }
        for row in entry["rows"]
    ]


@dataclass
class SweepResult:
    path: Path
    cells: int
    computed: int


def run_sweep(
    study: ModuleType,
    config: Any,
    out: Path,
    jobs: int = 1,
    device: str = "cpu",
    progress: bool = True,
) -> SweepResult:
    """Run every cell of `config` not already cached under `out`; write the study CSV."""
    out = Path(out)
    cells = study.cells(config)
    cache = cache_dir(out, study)
    cache.mkdir(parents=True, exist_ok=True)
    paths = [cache / f"{cell_key(study.NAME, c)}.json" for c in cells]
    pending = [i for i, p in enumerate(paths) if not p.exists()]
    # Workers split the cores; a single in-process job keeps torch's own setting.
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else 0
    bar = tqdm(
        total=len(cells),
        initial=len(cells) - len(pending),
        desc=study.NAME,
        unit="cell",
        disable=not progress,
    )
    if jobs == 1 or len(pending) <= 1:
        results = ((i, _execute(study.__name__, cells[i], device, threads)) for i in pending)
    else:
        from joblib import Parallel, delayed

        def task(i: int) -> tuple[int, dict[str, Any]]:
            return i, _execute(study.__name__, cells[i], device, threads)

        parallel = Parallel(n_jobs=jobs, return_as="generator_unordered")
        results = parallel(delayed(task)(i) for i in pending)
    for i, entry in results:
        atomic_write_json(paths[i], {"cell": cells[i], **entry})
        bar.update(1)
    bar.close()
    rows = []
    for cell, path in zip(cells, paths, strict=True):
        rows += _rows(study, cell, json.loads(path.read_text()))
    return SweepResult(write_csv(rows, out / study.OUTPUT), len(cells), len(pending))
