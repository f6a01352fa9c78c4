"""Sweeps on a real dask LocalCluster (worker processes), faults, and concurrent runs."""

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from studies import rf_attention
from toolkit import cli
from toolkit.params import build
from toolkit.sweep import cache_dir, run_sweep

distributed = pytest.importorskip("distributed")

STUDY = rf_attention.STUDY

# 8 cells of about a second each with one thread.
CONFIG = {
    "heads": (128,),
    "n": (256, 512),
    "seeds": 2,
    "models": ("rfa", "rfmlp"),
    "test_size": 256,
}


def values(path):
    frame = pd.read_csv(path)
    return frame.drop(columns=["runtime_s"]).sort_values(["model", "n", "seed", "target"])


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as c:
        yield c


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    # --jobs 2 gives each worker one torch thread, as each dask worker gets here.
    return run_sweep(STUDY, build(STUDY.config, CONFIG), out, jobs=2, progress=False)


def assert_same_values(a, b):
    """The two CSVs hold bitwise-equal rows (runtime aside), whatever their order."""
    pd.testing.assert_frame_equal(
        values(a).reset_index(drop=True), values(b).reset_index(drop=True), check_exact=True
    )


def on_cluster(cluster, out):
    """The CONFIG sweep on the running cluster, into `out`."""
    config = build(STUDY.config, CONFIG)
    return run_sweep(
        STUDY,
        config,
        out,
        backend="dask",
        scheduler=cluster.scheduler_address,
        progress=False,
    )


@pytest.mark.slow
def test_dask_backend_gives_the_same_csv_bitwise(cluster, local_run, tmp_path):
    result = on_cluster(cluster, tmp_path)
    assert (result.cells, result.computed, result.failed) == (8, 8, 0)
    assert_same_values(result.path, local_run.path)


@pytest.mark.slow
def test_killed_worker_loses_and_duplicates_no_rows(cluster, local_run, tmp_path):
    with distributed.Client(cluster.scheduler_address) as client:
        pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    cache = cache_dir(tmp_path, STUDY)

    def kill_after_first_result():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (cache.exists() and any(cache.iterdir())):
            time.sleep(0.02)
        os.kill(victim, signal.SIGKILL)  # mid-sweep: the other cells are queued or running

    killer = threading.Thread(target=kill_after_first_result)
    killer.start()
    result = on_cluster(cluster, tmp_path)
    killer.join()
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)  # the worker really died
    assert (result.cells, result.failed) == (8, 0)
    frame = pd.read_csv(result.path)
    assert frame.groupby(["model", "n", "seed", "target"]).size().eq(1).all()
    assert len(frame) == 8 * 5 and set(frame["status"]) == {"ok"}
    assert_same_values(result.path, local_run.path)


@pytest.mark.slow
def test_local_cluster_from_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")
    args = ["run", "rf-attention", "--heads", "16", "--n", "32", "--seeds", "2", "--quiet"]
    code = cli.main(
        [
            *args,
            "--models",
            "rfa",
            "--test-size",
            "64",
            "--backend",
            "dask",
            "--workers",
            "2",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    frame = pd.read_csv(tmp_path / "rf_attention.csv")
    assert len(frame) == 2 * 5 and set(frame["status"]) == {"ok"}


@pytest.mark.parametrize(
    "args,flag",
    [
        (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler"),
        (["--backend", "dask", "--workers", "0"], "--workers"),
        (["--backend", "spark"], "--backend"),
        (["--backend", "dask", "--workers", "2", "--scheduler", "tcp://x:1"], "--scheduler"),
    ],
)
def test_backend_flags_are_validated(args, flag, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")
    code = cli.main(["run", "rf-attention", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and flag in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_failing_and_diverging_cells_are_recorded_and_the_rest_goes_on(tmp_path):
    config = build(STUDY.config, {**CONFIG, "heads": (16,), "test_size": 64})
    out_of_memory = [True]

    def faulty(cell, device="cpu"):
        if out_of_memory[0] and (cell["model"], cell["n"], cell["seed"]) == ("rfa", 512, 1):
            raise RuntimeError("CUDA out of memory (simulated)")
        rows = rf_attention.run_cell(cell, device)
        if (cell["model"], cell["n"], cell["seed"]) == ("rfmlp", 256, 0):
            rows[0]["value"] = float("nan")  # a diverged fit
        return rows

    # The cache key hashes the code of the study's run_cell module (here this test module),
    # so the rerun below uses this same study object.
    study = dataclasses.replace(STUDY, run_cell=faulty)
    result = run_sweep(study, config, tmp_path, progress=False)
    assert (result.cells, result.computed, result.failed) == (8, 8, 2)
    frame = pd.read_csv(result.path)
    failed = frame[frame["status"] == "failed"]
    assert len(failed) == 1 and failed["value"].isna().all()
    assert failed["reason"].iloc[0] == "RuntimeError: CUDA out of memory (simulated)"
    diverged = frame[frame["status"] == "diverged"]
    assert len(diverged) == 5 and diverged["reason"].str.contains("rel_test_error").all()
    assert (frame["status"] == "ok").sum() == 6 * 5

    # The failed cell is not cached: a rerun retries it alone.
    out_of_memory[0] = False
    rerun = run_sweep(study, config, tmp_path, progress=False)
    assert (rerun.computed, rerun.failed) == (1, 1)  # the diverged cell stays diverged


def test_cli_exit_code_says_cells_failed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")

    def broken(cell, device="cpu"):
        raise ValueError("boom")

    studies = {STUDY.name: dataclasses.replace(STUDY, run_cell=broken)}
    code = cli.main(
        [
            "run",
            "rf-attention",
            "--heads",
            "8",
            "--n",
            "16",
            "--seeds",
            "1",
            "--models",
            "rfa",
            "--quiet",
            "--out",
            str(tmp_path),
        ],
        studies=studies,
    )
    assert code == 1
    assert "1 of 1 cells failed" in capsys.readouterr().err
    assert pd.read_csv(tmp_path / "rf_attention.csv")["reason"].iloc[0] == "ValueError: boom"


@pytest.mark.slow
def test_two_runs_into_the_same_out_do_not_corrupt_files(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "toolkit.cli",
        "run",
        "rf-attention",
        "--heads",
        "32",
        "--n",
        "64,128",
        "--seeds",
        "2",
        "--test-size",
        "128",
        "--quiet",
        "--out",
        str(tmp_path),
    ]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in "ab"]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    frame = pd.read_csv(tmp_path / "rf_attention.csv")
    assert len(frame) == 4 * 2 * 2 * 5 and set(frame["status"]) == {"ok"}
    assert frame.groupby(["model", "n", "seed", "target"]).size().eq(1).all()
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert len(list(cache_dir(tmp_path, STUDY).glob("*.json"))) == 16
