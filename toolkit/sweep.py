"""The sweep runner: a study's grid of independent cells, run, cached and collected.

A study module provides
    NAME              the CLI name, e.g. "rf-attention"
    OUTPUT            the CSV file name, e.g. "rf_attention.csv"
    Config            a frozen dataclass of parameters (see toolkit.params)
    PROFILES          {"smoke": {...}, "default": {...}, "paper": {...}} field overrides
    cells(config)     -> list of cells; a cell is a JSON-serialisable dict of parameters
                      (grid_cells builds the usual product over list-valued fields and seeds)
    run_cell(cell, device) -> list of rows (dicts with at least metric and value)
and optionally, for `toolkit report` (see toolkit.rates and toolkit.report)
    RATE_GROUPS       tuple of CSV columns that, with model and metric, identify one curve
    theory_exponent(setting) -> the theory's log-log slope of the curve, or None
    FLOORS            {metric: metric recording its noise floor at the same setting, n, seed}
    NON_RATE_METRICS  metrics that are not curves in n (never fitted)
    CLAIMS            the claims under test, as short text for REPORT.md
    comparisons(frame) -> DataFrame of claims that are orderings between models
    figures(frame, figdir) -> list of figure paths the study draws itself

A cell is a pure function of its parameters (all randomness is seeded from them), so a
finished cell is cached under <out>/.cache/<study>/<key>.json and never recomputed: a
rerun or an interrupted run resumes with only the missing cells. The study's CSV is
assembled from the cache of the current grid and written atomically at the end.

Backends. "local" runs cells in this process (jobs = 1) or in joblib worker processes.
"dask" submits each cell as a task to a dask.distributed cluster: an existing one
(`scheduler` address) or a LocalCluster of `workers` processes. Results come back to this
process, which alone writes the cache and the CSV, so workers need no shared filesystem,
and a task lost with a killed worker is rerun by the scheduler (its cell is written once,
by key). Every worker process limits torch to its share of its host's cores.

Faults. A cell whose run_cell raises is recorded as one row with status "failed" and the
exception as reason, and is not cached (a rerun retries it); a cell with a non-finite
value is recorded with status "diverged" (it is deterministic, so it is cached). The rest
of the sweep goes on; SweepResult.failed counts both. Cache entries and the CSV are
written by atomic rename, so two runs sharing an output directory never corrupt a file
(the CSV is that of whichever run finished last).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import itertools
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tqdm.auto import tqdm

from toolkit import __version__
from toolkit.results import atomic_write_json, write_csv

BACKENDS = ("local", "dask")


def grid_cells(config: Any, axes: dict[str, str]) -> list[dict[str, Any]]:
    """A study's cells: one per combination of the list-valued fields in `axes` (field name
    -> the cell's key, e.g. {"n": "n", "models": "model"}, outermost first) and per seed in
    range(config.seeds). n runs largest first, so parallel workers finish together. Every
    other field is copied into each cell (tuples as lists, which the cell handles in one go).
    """
    fields = [f.name for f in dataclasses.fields(config)]
    shared = {
        name: list(value) if isinstance(value, tuple) else value
        for name in fields
        if name not in axes and name != "seeds"
        for value in [getattr(config, name)]
    }
    values = [
        sorted(getattr(config, name), reverse=True) if name == "n" else getattr(config, name)
        for name in axes
    ]
    return [
        {**dict(zip(axes.values(), combo[:-1], strict=True)), "seed": combo[-1], **shared}
        for combo in itertools.product(*values, range(config.seeds))
    ]


def cell_key(study: str, cell: dict[str, Any]) -> str:
    """A stable name for a cell's cache entry (it changes with the toolkit version)."""
    text = json.dumps({"study": study, "cell": cell, "version": __version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_dir(out: Path, study: ModuleType) -> Path:
    return Path(out) / ".cache" / Path(study.OUTPUT).stem


def _execute(module: str, cell: dict[str, Any], device: str, threads: int) -> dict[str, Any]:
    """Run one cell (in this process or a worker), time it and classify the outcome."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    study = importlib.import_module(module)
    start = time.perf_counter()
    try:
        rows = study.run_cell(cell, device)
        bad = sorted({r["metric"] for r in rows if not math.isfinite(float(r["value"]))})
        status, reason = ("diverged", "non-finite " + ", ".join(bad)) if bad else ("ok", "")
    except Exception as err:  # recorded in the CSV; KeyboardInterrupt still stops the run
        rows, status, reason = [], "failed", f"{type(err).__name__}: {err}"
    return {
        "rows": rows,
        "status": status,
        "reason": reason,
        "runtime_s": time.perf_counter() - start,
        "device": device,
    }


def _failed(device: str, reason: str) -> dict[str, Any]:
    return {"rows": [], "status": "failed", "reason": reason, "runtime_s": 0.0, "device": device}


def _rows(study: ModuleType, cell: dict[str, Any], entry: dict[str, Any]) -> list[dict]:
    """Cell parameters joined to each row; a list-valued cell parameter (handled by the cell
    in one go, e.g. all targets of one fit) is replaced by the element each row names.
    A failed cell has one row with an empty metric and value NaN."""
    scalars = {k: v for k, v in cell.items() if not isinstance(v, list | tuple)}
    rows = entry["rows"] or [{"metric": "", "value": float("nan")}]
    return [
        {
            "study": study.NAME,
            **scalars,
            **row,
            "status": entry.get("status", "ok"),
            "reason": entry.get("reason", ""),
            "runtime_s": round(entry["runtime_s"], 4),
            "device": entry["device"],
            "version": __version__,
        }
        for row in rows
    ]


def _run_local(
    study: ModuleType, cells: list[dict], pending: list[int], jobs: int, device: str
) -> Iterator[tuple[int, dict[str, Any]]]:
    if jobs == 1 or len(pending) <= 1:
        for i in pending:
            yield i, _execute(study.__name__, cells[i], device, 0)
        return
    from joblib import Parallel, delayed

    # Workers split the cores; a single in-process job keeps torch's own setting.
    threads = max(1, (os.cpu_count() or 1) // jobs)

    def task(i: int) -> tuple[int, dict[str, Any]]:
        return i, _execute(study.__name__, cells[i], device, threads)

    yield from Parallel(n_jobs=jobs, return_as="generator_unordered")(
        delayed(task)(i) for i in pending
    )


def _dask_task(module: str, cell: dict[str, Any], device: str, threads: dict[str, int]):
    """A cell on a dask worker: torch threads from the client's plan, one GPU per worker."""
    from distributed import get_worker

    worker = get_worker()
    if device == "cuda":
        import torch

        count = torch.cuda.device_count()
        index = worker.name if isinstance(worker.name, int) else hash(str(worker.name))
        device = f"cuda:{index % count}" if count > 1 else "cuda"
    return _execute(module, cell, device, threads.get(worker.address, 1))


def thread_plan(client: Any) -> dict[str, int]:
    """Torch threads per worker address: each host's cores split over its worker threads."""
    cores = client.run(os.cpu_count)  # address -> cores of that worker's host
    workers = client.scheduler_info(n_workers=-1)["workers"]
    per_host: dict[str, int] = {}
    for info in workers.values():
        per_host[info["host"]] = per_host.get(info["host"], 0) + info["nthreads"]
    return {
        address: max(1, (cores.get(address) or 1) // per_host[info["host"]])
        for address, info in workers.items()
    }


def _run_dask(
    study: ModuleType,
    cells: list[dict],
    pending: list[int],
    device: str,
    scheduler: str | None,
    workers: int | None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    import dask
    from distributed import Client, LocalCluster, as_completed

    if scheduler:
        client, cluster = Client(scheduler), None
    else:
        count = workers or (os.cpu_count() or 1)
        # The worker's statistical profiler samples the task thread's stack every 10 ms and
        # competes for the GIL: measured 8% slower cells with it on.
        with dask.config.set({"distributed.worker.profile.enabled": False}):
            cluster = LocalCluster(
                n_workers=count, threads_per_worker=1, processes=True, dashboard_address=":0"
            )
        client = Client(cluster)
    try:
        threads = thread_plan(client)
        futures = {
            client.submit(
                _dask_task,
                study.__name__,
                cells[i],
                device,
                threads,
                key=f"{study.NAME}-{cell_key(study.NAME, cells[i])}",
                pure=False,
            ): i
            for i in pending
        }
        for future in as_completed(futures):
            try:
                entry = future.result()
            except Exception as err:  # e.g. KilledWorker: the task killed every worker it met
                entry = _failed(device, f"{type(err).__name__}: {err}")
            yield futures[future], entry
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@dataclass
class SweepResult:
    path: Path
    cells: int
    computed: int
    failed: int = 0


def run_sweep(
    study: ModuleType,
    config: Any,
    out: Path,
    jobs: int = 1,
    device: str = "cpu",
    progress: bool = True,
    backend: str = "local",
    scheduler: str | None = None,
    workers: int | None = None,
) -> SweepResult:
    """Run every cell of `config` not already cached under `out`; write the study CSV."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    out = Path(out)
    cells = study.cells(config)
    cache = cache_dir(out, study)
    cache.mkdir(parents=True, exist_ok=True)
    paths = [cache / f"{cell_key(study.NAME, c)}.json" for c in cells]
    pending = [i for i, p in enumerate(paths) if not p.exists()]
    bar = tqdm(
        total=len(cells),
        initial=len(cells) - len(pending),
        desc=study.NAME,
        unit="cell",
        disable=not progress,
    )
    if backend == "dask" and pending:
        results = _run_dask(study, cells, pending, device, scheduler, workers)
    else:
        results = _run_local(study, cells, pending, jobs, device)
    failures: dict[int, dict[str, Any]] = {}
    for i, entry in results:
        if entry["status"] == "failed":
            failures[i] = entry
        else:
            atomic_write_json(paths[i], {"cell": cells[i], **entry})
        bar.update(1)
    bar.close()
    entries = [failures.get(i) or json.loads(p.read_text()) for i, p in enumerate(paths)]
    rows = [row for cell, e in zip(cells, entries, strict=True) for row in _rows(study, cell, e)]
    failed = sum(e.get("status", "ok") != "ok" for e in entries)
    return SweepResult(write_csv(rows, out / study.OUTPUT), len(cells), len(pending), failed)
