"""Hostile and big inputs: edited cache entries, unwritable or odd output paths, a full disk,
dask clusters without workers, and sizes that would make validation itself unbounded."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import socket
import threading
import time
import warnings

import pandas as pd
import pytest

from toolkit import cli
from toolkit import sweep as sweep_module
from toolkit.params import ParameterError, param
from toolkit.study import Study
from toolkit.sweep import (
    SweepError,
    SweepWarning,
    cache_dir,
    checksum,
    run_sweep,
)

# ---- A toy study: cell n=20 diverges (an inf value, as st-dit's diverged chains) --------------


@dataclasses.dataclass(frozen=True)
class Config:
    n: tuple[int, ...] = param((10, 20, 30), "sizes", low=1)
    seeds: int = param(1, "seeds", low=1)
    extra: float = param(0.5, "a scalar parameter copied into every cell")


def run_cell(cell, device="cpu"):
    value = math.inf if cell["n"] == 20 else float(cell["n"] + cell["seed"])
    return [
        {"metric": "m", "value": value, "final_loss": math.nan},
        {"metric": "k", "value": 2.0 * cell["n"]},
    ]


STUDY = Study(
    name="hostile", summary="toy", config=Config, axes={"n": "n"}, run_cell=run_cell,
    profiles={"default": {}}, memory=lambda cell: 1.0,
)  # fmt: skip


def sleepy_cell(cell, device="cpu"):
    time.sleep(0.5)
    return [{"metric": "m", "value": float(cell["n"])}]


SLEEPY = dataclasses.replace(STUDY, name="sleepy", run_cell=sleepy_cell)


def shadowing_cell(cell, device="cpu"):
    return [{"metric": "m", "value": 1.0, "seed": 99}]


SHADOWING = dataclasses.replace(STUDY, name="shadowing", run_cell=shadowing_cell)


@pytest.fixture
def fixed_code(monkeypatch):
    """One code hash for the toy study (hashing this test module's imports takes ~0.5 s)."""
    monkeypatch.setattr(sweep_module, "code_hash", lambda module: "0123456789abcdef")


def entries(out, study=STUDY):
    """{n: path} of the cache entries."""
    paths = cache_dir(out, study).glob("*.json")
    return {json.loads(p.read_text())["cell"]["n"]: p for p in paths}


def frame(result):
    return pd.read_csv(result.path).sort_values(["n", "metric"]).reset_index(drop=True)


def sweep_warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, [str(w.message) for w in caught if w.category is SweepWarning]


def cli_run(monkeypatch, capsys, args):
    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")
    code = cli.main(args, studies={"hostile": STUDY, "sleepy": SLEEPY})
    return code, capsys.readouterr().err.strip()


# ---- 1. Cache entries are checked for their content, not only their key ------------------------


def test_diverged_entries_and_nan_columns_are_read_back_from_the_cache(tmp_path, fixed_code):
    first = run_sweep(STUDY, Config(), tmp_path, progress=False)
    again, messages = sweep_warnings(lambda: run_sweep(STUDY, Config(), tmp_path, progress=False))
    assert (first.failed, again.computed, messages) == (1, 0, [])  # inf: diverged, cached
    pd.testing.assert_frame_equal(frame(first), frame(again))
    assert set(frame(again)["status"]) == {"ok", "diverged"}


def _edit_value(value):
    def edit(entry):
        entry["rows"][0]["value"] = value

    return edit


def _add_column(name, value):
    def edit(entry):
        entry["rows"][0][name] = value

    return edit


def _status_ok(entry):
    entry["status"], entry["reason"] = "ok", ""


EDITS = {
    "value NaN": (10, _edit_value(math.nan)),
    "value inf": (10, _edit_value(math.inf)),
    "value null": (10, _edit_value(None)),
    "value text": (10, _edit_value("abc")),
    "value bool": (10, _edit_value(True)),
    "row sets n": (10, _add_column("n", 999)),
    "row sets seed": (10, _add_column("seed", 7)),
    "row sets a parameter": (10, _add_column("extra", 9.0)),
    "row sets status": (10, _add_column("status", "ok")),
    "row holds a list": (10, _add_column("other", [1, 2])),
    "diverged flipped to ok": (20, _status_ok),
    "negative runtime": (10, lambda entry: entry.update(runtime_s=-1.0)),
}


@pytest.mark.parametrize("resign", [False, True], ids=["edited", "edited-and-resigned"])
@pytest.mark.parametrize("edit", EDITS, ids=list(EDITS))
def test_an_edited_entry_is_recomputed_with_one_warning(edit, resign, tmp_path, fixed_code):
    first = run_sweep(STUDY, Config(), tmp_path, progress=False)
    n, change = EDITS[edit]
    path = entries(tmp_path)[n]
    entry = json.loads(path.read_text())
    change(entry)
    if resign:  # whoever edited it also recomputed the checksum: the content check catches it
        entry["checksum"] = checksum(entry)
    path.write_text(json.dumps(entry))
    again, messages = sweep_warnings(lambda: run_sweep(STUDY, Config(), tmp_path, progress=False))
    assert again.computed == 1 and len(messages) == 1
    assert ("edited" if not resign else "not a valid result") in messages[0]
    pd.testing.assert_frame_equal(frame(first), frame(again))
    assert json.loads(path.read_text())["checksum"] == checksum(json.loads(path.read_text()))


def test_an_entry_without_checksum_is_recomputed(tmp_path, fixed_code):
    run_sweep(STUDY, Config(), tmp_path, progress=False)
    path = entries(tmp_path)[30]
    entry = json.loads(path.read_text())
    del entry["checksum"]
    path.write_text(json.dumps(entry))
    again, messages = sweep_warnings(lambda: run_sweep(STUDY, Config(), tmp_path, progress=False))
    assert again.computed == 1 and len(messages) == 1 and "checksum" in messages[0]


def test_cell_parameters_win_over_row_columns_and_such_rows_are_not_cached(tmp_path):
    row = {"metric": "m", "value": 1.0, "n": 999, "seed": 7, "status": "ok"}
    cell = {"n": 10, "seed": 0, "extra": 0.5, "targets": ["a"]}
    entry = {"rows": [row], "status": "diverged", "reason": "x", "runtime_s": 1.0}
    joined = sweep_module._rows(STUDY, cell, entry, {"device": "cpu"})[0]
    assert (joined["n"], joined["seed"], joined["status"]) == (10, 0, "diverged")
    # A study whose rows carry a cell parameter: the cell is recorded as failed, not cached.
    result = run_sweep(SHADOWING, Config(n=(10,)), tmp_path, progress=False)
    rows = pd.read_csv(result.path)
    assert result.failed == 1 and rows["status"].tolist() == ["failed"]
    assert "seed" in rows["reason"][0] and rows["seed"].tolist() == [0]
    assert not list(cache_dir(tmp_path, SHADOWING).glob("*.json"))


# ---- 2. Unwritable or full cache directories: checked up front, write errors end cleanly ------


def test_an_unwritable_cache_directory_is_refused_before_any_cell(tmp_path, monkeypatch, capsys):
    cache = cache_dir(tmp_path, STUDY)
    cache.mkdir(parents=True)
    real_open = os.open

    def read_only(path, flags, *args):  # root ignores permission bits: refuse by hand
        if str(path).startswith(str(cache)) and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    monkeypatch.setattr(sweep_module, "execute_cell", lambda *a: pytest.fail("a cell ran"))
    code, err = cli_run(monkeypatch, capsys, ["run", "hostile", "--out", str(tmp_path)])
    assert code == 2 and len(err.splitlines()) == 1
    assert "--out" in err and "Permission denied" in err and str(cache) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cache"]


def test_too_little_free_space_is_refused_before_any_cell(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep_module, "free_space", lambda path: 1000.0)
    code, err = cli_run(monkeypatch, capsys, ["run", "hostile", "--out", str(tmp_path / "o")])
    assert code == 2 and len(err.splitlines()) == 1 and "--out" in err and "free" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES])
def test_a_write_error_mid_run_exits_1_and_keeps_finished_cells(
    error, tmp_path, monkeypatch, capsys
):
    real_write = sweep_module.atomic_write_json
    writes = []

    def fail_second(path, obj):
        writes.append(path)
        if len(writes) == 2:
            raise OSError(error, os.strerror(error), str(path))
        real_write(path, obj)

    monkeypatch.setattr(sweep_module, "atomic_write_json", fail_second)
    code, err = cli_run(monkeypatch, capsys, ["run", "hostile", "--out", str(tmp_path), "--quiet"])
    assert code == 1 and len(err.splitlines()) == 1 and os.strerror(error) in err
    assert "1 of 3 cells are cached" in err and "rerun" in err
    assert len(entries(tmp_path)) == 1 and not (tmp_path / "hostile.csv").exists()
    monkeypatch.setattr(sweep_module, "atomic_write_json", real_write)
    resumed = run_sweep(STUDY, Config(), tmp_path, progress=False)
    assert (resumed.cells, resumed.computed) == (3, 2)


def test_a_csv_write_error_exits_1_with_every_cell_cached(tmp_path, monkeypatch, capsys):
    def full(rows, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(sweep_module, "write_csv", full)
    code, err = cli_run(monkeypatch, capsys, ["run", "hostile", "--out", str(tmp_path), "--quiet"])
    assert code == 1 and len(err.splitlines()) == 1 and "No space left" in err
    assert len(entries(tmp_path)) == 3


# ---- 3. Output paths that are not directories one can write: one line, exit 2 ------------------


def _fifo(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    return str(tmp_path / "fifo")


def _csv_fifo(tmp_path):
    os.mkfifo(tmp_path / "hostile.csv")
    return str(tmp_path)


def _socket(tmp_path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock"))
    return str(tmp_path / "sock" / "sub")


def _cache_is_a_fifo(tmp_path):
    os.mkfifo(tmp_path / ".cache")
    return str(tmp_path)


OUTS = {
    "name too long": lambda tmp: str(tmp / ("a" * 300)),
    "path too long": lambda tmp: str(tmp / "/".join(["b" * 200] * 25)),
    "proc": lambda tmp: "/proc/toolkit-out",
    "proc self": lambda tmp: "/proc/self/fd",
    "sys": lambda tmp: "/sys/toolkit-out",
    "device": lambda tmp: "/dev/null",
    "under a device": lambda tmp: "/dev/null/out",
    "fifo": _fifo,
    "csv is a fifo": _csv_fifo,
    "socket": _socket,
    "cache is a fifo": _cache_is_a_fifo,
    "nul": lambda tmp: str(tmp / "a\0b"),
}


@pytest.mark.parametrize("kind", OUTS, ids=list(OUTS))
def test_odd_output_paths_exit_2_with_one_line_and_write_nothing(
    kind, tmp_path, monkeypatch, capsys
):
    out = OUTS[kind](tmp_path)
    before = sorted(tmp_path.rglob("*"))
    code, err = cli_run(monkeypatch, capsys, ["run", "hostile", "--out", out, "--quiet"])
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: --out ")
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("kind", ["name too long", "proc", "sys", "fifo"])
def test_odd_report_paths_exit_2_with_one_line(kind, tmp_path, monkeypatch, capsys):
    results = OUTS[kind](tmp_path)
    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")
    code = cli.main(["report", "--results", results], studies={"hostile": STUDY})
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: --results ")


def test_output_checks_apply_to_the_library_call(tmp_path):
    with pytest.raises(ParameterError, match="--out .*longer"):
        run_sweep(STUDY, Config(), tmp_path / ("c" * 300), progress=False)


# ---- 6. dask: a scheduler without workers, and workers that all leave -------------------------


distributed = pytest.importorskip("distributed")


def test_a_scheduler_without_workers_exits_2_naming_it(tmp_path, monkeypatch, capsys):
    with distributed.LocalCluster(
        n_workers=0, processes=False, dashboard_address=":0", protocol="tcp", host="127.0.0.1"
    ) as c:
        start = time.monotonic()
        address = c.scheduler_address
        args = ["run", "hostile", "--out", str(tmp_path / "o"), "--backend", "dask"]
        code, err = cli_run(
            monkeypatch, capsys, [*args, "--scheduler", address, "--worker-timeout", "1"]
        )
        assert time.monotonic() - start < 20
    assert code == 2 and len(err.splitlines()) == 1
    assert address in err and "0 workers" in err and "--worker-timeout" in err
    assert not (tmp_path / "o").exists()


def test_workers_that_all_leave_stop_the_run_and_keep_finished_cells(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "POLL", 0.2)
    config = Config(n=(10, 20, 30, 40, 50, 60))
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        dashboard_address=":0",
        protocol="tcp",
        host="127.0.0.1",
    ) as cluster:
        cache = cache_dir(tmp_path, SLEEPY)

        def retire_after_first_result():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (cache.exists() and any(cache.iterdir())):
                time.sleep(0.02)
            cluster.scale(0)  # the only worker leaves; the scheduler has none to rerun on

        killer = threading.Thread(target=retire_after_first_result)
        killer.start()
        with pytest.raises(SweepError, match="no worker for 1 s.*a rerun resumes"):
            run_sweep(
                SLEEPY, config, tmp_path, backend="dask", scheduler=cluster.scheduler_address,
                worker_timeout=1.0, progress=False,
            )  # fmt: skip
        killer.join()
    assert 1 <= len(entries(tmp_path, SLEEPY)) < 6


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "soon"])
def test_worker_timeout_must_be_a_finite_positive_number(value, tmp_path, monkeypatch, capsys):
    args = ["run", "hostile", "--out", str(tmp_path / "o"), "--worker-timeout", value]
    code, err = cli_run(monkeypatch, capsys, [*args, "--backend", "dask"])
    assert code == 2 and len(err.splitlines()) == 1 and "finite number of seconds" in err
    code, err = cli_run(monkeypatch, capsys, args)  # the local backend has no workers
    assert code == 2 and len(err.splitlines()) == 1 and "--worker-timeout" in err


def test_help_documents_worker_timeout(monkeypatch, capsys):
    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")
    cli.main(["run", "hostile", "--help"], studies={"hostile": STUDY})
    assert "--worker-timeout" in capsys.readouterr().out


# ---- 7. Sizes checked by arithmetic before anything is built; malformed flags named -----------


@pytest.mark.parametrize("value", ["1e400", "0", "nan", "inf", "-1G", "lots"])
def test_max_memory_must_be_a_finite_positive_size(value, tmp_path, monkeypatch, capsys):
    args = ["run", "hostile", "--out", str(tmp_path / "o"), "--max-memory", value]
    code, err = cli_run(monkeypatch, capsys, args)
    assert code == 2 and len(err.splitlines()) == 1 and "--max-memory" in err
    with pytest.raises(ParameterError, match="--max-memory"):
        run_sweep(STUDY, Config(), tmp_path / "o", max_memory=math.inf, progress=False)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "address,says",
    [
        ("tcp://host name:8786", "not a host name"),
        ("tcp://999.1.1.1:8786", "not a host name"),
        ("tcp://[::1:8786", "not a host name"),
        ("tcp://a:b:8786", "not a host name"),
        ("tcp://127.0.0.1:99999", "port 1-65535"),
        ("tls://127.0.0.1:8786", "tcp"),
        ("tcp://no-such-host.invalid:8786", "cannot be resolved"),
        ("tcp://127.0.0.1:1", "nothing answers"),
    ],
)
def test_a_malformed_scheduler_address_is_named_for_what_it_is(
    address, says, tmp_path, monkeypatch, capsys
):
    start = time.monotonic()
    args = ["run", "hostile", "--out", str(tmp_path / "o"), "--backend", "dask"]
    code, err = cli_run(monkeypatch, capsys, [*args, "--scheduler", address])
    assert code == 2 and len(err.splitlines()) == 1 and "--scheduler" in err and says in err
    assert time.monotonic() - start < 8  # not the 10 s connection timeout
    assert not (tmp_path / "o").exists()


def test_st_dit_checks_sizes_before_building_any_gamma(tmp_path, monkeypatch, capsys):
    """200 x 200 (nu x length) at 512 frames: refused by the memory estimate (arithmetic)
    at once, before any Gamma is built (its check ran past 120 s)."""
    import torch

    monkeypatch.setattr(torch.linalg, "eigvalsh", lambda *a: pytest.fail("Gamma was built"))
    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")
    nu = ",".join(f"{0.01 * (i + 1):.2f}" for i in range(200))
    length = ",".join(str(i + 1) for i in range(200))
    args = ["run", "st-dit", "--nu", nu, "--length", length, "--frames", "512", "--kernel"]
    args += ["exp", "--n", "256", "--seeds", "1", "--models", "dit", "--samples", "4096"]
    start = time.monotonic()
    code = cli.main([*args, "--max-memory", "64G", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: --max-memory")
    assert time.monotonic() - start < 10 and not (tmp_path / "o").exists()


def test_study_checks_that_take_too_long_are_refused_naming_the_axes(tmp_path, monkeypatch, capsys):
    """A grid whose own checks (st-dit: one eigendecomposition per decay setting) would take
    longer than CHECK_TIMEOUT is refused like a grid too large to run."""
    import torch

    def slow_spectrum(matrix):
        time.sleep(0.3)
        return torch.ones(1, dtype=torch.float64)

    monkeypatch.setattr(torch.linalg, "eigvalsh", slow_spectrum)
    monkeypatch.setattr(cli, "CHECK_TIMEOUT", 0.5)
    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")
    args = ["run", "st-dit", "--profile", "smoke", "--nu", "0.5,1", "--length", "1,2"]
    start = time.monotonic()
    code = cli.main([*args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "more than 0.5 s" in err
    assert err.startswith("error: --n, --kernel, --nu, --length, --models: checking these ")
    assert time.monotonic() - start < 10 and not (tmp_path / "o").exists()
    time.sleep(1.0)  # the abandoned check finishes (four settings) before eigvalsh is restored
