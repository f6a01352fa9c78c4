"""One cell, run: the code around every study's run_cell, part of every cache key.

Kept apart from the sweep runner (checks, cache, backends, progress), so that editing the
runner does not invalidate cached cells, while editing this does (toolkit.sweep.code_hash).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any


def execute_cell(
    run_cell: Callable[[dict[str, Any], str], list[dict[str, Any]]],
    cell: dict[str, Any],
    device: str,
    threads: int,
) -> dict[str, Any]:
    """Run one cell (in this process or a worker) with `threads` torch threads, time it and
    classify the outcome."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        rows = run_cell(cell, device)
        bad = sorted({r["metric"] for r in rows if not math.isfinite(float(r["value"]))})
        status, reason = ("diverged", "non-finite " + ", ".join(bad)) if bad else ("ok", "")
    except Exception as err:  # recorded in the CSV; KeyboardInterrupt still stops the run
        rows, status, reason = [], "failed", f"{type(err).__name__}: {err}"
    finally:
        torch.set_num_threads(before)
    return {
        "rows": rows,
        "status": status,
        "reason": reason,
        "runtime_s": time.perf_counter() - start,
    }
