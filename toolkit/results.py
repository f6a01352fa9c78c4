"""Tidy results: one row per (cell, metric), written atomically, loaded with pandas.

Every study's CSV starts with the columns study, model, n, seed, metric, value, then one
column per parameter of that study (named as its CLI flag, with underscores), then
status, reason, runtime_s, device, threads, code_hash and version (docs/results.md).
Files are created with the usual permissions (0666 less the umask: 0644 under the
default umask).

read_results loads them back: only the CSVs of the studies it is given (<slug>.csv whose
study column agrees), integer parameters as integers, and either the curves (rows whose
metric is a function of n, what the rate fits use) or the other rows (attention maps,
noise floors and the other `non_rate_metrics` of a study).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from toolkit.params import element_type, fields
from toolkit.study import Study

FIRST_COLUMNS = ("study", "model", "n", "seed", "metric", "value")
LAST_COLUMNS = ("status", "reason", "runtime_s", "device", "threads", "code_hash", "version")
DERIVED_FILES = ("rates.csv", "comparisons.csv", "sample_complexity.csv")  # by toolkit.report
# A hex code hash such as 8371624e69504925 would otherwise be parsed as a float (inf).
TEXT_COLUMNS = {"code_hash": str}
INTEGER_COLUMNS = ("n", "seed", "threads")  # besides each study's integer parameters
KINDS = ("curves", "other", "all")


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


def read_results(
    path: str | os.PathLike, studies: Mapping[str, Study], kind: str = "curves"
) -> pd.DataFrame:
    """The rows of one study CSV, or of every study CSV in a directory, as one DataFrame.

    Only files named <slug>.csv after one of `studies` are read (derived tables, a user's
    own CSVs and profile subfolders are not), and each file's study column must name that
    study. `kind`: "curves" (default), the rows whose metric is a curve in n; "other",
    the rows of each study's `non_rate_metrics` (st-dit's attention maps attn_map with
    their row and col, noise floors, ...); "all", both. Columns that no selected row of
    a file uses are dropped (NaN remains where studies differ). Integer parameters (n,
    seed, threads and each study's int fields) are int64, or Int64 where values are
    missing. Raises FileNotFoundError or ValueError with a one-line message.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} (got {kind!r})")
    path = Path(path)
    by_file = {study.output: study for study in studies.values()}
    expected = ", ".join(by_file)
    if path.is_dir():
        files = [path / name for name in by_file if (path / name).is_file()]
        if not files:
            raise FileNotFoundError(
                f"{path}: no study CSV in this directory (looked for {expected})"
            )
    elif path.is_file():
        if path.name not in by_file:
            raise ValueError(f"{path}: not a study CSV (study CSVs are named {expected})")
        files = [path]
    else:
        raise FileNotFoundError(f"{path}: no such file or directory")
    frames = [_read_study(file, by_file[file.name], kind) for file in files]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    integers = {c for file in files for c in integer_columns(by_file[file.name])}
    for column in sorted(integers & set(frame.columns)):
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().sum() == frame[column].isna().sum() and (values.dropna() % 1 == 0).all():
            frame[column] = values.astype("Int64" if values.isna().any() else "int64")
    return frame


def integer_columns(study: Study) -> list[str]:
    """The CSV columns holding integers: n, seed, threads and the study's int parameters
    (named by their cell key where the parameter is an axis, e.g. models -> model)."""
    names = [
        study.axes.get(f.name, f.name)
        for f, tp in fields(study.config)
        if element_type(tp)[0] is int
    ]
    return [*INTEGER_COLUMNS, *names]


def _read_study(path: Path, study: Study, kind: str) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=TEXT_COLUMNS, low_memory=False)
    if "study" not in frame or "metric" not in frame:
        raise ValueError(f"{path}: not a study CSV (no study or metric column)")
    names = set(frame["study"].dropna())
    if names - {study.name}:
        raise ValueError(
            f"{path}: its study column says {', '.join(sorted(map(str, names)))}, not {study.name}"
        )
    if kind != "all":
        other = frame["metric"].isin(study.non_rate_metrics)
        frame = frame[other if kind == "other" else ~other].reset_index(drop=True)
        keep = set(FIRST_COLUMNS) | set(LAST_COLUMNS)
        unused = [c for c in frame.columns if c not in keep and frame[c].isna().all()]
        frame = frame.drop(columns=unused) if len(frame) else frame
    return frame
