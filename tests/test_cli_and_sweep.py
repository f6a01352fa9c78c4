"""The command line and the sweep runner: errors, caching, resumption, output format."""

import dataclasses
import subprocess
import sys

import pandas as pd
import pytest

import toolkit
from studies import rf_attention
from toolkit import cli
from toolkit.params import build
from toolkit.sweep import cache_dir, run_sweep

STUDY = rf_attention.STUDY

TINY = ["--heads", "16", "--n", "32,64", "--seeds", "2", "--test-size", "64", "--quiet"]


def run(args, monkeypatch):
    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")
    return cli.main(args)


@pytest.mark.parametrize(
    "args,flag",
    [
        (["--heads", "0"], "--heads"),
        (["--targets", "inner1,bogus"], "--targets"),
        (["--n", "1,64"], "--n"),
        (["--heads", "lots"], "--heads"),
        (["--models", "rfa,transformer"], "--models"),
        (["--profile", "huge"], "--profile"),
        (["--jobs", "0"], "--jobs"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_output(args, flag, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    code = run(["run", "rf-attention", *TINY, "--out", str(out), *args], monkeypatch)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and flag in err
    assert not out.exists()


def test_unwritable_out_exits_2(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = run(["run", "rf-attention", *TINY, "--out", str(blocker / "sub")], monkeypatch)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--out" in err
    assert blocker.read_text() == "not a directory"


def test_console_script_exit_code_and_message(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "run", "rf-attention", "--heads", "0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --heads must be an integer >= 1 (got 0)"
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


def test_run_writes_a_tidy_csv(tmp_path, monkeypatch):
    code = run(["run", "rf-attention", *TINY, "--out", str(tmp_path)], monkeypatch)
    assert code == 0
    frame = pd.read_csv(tmp_path / "rf_attention.csv")
    assert list(frame.columns[:6]) == ["study", "model", "n", "seed", "metric", "value"]
    assert list(frame.columns[-7:]) == [
        "status",
        "reason",
        "runtime_s",
        "device",
        "threads",
        "code_hash",
        "version",
    ]
    for column in ("heads", "dim", "keys", "bias", "noise", "test_size", "target", "lambda"):
        assert column in frame.columns
    # 4 models x 2 n x 2 seeds cells, 5 targets each.
    assert len(frame) == 4 * 2 * 2 * 5
    assert set(frame["heads"]) == {16} and set(frame["version"]) == {toolkit.__version__}
    assert frame["value"].between(0, 10).all() and (frame["lambda"] > 0).all()
    assert frame.groupby(["model", "n", "seed", "target"]).size().max() == 1
    pd.testing.assert_frame_equal(toolkit.load_results(tmp_path), frame)
    assert not list(tmp_path.glob(".*.tmp"))


def test_keys_and_heads_take_comma_lists(tmp_path, monkeypatch):
    args = ["--heads", "8,16", "--keys", "2,4", "--n", "32,64", "--seeds", "1"]
    args += ["--models", "rfa,rfa-inf", "--targets", "inner1", "--test-size", "64", "--quiet"]
    assert run(["run", "rf-attention", *args, "--out", str(tmp_path)], monkeypatch) == 0
    frame = pd.read_csv(tmp_path / "rf_attention.csv")
    cells = frame.groupby(["model", "n", "keys", "heads"]).size()
    assert len(cells) == 2 * 2 * 2 * 2 and cells.max() == 1
    inf = frame[frame["model"] == "rfa-inf"].pivot(
        index=["n", "keys"], columns="heads", values="value"
    )
    assert (inf[8] == inf[16]).all()  # rfa-inf does not depend on M


def test_interrupted_run_resumes_with_only_the_missing_cells(tmp_path):
    config = build(
        STUDY.config,
        {"heads": (16,), "n": (32, 64), "seeds": 2, "models": ("rfa", "rfmlp"), "test_size": 64},
    )
    calls = []
    interrupt = [True]

    def flaky(cell, device="cpu"):
        if interrupt[0] and len(calls) == 5:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the sixth cell
        calls.append((cell["model"], cell["n"], cell["seed"]))
        return rf_attention.run_cell(cell, device)

    # The cache key hashes the code of the study's run_cell module (here this test module),
    # so every run below uses this one study object.
    study = dataclasses.replace(STUDY, run_cell=flaky)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(study, config, tmp_path, progress=False)
    assert len(list(cache_dir(tmp_path, study).glob("*.json"))) == 5
    assert not (tmp_path / "rf_attention.csv").exists()

    interrupt[0] = False
    resumed = run_sweep(study, config, tmp_path, progress=False)
    assert (resumed.cells, resumed.computed) == (8, 3)
    assert len(calls) == 8
    again = run_sweep(study, config, tmp_path, progress=False)
    assert again.computed == 0

    fresh = run_sweep(study, config, tmp_path / "fresh", progress=False)
    a = pd.read_csv(resumed.path).drop(columns="runtime_s")
    b = pd.read_csv(fresh.path).drop(columns="runtime_s")
    pd.testing.assert_frame_equal(a, b)


def test_parallel_jobs_give_the_same_values(tmp_path):
    config = build(
        STUDY.config,
        {"heads": (16,), "n": (32, 64), "seeds": 1, "models": ("rfa", "rfa-inf"), "test_size": 64},
    )
    one = run_sweep(STUDY, config, tmp_path / "one", progress=False)
    two = run_sweep(STUDY, config, tmp_path / "two", jobs=2, progress=False)
    a, b = pd.read_csv(one.path), pd.read_csv(two.path)
    pd.testing.assert_series_equal(a["value"], b["value"], rtol=1e-9)


def test_list_shows_every_parameter(monkeypatch, capsys):
    assert run(["list"], monkeypatch) == 0
    out = capsys.readouterr().out
    for flag in ("--heads", "--dim", "--keys", "--n", "--seeds", "--models", "--targets"):
        assert flag in out
    for flag in ("--bias", "--noise", "--test-size"):
        assert flag in out


def test_help_explains_every_flag(monkeypatch, capsys):
    assert run(["run", "rf-attention", "--help"], monkeypatch) == 0
    out = capsys.readouterr().out
    for flag in ("--profile", "--jobs", "--device", "--out", "--max-memory", "--heads"):
        assert flag in out
    assert "--test-size" in out


def test_grid_cells_cover_every_combination_with_n_descending():
    from toolkit.study import grid_cells

    config = build(STUDY.config, {"n": (16, 64, 32), "seeds": 2, "models": ("rfa", "brfa")})
    cells = grid_cells(config, {"n": "n", "models": "model"})
    assert [c["n"] for c in cells[::4]] == [64, 32, 16]
    assert {(c["n"], c["model"], c["seed"]) for c in cells} == {
        (n, m, s) for n in (16, 32, 64) for m in ("rfa", "brfa") for s in (0, 1)
    }
    assert len(cells) == 12
    assert all(c["targets"] == list(config.targets) and "models" not in c for c in cells)
