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
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from toolkit.params import ParameterError, element_type, fields
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


def write_set(files: Mapping[Path, bytes]) -> None:
    """Write several files as one set: every file is first written in full beside its
    destination (a hidden temporary), and only when all of them are written are they
    renamed into place (renames need no space and do not fail half-way for a full disk).
    On an error while writing, every temporary is removed and the previous files are left
    as they were; the OSError is raised."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            path = Path(path)
            path.parent.mkdir(exist_ok=True)
            tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
            staged.append((tmp, path))
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)


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
    return sorted(
        p for p in Path(directory).glob("*.csv") if p.name not in DERIVED_FILES and p.is_file()
    )  # regular files only: a FIFO named like a CSV would block the reader for ever


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


# ---- Where results can be written --------------------------------------------------------------

# File systems that hold no files of their own (kernel interfaces): never an output.
VIRTUAL_FILE_SYSTEMS = frozenset(
    "proc sysfs devtmpfs devpts cgroup cgroup2 debugfs tracefs securityfs pstore bpf "
    "configfs fusectl mqueue binfmt_misc efivarfs autofs hugetlbfs rpc_pipefs".split()
)
TEMPORARY = len(".{name}.0123456789abcdef.tmp") - len("{name}")  # atomic_write_bytes' extra


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISREG, "a file"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")


def _file_system(path: Path) -> str:
    """The type of the file system holding `path` (from /proc/self/mounts; "" if unknown)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return ""
    real, best, kind = os.path.realpath(path), "", ""
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def _check_lengths(
    fail: Callable[[str], ParameterError], directory: Path, names: list[str], name_max: int,
    path_max: int,
) -> None:  # fmt: skip
    long = next((n for n in names if len(os.fsencode(n)) > name_max), None)
    if long is not None:
        shown = long if len(long) <= 40 else f"{long[:20]}...{long[-12:]}"
        raise fail(f"the name {shown!r} is longer than the {name_max} bytes allowed")
    if len(os.fsencode(str(directory))) + 1 + max(map(len, names), default=0) > path_max:
        raise fail(f"the path is longer than the {path_max} bytes allowed")


def check_directory(flag: str, text: str, directory: Path, files: Sequence[str] = ()) -> Path:
    """Refuse (ParameterError: one line naming `flag` and `text`, its value) a directory in
    which `files` cannot be written, without creating anything that stays: a name longer
    than the file system allows, a component that is not a directory, a file of `files`
    that exists but is not a regular file (a directory, FIFO, socket or device), a virtual
    file system (/proc, /sys, /dev), or a directory where a file cannot be created (tried:
    a probe file, removed at once; this also catches read-only mounts and root). Returns
    the nearest existing ancestor of `directory` (itself when it exists)."""

    shown = text if len(text) <= 80 else f"{text[:40]}...{text[-20:]}"

    def fail(why: str) -> ParameterError:
        return ParameterError(f"{flag} {shown}: {why}")

    if "\0" in str(directory):
        raise fail("a path cannot hold a NUL character")
    directory = Path(os.path.abspath(directory))
    names = [*directory.parts[1:], *(name + "x" * TEMPORARY for name in files)]
    _check_lengths(fail, directory, names, 255, 4095)  # Linux's limits, before any stat
    existing = directory
    for existing in (directory, *directory.parents):
        try:
            mode = os.stat(existing).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as err:
            raise fail(f"{existing}: {err.strerror}") from None
        if not stat.S_ISDIR(mode):
            raise fail(f"{existing} is {_kind(mode)}, not a directory")
        break
    try:  # the limits of the file system that will hold the files
        limits = os.pathconf(existing, "PC_NAME_MAX"), os.pathconf(existing, "PC_PATH_MAX") - 1
    except (OSError, ValueError):
        limits = 255, 4095
    _check_lengths(fail, directory, names, *limits)
    kind = _file_system(existing)
    if kind in VIRTUAL_FILE_SYSTEMS:
        raise fail(f"{existing} is on a {kind} file system, which holds no files")
    if existing == directory:
        for name in files:
            try:
                mode = os.stat(directory / name).st_mode
            except FileNotFoundError:
                continue
            except OSError as err:
                raise fail(f"{directory / name}: {err.strerror}") from None
            if not stat.S_ISREG(mode):
                raise fail(f"{directory / name} is {_kind(mode)}; cannot write a file there")
    probe = existing / f".toolkit-probe-{secrets.token_hex(8)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as err:
        raise fail(f"cannot write in {existing} ({err.strerror})") from None
    return existing


def free_space(directory: Path) -> float:
    """Bytes free to this user on the file system of `directory` (inf if unknown)."""
    try:
        info = os.statvfs(directory)
    except (OSError, AttributeError):
        return float("inf")
    return float(info.f_bavail * info.f_frsize)
