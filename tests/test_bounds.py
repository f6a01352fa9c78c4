"""Bounded resources and honest failures: refused before any work, one line, nothing written."""

from __future__ import annotations

import os
import socket
import stat
import time

import numpy as np
import pandas as pd
import pytest

from toolkit import cli
from toolkit.sweep import usable_cores

TINY = ["--heads", "16", "--n", "32,64", "--seeds", "1", "--test-size", "64", "--quiet"]


@pytest.fixture(autouse=True)
def no_exit(monkeypatch):
    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")


def one_line_exit_2(args, tmp_path, capsys) -> str:
    out = tmp_path / "out"
    start = time.perf_counter()
    code = cli.main([*args, "--out", str(out)])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert not out.exists()
    assert elapsed < 30  # refused up front, not after allocating
    return err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["run", "rf-attention", "--seeds", "1000000000"], "--seeds: the grid has"),
        (["run", "rf-attention", "--n", "10000000000"], "--max-memory"),
        (["run", "rf-attention", "--test-size", "1e12"], "--max-memory"),
        (["run", "conditional-diffusion", "--dim", "2", "--bins", "1e9"], "--max-memory"),
        (["run", "conditional-diffusion", "--width", "1e9", "--max-width", "1e9"], "--max-memory"),
        (
            ["run", "st-dit", "--frames", "512", "--dim", "256", "--samples", "200000"],
            "--max-memory",
        ),
        (["run", "rf-attention", *TINY, "--max-memory", "1M"], "--max-memory"),
        (["run", "rf-attention", *TINY, "--max-memory", "lots"], "--max-memory must be a size"),
    ],
)
def test_huge_values_are_refused_before_any_work(args, needle, tmp_path, capsys):
    err = one_line_exit_2(args, tmp_path, capsys)
    assert needle in err


def test_memory_refusal_names_the_estimate_and_the_cell(tmp_path, capsys):
    err = one_line_exit_2(["run", "rf-attention", "--n", "10000000000"], tmp_path, capsys)
    assert "n=10000000000" in err and ("PiB" in err or "TiB" in err)


@pytest.mark.slow
def test_jobs_are_capped_at_the_usable_cores_with_a_warning(tmp_path, capsys):
    jobs = usable_cores() + 998
    code = cli.main(["run", "rf-attention", *TINY, "--jobs", str(jobs), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0
    assert err == [
        f"warning: --jobs {jobs} is more than the {usable_cores()} usable cores; "
        f"using {usable_cores()}"
    ]
    threads = set(pd.read_csv(tmp_path / "rf_attention.csv")["threads"])
    assert threads == {1}


def test_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = cli.main(["run", "rf-attention", *TINY, "--out", ""])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "error: --out must be a directory path (got an empty string)"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_outputs_have_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        assert cli.main(["run", "rf-attention", *TINY, "--out", str(tmp_path)]) == 0
    finally:
        os.umask(old)
    csv = tmp_path / "rf_attention.csv"
    entries = list((tmp_path / ".cache" / "rf_attention").glob("*.json"))
    for path in [csv, *entries]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


# ---- dask -------------------------------------------------------------------------------------


def test_a_scheduler_nobody_answers_exits_2_within_the_timeout(tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    from toolkit import sweep

    monkeypatch.setattr(sweep, "CONNECT_TIMEOUT", 2.0)
    # Something listens (the kernel accepts the connection) but never speaks dask; a port
    # where nothing listens is refused at once (tests/test_hostile.py).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        err = one_line_exit_2(
            ["run", "rf-attention", *TINY, "--backend", "dask", "--scheduler", address],
            tmp_path,
            capsys,
        )
    assert err.startswith(f"error: --scheduler {address}: no dask scheduler answered within 2 s")


@pytest.mark.parametrize("address", ["not an address", "tcp://", "127.0.0.1"])
def test_a_scheduler_that_is_not_an_address_exits_2(address, tmp_path, capsys):
    pytest.importorskip("distributed")
    err = one_line_exit_2(
        ["run", "rf-attention", *TINY, "--backend", "dask", "--scheduler", address],
        tmp_path,
        capsys,
    )
    assert "--scheduler" in err


def test_local_cluster_listens_on_loopback_only():
    pytest.importorskip("distributed")
    from toolkit.sweep import _local_cluster

    client, cluster = _local_cluster(1)
    try:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        workers = client.scheduler_info()["workers"]
        assert workers and all(a.startswith("tcp://127.0.0.1:") for a in workers)
        http = cluster.scheduler.http_server
        assert http is not None
        hosts = {sock.getsockname()[0] for sock in http._sockets.values()}
        assert hosts == {"127.0.0.1"}
    finally:
        client.close()
        cluster.close()


# ---- report -----------------------------------------------------------------------------------


def synthetic_rf_csv(folder) -> None:
    rng = np.random.default_rng(0)
    rows = [
        {
            "study": "rf-attention", "model": model, "n": n, "seed": seed,
            "metric": "rel_test_error", "target": "inner1", "keys": 8, "heads": 4096,
            "value": (n / 64.0) ** slope * np.exp(0.05 * rng.standard_normal()),
        }
        for model, slope in (("rfa", -1.0), ("rfmlp", -0.2))
        for n in (64, 128, 256, 512)
        for seed in range(3)
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "rf_attention.csv", index=False)


@pytest.mark.parametrize("blocker", ["rates.csv", "REPORT.md"])
def test_report_with_an_unwritable_destination_writes_nothing(blocker, tmp_path, capsys):
    synthetic_rf_csv(tmp_path)
    (tmp_path / blocker).mkdir()
    code = cli.main(["report", "--results", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and blocker in err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["rf_attention.csv", blocker])  # no figures/, no rates.csv


def test_report_refuses_a_figures_file(tmp_path, capsys):
    synthetic_rf_csv(tmp_path)
    (tmp_path / "figures").write_text("not a folder")
    assert cli.main(["report", "--results", str(tmp_path)]) == 2
    assert "figures" in capsys.readouterr().err
    assert not (tmp_path / "rates.csv").exists()


def test_report_writes_every_file_last_and_atomically(tmp_path, monkeypatch):
    """Nothing is written until everything (figures included) has been computed."""
    from toolkit import report

    synthetic_rf_csv(tmp_path)
    order = []
    real_write, real_plot = report.write_set, report.plot_metric

    def write(files):
        order.extend(["write"] * len(files))
        real_write(files)

    def plot(*args, **kwargs):
        order.append("plot")
        return real_plot(*args, **kwargs)

    monkeypatch.setattr(report, "write_set", write)
    monkeypatch.setattr(report, "plot_metric", plot)
    assert cli.main(["report", "--results", str(tmp_path)]) == 0
    assert order.index("write") > max(i for i, step in enumerate(order) if step == "plot")
    # figure, sample-complexity figure, rates, comparisons, sample_complexity, REPORT.md
    assert order.count("write") == 6
    assert not list(tmp_path.glob(".*.tmp")) and not list((tmp_path / "figures").glob(".*"))


# ---- comparisons refuse bad data ---------------------------------------------------------------


def rf_frame(n_values, rfa_values=None) -> pd.DataFrame:
    rows = []
    for i, n in enumerate(n_values):
        for seed in range(2):
            size = max(abs(n), 1)
            rfa = 1.0 / size if rfa_values is None else rfa_values[i]
            rows += [
                {"model": "rfa", "n": n, "seed": seed, "value": rfa},
                {"model": "rfmlp", "n": n, "seed": seed, "value": 4.0 / size**0.5},
            ]
    frame = pd.DataFrame(rows)
    return frame.assign(metric="rel_test_error", target="inner1", study="rf-attention")


def test_comparisons_need_three_distinct_n_with_finite_positive_values():
    from studies.rf_attention import comparisons

    good = comparisons(rf_frame([64, 128, 256, 512]), resamples=200)
    assert good["verdict"].tolist() == ["holds"]
    assert good["setting"].tolist() == ["target=inner1"]

    cases = {
        "two n": rf_frame([64, 128]),
        "n <= 0": rf_frame([-64, 0, 128, 256]),
        "inf values": rf_frame([64, 128, 256, 512], [np.inf, np.inf, 1 / 256, 1 / 512]),
    }
    for name, frame in cases.items():
        table = comparisons(frame, resamples=200)
        assert table["verdict"].tolist() == ["inconclusive"], name
        assert np.isnan(table["value"]).all(), name
        assert "2 distinct n" in table["statistic"].iloc[0], name
