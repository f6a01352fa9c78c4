"""Tidy results: one row per (cell, metric), written atomically, loaded with pandas.

Every study's CSV starts with the columns study, model, n, seed, metric, value, then one
column per parameter of that study (named as its CLI flag, with underscores), then
status, reason, runtime_s, device, threads, code_hash and version. Files are created
with the usual permissions (0666 less the umask: 0644 under the default umask).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

FIRST_COLUMNS = ("study", "model", "n", "seed", "metric", "value")
LAST_COLUMNS = ("status", "reason", "runtime_s", "device", "threads", "code_hash", "version")
DERIVED_FILES = ("rates.csv", "comparisons.csv", "sample_complexity.csv")  # by toolkit.report
# A hex code hash such as 8371624e69504925 would otherwise be parsed as a float (inf).
TEXT_COLUMNS = {"code_hash": str}


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never half."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half."""
    path = Path(path)
    # Not mkstemp: its files are 0600, unreadable by collaborators. os.open applies the umask.
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, sort_keys=True))


def tidy_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with the shared columns first and the bookkeeping ones last."""
    frame = pd.DataFrame(list(rows))
    middle = [c for c in frame.columns if c not in FIRST_COLUMNS and c not in LAST_COLUMNS]
    order = [c for c in FIRST_COLUMNS if c in frame] + middle
    order += [c for c in LAST_COLUMNS if c in frame]
    return frame[order]


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write tidy rows to `path` atomically and return the path."""
    atomic_write_text(Path(path), tidy_frame(rows).to_csv(index=False))
    return Path(path)


def study_files(directory: Path) -> list[Path]:
    """The study CSVs in a results directory (derived tables excluded), sorted by name."""
    return sorted(p for p in Path(directory).glob("*.csv") if p.name not in DERIVED_FILES)


def load_results(path: str | os.PathLike) -> pd.DataFrame:
    """One DataFrame from a study CSV, or from every study CSV in a directory.

    Studies have different parameter columns; concatenating leaves NaN where a column
    does not apply. Derived files (DERIVED_FILES: the report's tables) are skipped
    when a directory is given.
    """
    path = Path(path)
    if path.is_dir():
        files = study_files(path)
        if not files:
            raise FileNotFoundError(f"no study CSV files in {path}")
        frames = [pd.read_csv(p, dtype=TEXT_COLUMNS) for p in files]
        return pd.concat(frames, ignore_index=True)
    return pd.read_csv(path, dtype=TEXT_COLUMNS)
