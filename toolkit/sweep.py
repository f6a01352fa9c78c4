"""The sweep runner: a study's grid of independent cells, checked, run, cached and collected.

It knows a study only through its `toolkit.study.Study`. A cell is a pure function of its
parameters (all randomness is seeded from them), so a finished cell is cached under
<out>/.cache/<slug>/<key>.json and a rerun computes only the missing cells. The study's CSV
is assembled from the cache of the current grid and written atomically at the end.

Before any work (ParameterError, one line, nothing created):
- the grid size is computed from the axes without building it (at most MAX_CELLS);
- each cell's peak memory is estimated by the study (`Study.memory`); the largest, times
  the cells that run at once, must fit `max_memory` (default: the available memory);
- `jobs` and local dask `workers` are capped at the usable cores, with a warning;
- the output and cache directories are checked (toolkit.results.check_directory: name
  lengths, kinds of file, virtual file systems, a probe write) and, once the cache has
  been read, their free space against the entries and CSV to be written;
- a dask `scheduler` is a well-formed address, is connected to within CONNECT_TIMEOUT
  seconds, and has a worker within `worker_timeout` seconds.

A cache that cannot lie. The key of a cell hashes the study name, the cell, the code that
runs it (`code_hash`: the code of the study module and of every toolkit module it imports,
transitively, with the Python and library versions), the device and the torch thread
count (a different thread count sums in another order: the last digits change). An entry
records its key, cell and code hash and a checksum of its content, and is used only if they
match and its content is a valid result (`content_problem`: numeric values, finite unless
the status is diverged, no row column that shadows a cell parameter or a bookkeeping
column); any other entry is recomputed, with one warning line. Every CSV row carries its
code_hash, device and threads, and the cell's parameters win over a row's own columns.

Backends. "local" runs cells in this process (jobs = 1) or in joblib worker processes.
"dask" submits each cell as a task to a dask.distributed cluster: an existing one
(`scheduler` address) or a LocalCluster of `workers` processes bound to 127.0.0.1. Results
come back to this process, which alone writes the cache and the CSV, so workers need no
shared filesystem, and a task lost with a killed worker is rerun by the scheduler (its
cell is written once, by key). Every cell runs with the same torch thread count: the
usable cores divided by the cells that run at once on a host (the smallest share of any
host on a remote cluster).

Faults. A cell whose run_cell raises is recorded as one row with status "failed" and the
exception as reason, and is not cached (a rerun retries it); a cell with a non-finite
value is recorded with status "diverged" (it is deterministic, so it is cached). The rest
of the sweep goes on; SweepResult.failed counts both. Cache entries and the CSV are
written by atomic rename, so two runs sharing an output directory never corrupt a file
(the CSV is that of whichever run finished last). A write error (a full disk, a
permission lost) or a dask cluster without a worker for `worker_timeout` seconds stops
the run with SweepError (one line; exit status 1 from the CLI); the cells finished by then
stay cached, so a rerun resumes. docs/robustness.md lists every hostile input handled.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import ipaddress
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from toolkit import __version__
from toolkit.cell import execute_cell
from toolkit.params import ParameterError
from toolkit.results import (
    LAST_COLUMNS,
    atomic_write_json,
    check_directory,
    free_space,
    write_csv,
)
from toolkit.study import Cell, Study

BACKENDS = ("local", "dask")
MAX_CELLS = 100_000  # a grid larger than this is a typo, not a study
CONNECT_TIMEOUT = 10.0  # seconds to reach a dask scheduler
WORKER_TIMEOUT = 60.0  # seconds to wait for a dask cluster to have a worker
POLL = 2.0  # seconds between looks at a dask cluster's workers while cells run
ENTRY_BYTES = 16 * 1024  # a cell's cache entry, and again its CSV rows, where none is cached
CODE_PACKAGES = ("toolkit", "studies")  # imports followed into the code hash
RUNNER_MODULES = ("toolkit.cell",)  # the code around every cell (threads, timing, status)
# Report-side modules: a study imports them for its report hooks (comparisons, figures), but
# they never run inside a cell (tests/test_cache.py runs a cell of every study to check), so
# editing the report does not invalidate cached cells.
REPORT_MODULES = ("toolkit.rates", "toolkit.stats", "toolkit.report", "toolkit.plots")


class SweepWarning(UserWarning):
    """Something the sweep corrected on its own (a capped --jobs, a bad cache entry)."""


class SweepError(RuntimeError):
    """The run stopped on a fault of its surroundings (a write error, a cluster without
    workers) after some cells ran; one line, exit status 1. Finished cells stay cached."""


# ---- The machine ----------------------------------------------------------------------------


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_memory() -> float:
    """Bytes of memory available to new work (MemAvailable; free pages where unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return math.inf


def format_bytes(size: float) -> str:
    """1.5 GiB style."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(size) < 1024 or unit == "PiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size:.0f} B"
        size /= 1024
    raise AssertionError("unreachable")


# ---- The code that runs a cell ----------------------------------------------------------------


def _source_file(module: str) -> Path | None:
    loaded = sys.modules.get(module)
    path = getattr(loaded, "__file__", None)
    if path is None:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return None
        path = spec.origin if spec is not None else None
    return Path(path) if path and str(path).endswith(".py") else None


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Modules named by the import statements anywhere in a module (local imports too)."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = importlib.util.resolve_name("." * node.level + base, package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # submodules
    return names


def _code(tree: ast.Module) -> bytes:
    """The code of a module without its docstrings and comments (ast.dump, no line numbers):
    editing documentation does not invalidate cached cells, editing code does."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def _versions(libraries: set[str]) -> list[str]:
    """name==version of the installed distributions providing these top-level imports."""
    providers = importlib.metadata.packages_distributions()
    found = set()
    for library in libraries:
        for dist in providers.get(library, []):
            try:
                found.add(f"{dist}=={importlib.metadata.version(dist)}")
            except importlib.metadata.PackageNotFoundError:
                pass
    return sorted(found)


def code_hash(module: str) -> str:
    """A hash of the code that runs a cell of the study defined in `module`.

    The code (docstrings and comments aside) of `module`, of RUNNER_MODULES and of every
    module of CODE_PACKAGES they import (anywhere in the file, transitively; REPORT_MODULES
    excepted), read from disk, plus the Python version and the versions of the third-party
    libraries those modules import (torch, numpy, scipy, ...). Editing any of them changes
    the hash, and so every cache key. Computed afresh at every call (a few milliseconds),
    so an edit is seen even within one Python session."""
    codes: dict[str, bytes] = {}
    seen: set[str] = set()
    libraries: set[str] = set()
    stack = [module, *RUNNER_MODULES]
    while stack:
        name = stack.pop()
        if name in seen or name in REPORT_MODULES:
            continue
        seen.add(name)
        path = _source_file(name)
        if path is None:
            continue
        tree = ast.parse(path.read_bytes())
        for child in _imports(tree, name, path.name == "__init__.py"):
            if child.split(".")[0] in CODE_PACKAGES or child == module:
                stack.append(child)
            else:
                libraries.add(child.split(".")[0])
        codes[name] = _code(tree)
    # In a fixed order: sets iterate in an order that changes between processes.
    digest = hashlib.sha256()
    for name in sorted(codes):
        digest.update(f"{name}\0{len(codes[name])}\0".encode() + codes[name])
    python = "python=={}.{}.{}".format(*sys.version_info[:3])
    for version in [python, *_versions(libraries)]:
        digest.update(version.encode())
    return digest.hexdigest()[:16]


def cell_key(study: Study, cell: Cell, code: str, device: str, threads: int) -> str:
    """The name of a cell's cache entry: everything that decides its numbers."""
    material = {
        "study": study.name,
        "cell": cell,
        "code": code,
        "device": device,
        "threads": threads,
    }
    text = json.dumps(material, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_dir(out: Path, study: Study) -> Path:
    return Path(out) / ".cache" / study.slug


# Columns the runner writes into every row: a row of run_cell must not carry them.
BOOKKEEPING = ("study", *LAST_COLUMNS)
CONTENT = ("rows", "status", "reason", "runtime_s")  # what an entry's checksum covers


def checksum(entry: dict[str, Any]) -> str:
    """A hash of an entry's content (its rows, status, reason and run time), written with the
    entry and checked on read: an entry edited by hand or truncated is recomputed."""
    content = {name: entry.get(name) for name in CONTENT}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:32]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def content_problem(entry: dict[str, Any], cell: Cell) -> str | None:
    """Why the content of a cached (or freshly computed) entry cannot be the result of
    `cell`, or None. Its rows are dicts with a text metric and a numeric value, their other
    columns scalars (NaN allowed: e.g. the final_loss of a kernel estimator), none of them
    a scalar parameter of the cell or a column the runner writes (BOOKKEEPING); its status
    and reason are those toolkit.cell gives these rows: "ok" when every value is finite,
    else "diverged" naming the non-finite metrics (st-dit's inf of a diverged chain)."""
    rows = entry.get("rows")
    if entry.get("status") not in ("ok", "diverged"):
        return f"status {entry.get('status')!r} is not ok or diverged"
    runtime = entry.get("runtime_s")
    if not _number(runtime) or not 0 <= runtime < math.inf:
        return f"runtime_s {runtime!r} is not a finite number >= 0"
    if not isinstance(entry.get("reason"), str) or not isinstance(rows, list):
        return "its reason is not text or its rows not a list"
    shadowed = {k for k, v in cell.items() if not isinstance(v, list | tuple)} | set(BOOKKEEPING)
    bad: set[str] = set()
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("metric"), str):
            return "a row has no text metric"
        value = row.get("value")
        if not _number(value):
            return f"the value {value!r} of {row['metric']!r} is not a number"
        if not math.isfinite(value):
            bad.add(row["metric"])
        taken = sorted(shadowed & set(row))
        if taken:
            return f"a row of {row['metric']!r} sets {', '.join(taken)}, a column of the cell"
        for key, item in row.items():
            if item is not None and not isinstance(item, str | int | float):
                return f"column {key!r} of {row['metric']!r} holds a {type(item).__name__}"
    status, reason = ("diverged", "non-finite " + ", ".join(sorted(bad))) if bad else ("ok", "")
    if (entry["status"], entry["reason"]) != (status, reason):
        return f"status {entry['status']!r} does not match its values ({status})"
    return None


def read_entry(path: Path, expected: dict[str, Any]) -> dict[str, Any] | None:
    """The cached entry at `path` if it is readable, made for `expected` (key, cell, code
    hash, device, threads), its checksum matches and its content is a valid result
    (content_problem); None, with one warning line when it exists but cannot be used."""
    if not path.exists():
        return None
    reason = None
    try:
        entry = json.loads(path.read_text())
        if not isinstance(entry, dict) or any(entry.get(k) != v for k, v in expected.items()):
            reason = "made for another cell or code"
        elif entry.get("checksum") != checksum(entry):
            reason = "edited (its checksum does not match its content)"
        else:
            problem = content_problem(entry, expected["cell"])
            reason = None if problem is None else f"not a valid result ({problem})"
    except (OSError, ValueError, RecursionError) as err:
        reason = f"unreadable ({type(err).__name__})"
    if reason is None:
        return entry
    warnings.warn(f"cache entry {path} is {reason}; recomputing that cell", SweepWarning, 2)
    return None


# ---- Running cells ------------------------------------------------------------------------------


def _failed(reason: str) -> dict[str, Any]:
    return {"rows": [], "status": "failed", "reason": reason, "runtime_s": 0.0}


def _rows(study: Study, cell: Cell, entry: dict[str, Any], context: dict[str, Any]) -> list[dict]:
    """Cell parameters joined to each row; a list-valued cell parameter (handled by the cell
    in one go, e.g. all targets of one fit) is replaced by the element each row names.
    A failed cell has one row with an empty metric and value NaN."""
    scalars = {k: v for k, v in cell.items() if not isinstance(v, list | tuple)}
    rows = entry["rows"] or [{"metric": "", "value": float("nan")}]
    # The cell's parameters and the bookkeeping always win over a row's own columns.
    return [
        {
            "study": study.name,
            **scalars,
            **{k: v for k, v in row.items() if k not in scalars and k not in BOOKKEEPING},
            "status": entry.get("status", "ok"),
            "reason": entry.get("reason", ""),
            "runtime_s": round(entry["runtime_s"], 4),
            **context,
            "version": __version__,
        }
        for row in rows
    ]


def _run_local(
    study: Study, cells: list[Cell], pending: list[int], jobs: int, device: str, threads: int
) -> Iterator[tuple[int, dict[str, Any]]]:
    if jobs == 1 or len(pending) <= 1:
        for i in pending:
            yield i, execute_cell(study.run_cell, cells[i], device, threads)
        return
    from joblib import Parallel, delayed

    def task(i: int) -> tuple[int, dict[str, Any]]:
        return i, execute_cell(study.run_cell, cells[i], device, threads)

    yield from Parallel(n_jobs=jobs, return_as="generator_unordered")(
        delayed(task)(i) for i in pending
    )


def _dask_task(run_cell: Any, cell: Cell, device: str, threads: int) -> dict[str, Any]:
    """A cell on a dask worker: one GPU per worker. The worker keeps the planned torch
    thread count between cells: execute_cell restores the count it found, and on a worker
    with several task threads the default (every core) restored by one cell would be used
    by the cells still running (oversubscribed, and summing in another order)."""
    import torch
    from distributed import get_worker

    worker = get_worker()
    torch.set_num_threads(threads)
    if device == "cuda":
        count = torch.cuda.device_count()
        index = worker.name if isinstance(worker.name, int) else hash(str(worker.name))
        device = f"cuda:{index % count}" if count > 1 else "cuda"
    return execute_cell(run_cell, cell, device, threads)


def thread_plan(client: Any) -> dict[str, int]:
    """Torch threads per worker address: each host's cores split over its worker threads."""
    cores = client.run(usable_cores)  # address -> cores of that worker's host
    workers = client.scheduler_info(n_workers=-1)["workers"]
    per_host: dict[str, int] = {}
    for info in workers.values():
        per_host[info["host"]] = per_host.get(info["host"], 0) + info["nthreads"]
    return {
        address: max(1, (cores.get(address) or 1) // per_host[info["host"]])
        for address, info in workers.items()
    }


HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def valid_host(host: str) -> bool:
    """A DNS name (labels of letters, digits, - and _), an IPv4 address, or an IPv6 address
    in brackets."""
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    labels = host.removesuffix(".").split(".")
    return 0 < len(host) <= 253 and all(HOST_LABEL.fullmatch(label) for label in labels)


def connect(scheduler: str, timeout: float | None = None) -> Any:
    """A dask Client of the scheduler at `scheduler` (tcp://host:port); ParameterError (one
    line) if it is not such an address (a malformed host or port), its host cannot be
    resolved, nothing listens on its port, or no dask scheduler has answered within
    `timeout` (CONNECT_TIMEOUT) seconds, whatever answers instead (a hard deadline: the
    attempt runs in a daemon thread that is abandoned, not waited for)."""
    import socket
    import threading

    from distributed import Client

    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    scheme, _, location = scheduler.rpartition("://")
    host, _, port = location.rpartition(":")
    if scheme not in ("", "tcp") or not port.isdigit() or not 0 < int(port) < 65536:
        raise ParameterError(
            f"--scheduler {scheduler!r} is not an address like tcp://host:8786 "
            "(tcp, a host and a port 1-65535)"
        )
    if not valid_host(host):
        raise ParameterError(
            f"--scheduler {scheduler!r}: {host!r} is not a host name, an IPv4 address or an "
            "IPv6 address in brackets ([::1])"
        )
    host = host.strip("[]")
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as err:
            outcome["unresolved"] = getattr(err, "strerror", None) or str(err)
            return
        try:  # dask retries a refused connection until its timeout: ask once first
            socket.create_connection((host, int(port)), timeout=timeout).close()
        except OSError as err:
            outcome["refused"] = err.strerror or type(err).__name__
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outcome["client"] = Client(f"tcp://{location}", timeout=timeout)
        except BaseException as err:  # any failure is reported below, in one line
            outcome["error"] = err

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if "client" in outcome:
        return outcome["client"]
    if "refused" in outcome:
        raise ParameterError(
            f"--scheduler {scheduler}: nothing answers at {host} port {port} "
            f"({outcome['refused']}); is the dask scheduler running?"
        )
    if "unresolved" in outcome:
        raise ParameterError(
            f"--scheduler {scheduler}: the host {host} cannot be resolved ({outcome['unresolved']})"
        )
    err = outcome.get("error")
    reason = "no answer" if err is None else (str(err).strip().splitlines() or [""])[0]
    reason = reason or type(err).__name__
    raise ParameterError(
        f"--scheduler {scheduler}: no dask scheduler answered within {timeout:g} s ({reason[:120]})"
    )


def _local_cluster(workers: int) -> tuple[Any, Any]:
    """A LocalCluster of `workers` single-threaded processes on 127.0.0.1 only."""
    import dask
    from distributed import Client, LocalCluster

    # The worker's statistical profiler samples the task thread's stack every 10 ms and
    # competes for the GIL: measured 8% slower cells with it on.
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )
    return Client(cluster), cluster


def wait_for_workers(client: Any, scheduler: str, timeout: float) -> None:
    """Wait up to `timeout` seconds for the cluster to have a worker; ParameterError (one
    line naming the scheduler and its worker count) if none has joined by then."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (TimeoutError, OSError):
        count = _worker_count(client)
        raise ParameterError(
            f"--worker-timeout: the dask scheduler {scheduler} has {count} workers after "
            f"{timeout:g} s (start some: dask worker {scheduler}; or raise --worker-timeout)"
        ) from None


def _worker_count(client: Any) -> int | str:
    try:
        return len(client.scheduler_info(n_workers=-1)["workers"])
    except Exception:  # the scheduler itself is gone
        return "no"


def _run_dask(
    study: Study, cells: list[Cell], pending: list[int], keys: list[str], device: str,
    threads: int, client: Any, scheduler: str, worker_timeout: float,
) -> Iterator[tuple[int, dict[str, Any]]]:  # fmt: skip
    """The pending cells as dask tasks, yielded as they finish. The scheduler reruns the
    task of a worker that is lost; when the cluster has had no worker for `worker_timeout`
    seconds, SweepError (the finished cells are cached; a rerun resumes)."""
    from distributed import wait

    futures = {
        client.submit(
            _dask_task, study.run_cell, cells[i], device, threads,
            key=f"{study.slug}-{keys[i]}", pure=False,
        ): i
        for i in pending
    }  # fmt: skip
    remaining = set(futures)
    alone_since = None
    while remaining:
        try:
            wait(list(remaining), timeout=POLL, return_when="FIRST_COMPLETED")
        except Exception:  # TimeoutError: none finished yet; a cancelled task: failed below
            pass
        done = {future for future in remaining if future.done()}
        if not done:
            if _worker_count(client) not in (0, "no"):
                alone_since = None
            elif alone_since is None:
                alone_since = time.monotonic()
            elif time.monotonic() - alone_since > worker_timeout:
                raise SweepError(
                    f"--worker-timeout: the dask scheduler {scheduler} has had no worker for "
                    f"{worker_timeout:g} s; {len(remaining)} cells were not run (the finished "
                    "ones are cached: a rerun resumes)"
                )
            continue
        for future in done:
            remaining.discard(future)
            try:
                entry = future.result()
            except Exception as err:  # e.g. KilledWorker: the task killed every worker it met
                entry = _failed(f"{type(err).__name__}: {err}")
            yield futures[future], entry


# ---- Checks before any work --------------------------------------------------------------------


def check_grid(study: Study, config: Any) -> int:
    """The number of cells, refused (ParameterError) above MAX_CELLS without building them."""
    size = study.grid_size(config)
    if size > MAX_CELLS:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in [*study.axes, "seeds"])
        raise ParameterError(
            f"{flags}: the grid has {size} cells, more than the {MAX_CELLS} allowed"
        )
    return size


def check_memory(study: Study, cells: list[Cell], concurrent: int, max_memory: float) -> float:
    """The largest cell's estimated peak memory times the cells that run at once, refused
    (ParameterError naming --max-memory, the estimate and the cell) above `max_memory`."""
    if not cells:
        return 0.0
    try:
        estimates = [float(study.memory(cell)) for cell in cells]
    except (OverflowError, ValueError) as err:  # sizes beyond any float: beyond any memory
        raise ParameterError(
            f"--max-memory: a cell's memory cannot be estimated ({err}); lower the sizes"
        ) from None
    worst = max(range(len(cells)), key=estimates.__getitem__)
    need = estimates[worst] * concurrent
    if need > max_memory:
        where = ", ".join(f"{key}={cells[worst][key]}" for key in [*study.axes.values(), "seed"])
        times = f" x {concurrent} at once" if concurrent > 1 else ""
        raise ParameterError(
            f"--max-memory: the cell {where} needs about {format_bytes(estimates[worst])}"
            f"{times}, more than the {format_bytes(max_memory)} allowed "
            "(lower the sizes, --jobs or raise --max-memory)"
        )
    return need


def cap_workers(count: int, flag: str) -> int:
    """`count` parallel processes, capped at the usable cores with a warning."""
    cores = usable_cores()
    if count > cores:
        warnings.warn(
            f"{flag} {count} is more than the {cores} usable cores; using {cores}",
            SweepWarning,
            2,
        )
        return cores
    return count


# ---- The sweep ------------------------------------------------------------------------------


@dataclass
class SweepResult:
    path: Path
    cells: int
    computed: int
    failed: int = 0


def run_sweep(
    study: Study,
    config: Any,
    out: Path,
    jobs: int = 1,
    device: str = "cpu",
    progress: bool = True,
    backend: str = "local",
    scheduler: str | None = None,
    workers: int | None = None,
    max_memory: float | None = None,
    worker_timeout: float = WORKER_TIMEOUT,
) -> SweepResult:
    """Run every cell of `config` not already cached under `out`; write the study CSV.

    Checks (module docstring) come first and create nothing; then the missing cells run.
    A write error or a cluster left without workers stops the run with SweepError; the
    cells finished by then stay cached."""
    if backend not in BACKENDS:
        raise ParameterError(f"--backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if jobs < 1:
        raise ParameterError(f"--jobs must be an integer >= 1 (got {jobs})")
    if workers is not None and workers < 1:
        raise ParameterError(f"--workers must be an integer >= 1 (got {workers})")
    if max_memory is not None and not 0 < max_memory < math.inf:
        raise ParameterError(f"--max-memory must be a finite size > 0 (got {max_memory})")
    if not 0 < worker_timeout < math.inf:
        raise ParameterError(f"--worker-timeout must be a finite number > 0 (got {worker_timeout})")
    max_memory = available_memory() if max_memory is None else max_memory
    check_grid(study, config)
    cells = study.cells(config)
    client = cluster = None
    if backend == "dask" and scheduler:
        concurrent = 1  # the memory of remote hosts is theirs to manage
    elif backend == "dask":
        concurrent = cap_workers(workers or usable_cores(), "--workers")
    else:
        concurrent = cap_workers(jobs, "--jobs")
    check_memory(study, cells, min(concurrent, len(cells)), max_memory)
    csv, cache = Path(out) / study.output, cache_dir(out, study)
    check_outputs(out, study)
    bar = results = None
    try:
        if backend == "dask" and scheduler:
            client = connect(scheduler)
            wait_for_workers(client, scheduler, worker_timeout)
            threads = min(thread_plan(client).values(), default=1)
        else:
            threads = max(1, usable_cores() // concurrent)
        code = code_hash(study.module)
        keys = [cell_key(study, cell, code, device, threads) for cell in cells]
        paths = [cache / f"{key}.json" for key in keys]
        expected = [
            {"key": key, "cell": cell, "code_hash": code, "device": device, "threads": threads}
            for key, cell in zip(keys, cells, strict=True)
        ]
        entries: list[dict[str, Any] | None] = [
            read_entry(p, e) for p, e in zip(paths, expected, strict=True)
        ]
        pending = [i for i, entry in enumerate(entries) if entry is None]
        check_space(out, cache, [p for p, e in zip(paths, entries, strict=True) if e], pending)
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SweepError(f"--out {out}: cannot create {cache} ({err.strerror})") from None
        weights = _weights(study, cells)
        done = cached = len(cells) - len(pending)
        bar = tqdm(
            total=float(sum(weights)),
            initial=float(sum(w for w, e in zip(weights, entries, strict=True) if e is not None)),
            desc=f"{study.name} {done}/{len(cells)} cells",
            bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]",
            disable=not progress,
        )
        if backend == "dask" and pending:
            if client is None:
                client, cluster = _local_cluster(concurrent)
                wait_for_workers(client, client.scheduler.address, worker_timeout)
            address = scheduler or client.scheduler.address
            results = _run_dask(
                study, cells, pending, keys, device, threads, client, address, worker_timeout
            )
        else:
            results = _run_local(study, cells, pending, concurrent, device, threads)
        for i, entry in results:
            entries[i] = entry = finish_entry(expected[i], entry)
            if entry["status"] != "failed":
                try:
                    atomic_write_json(paths[i], entry)
                except OSError as err:
                    raise SweepError(
                        f"--out {out}: cannot write {paths[i]} ({err.strerror}); {cached} of "
                        f"{len(cells)} cells are cached, a rerun resumes from them"
                    ) from None
                cached += 1
            done += 1
            bar.set_description_str(f"{study.name} {done}/{len(cells)} cells", refresh=False)
            bar.update(weights[i])
        if pending and code_hash(study.module) != code:
            # Workers import the code from disk when they start: an edit during the run may
            # have computed some cells with other code than the key says. Forget them.
            for i in pending:
                paths[i].unlink(missing_ok=True)
            warnings.warn(
                f"the code of {study.name} changed during the sweep; its {len(pending)} new "
                "cache entries were discarded (run again for results of one code)",
                SweepWarning,
                2,
            )
    finally:
        if results is not None and hasattr(results, "close"):
            results.close()  # stops the workers of cells not yet finished
        if bar is not None:
            bar.close()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    context = {"device": device, "threads": threads, "code_hash": code}
    rows = [
        row
        for cell, entry in zip(cells, entries, strict=True)
        for row in _rows(study, cell, entry, context)
    ]
    failed = sum(entry["status"] != "ok" for entry in entries)
    try:
        path = write_csv(rows, csv)
    except OSError as err:
        raise SweepError(
            f"--out {out}: cannot write {csv} ({err.strerror}); every cell is cached, a rerun "
            "writes it"
        ) from None
    return SweepResult(path, len(cells), len(pending), failed)


def finish_entry(expected: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """A cell's result as its cache entry: `expected` (key, cell, code, device, threads),
    the result, its checksum, as read back from JSON. A result the cache would refuse to
    read (content_problem; values JSON cannot hold) is recorded as a failed cell."""
    entry = {**expected, **result}
    try:
        entry = json.loads(json.dumps(entry, sort_keys=True))
    except (TypeError, ValueError) as err:
        entry = {**expected, **_failed(f"run_cell returned rows JSON cannot hold ({err})")}
    if entry["status"] != "failed":
        problem = content_problem(entry, expected["cell"])
        if problem is not None:
            entry = {**expected, **_failed(f"run_cell returned invalid rows: {problem}")}
    return {**entry, "checksum": checksum(entry)}


def check_outputs(out: Path, study: Study) -> None:
    """The directories the sweep writes (the CSV's and the cache's) checked up front
    (toolkit.results.check_directory); ParameterError naming --out."""
    entry = "0" * 24 + ".json"
    check_directory("--out", str(out), Path(out), [study.output])
    check_directory("--out", str(out), cache_dir(out, study), [entry])


def check_space(out: Path, cache: Path, cached: list[Path], pending: list[int]) -> None:
    """Refuse (ParameterError naming --out) a run whose entries and CSV, estimated from the
    size of the cached entries (ENTRY_BYTES where none is), do not fit the free space."""
    sizes = []
    for path in cached[:100]:
        try:
            sizes.append(path.stat().st_size)
        except OSError:
            pass
    per_cell = max(sizes, default=ENTRY_BYTES)
    need_cache = per_cell * len(pending)
    need_csv = per_cell * (len(cached) + len(pending))  # rows in the CSV take about as much
    for directory, need in ((cache, need_cache + need_csv), (Path(out), need_csv)):
        existing = next(p for p in (directory, *directory.parents) if p.exists())
        free = free_space(existing)
        if need > free:
            raise ParameterError(
                f"--out {out}: the run needs about {format_bytes(need)} on the file system "
                f"of {existing}, which has {format_bytes(free)} free"
            )


def _weights(study: Study, cells: list[Cell]) -> list[float]:
    """Each cell's share of the expected run time, scaled so that they sum to the cell count
    (the progress bar's remaining time then weights cells by their cost)."""
    try:
        costs = [max(float(study.cost(cell)), 0.0) for cell in cells]
    except (OverflowError, ValueError):
        return [1.0] * len(cells)
    total = sum(costs)
    if not total > 0 or not math.isfinite(total):
        return [1.0] * len(cells)
    return [c * len(cells) / total for c in costs]
