"""toolkit.load_results: which files it reads, which rows it returns, and the dtypes."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import toolkit
from studies import registry

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def test_curves_and_other_rows_split_the_committed_results():
    curves = toolkit.load_results(RESULTS)
    other = toolkit.load_results(RESULTS, kind="other")
    every = toolkit.load_results(RESULTS, kind="all")
    assert len(curves) + len(other) == len(every)
    assert set(curves["study"]) == set(registry())
    assert "attn_map" not in set(curves["metric"]) and "kl_floor" not in set(curves["metric"])
    maps = other[other["metric"] == "attn_map"]
    assert len(maps) > 0 and set(maps["study"]) == {"st-dit"}
    assert {"row", "col"} <= set(other.columns) and "row" not in curves.columns
    # Integer parameters come back as integers: int64, or Int64 where a study lacks them.
    assert curves["n"].dtype == "int64" and curves["seed"].dtype == "int64"
    assert curves["heads"].dtype == "Int64" and curves["kernel_order"].dtype == "Int64"
    assert curves["beta"].dtype == "float64"
    rf = toolkit.load_results(RESULTS / "rf_attention.csv")
    assert rf["heads"].dtype == "int64" and set(rf["study"]) == {"rf-attention"}


def test_only_study_csvs_are_read(tmp_path):
    shutil.copy(RESULTS / "rf_attention.csv", tmp_path)
    pd.DataFrame({"study": ["mine"], "model": ["x"], "n": [1], "value": [0.5]}).to_csv(
        tmp_path / "summary.csv", index=False
    )
    shutil.copy(RESULTS / "rates.csv", tmp_path)
    frame = toolkit.load_results(tmp_path)
    assert set(frame["study"]) == {"rf-attention"}
    with pytest.raises(ValueError, match="not a study CSV"):
        toolkit.load_results(tmp_path / "summary.csv")


def test_a_csv_named_after_another_study_is_refused(tmp_path):
    shutil.copy(RESULTS / "rf_attention.csv", tmp_path / "st_dit.csv")
    with pytest.raises(ValueError, match="study column says rf-attention, not st-dit"):
        toolkit.load_results(tmp_path)


def test_missing_values_keep_integers_as_nullable_integers(tmp_path):
    frame = pd.read_csv(RESULTS / "rf_attention.csv", dtype={"code_hash": str})
    failed = frame.head(1).assign(metric="", value=float("nan"), heads=None, status="failed")
    pd.concat([frame, failed]).to_csv(tmp_path / "rf_attention.csv", index=False)
    loaded = toolkit.load_results(tmp_path)
    assert loaded["heads"].dtype == "Int64" and loaded["heads"].isna().sum() == 1
    assert loaded["n"].dtype == "int64"


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no study CSV in this directory"):
        toolkit.load_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        toolkit.load_results(tmp_path / "missing")
    with pytest.raises(ValueError, match="kind must be one of curves, other, all"):
        toolkit.load_results(RESULTS, kind="maps")


def test_import_toolkit_imports_neither_pandas_nor_torch():
    code = "import sys, toolkit; print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
