"""The report on data it must describe rather than crash on: failed and NaN-only studies,
absurd n, FIFOs, a full disk mid-write, a figure that cannot be drawn, too many settings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import studies
from toolkit.report import ReportError, failed_cells, write_report

REGISTRY = studies.registry()


def _inverse_rows(value=None, n_grid=(316, 1000, 3162)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for n in n_grid:
        for seed in (0, 1):
            v = n**-0.5 * np.exp(0.01 * rng.standard_normal()) if value is None else value
            rows.append({"study": "inverse-problem", "model": "kernel", "n": n, "seed": seed,
                         "metric": "score_error", "value": v, "beta": 1.5, "meas_dim": 1,
                         "noise_level": 1.0, "p_uncond": 0.5, "guidance": 0.0,
                         "kernel_order": 2, "status": "ok"})  # fmt: skip
    return pd.DataFrame(rows)


def _failed_study(path: Path) -> None:
    pd.DataFrame(
        {"study": ["conditional-diffusion"] * 2, "model": ["neural"] * 2, "n": [316, 1000],
         "seed": [0, 0], "metric": [np.nan] * 2, "value": [np.nan] * 2,
         "status": ["failed"] * 2, "reason": ["RuntimeError: boom\nmore", "RuntimeError: boom"]}
    ).to_csv(path / "conditional_diffusion.csv", index=False)  # fmt: skip


def test_an_all_failed_a_nan_only_and_an_absurd_study_still_give_a_complete_report(tmp_path):
    _failed_study(tmp_path)
    _inverse_rows(value=np.nan).to_csv(tmp_path / "inverse_problem.csv", index=False)
    absurd = pd.DataFrame(
        {"study": "rf-attention", "model": "rfa", "n": [128, 256, 1e300], "seed": 0,
         "metric": "rel_test_error", "value": [0.5, 0.4, np.inf], "target": "inner1",
         "keys": 8, "heads": 16, "status": "ok"}
    )  # fmt: skip
    absurd.to_csv(tmp_path / "rf_attention.csv", index=False)
    with pytest.warns(UserWarning, match="rf-attention not analysed"):
        write_report(tmp_path, REGISTRY)
    report = (tmp_path / "REPORT.md").read_text()
    for name in ("conditional-diffusion", "inverse-problem", "rf-attention"):
        assert f"## {name}" in report
    assert "### Cells that did not finish (2)" in report and "RuntimeError: boom" in report
    assert "Not analysed: " in report and "column n holds 1e+300" in report
    rates = pd.read_csv(tmp_path / "rates.csv")
    assert list(rates["study"]) == ["inverse-problem"]  # its NaN curve: no slope, a reason
    assert rates["verdict"].iloc[0] == "inconclusive"


def test_failed_cells_are_counted_once_per_cell():
    frame = pd.DataFrame(
        {"model": "m", "n": [1, 1, 2], "seed": [0, 0, 0], "status": "failed",
         "reason": ["x", "x", "y"]}
    )  # fmt: skip
    table = failed_cells(frame)
    assert table.set_index("reason")["cells"].to_dict() == {"x": 1, "y": 1}


def test_a_fifo_named_like_a_study_csv_is_not_read(tmp_path):
    _inverse_rows().to_csv(tmp_path / "inverse_problem.csv", index=False)
    os.mkfifo(tmp_path / "st_dit.csv")  # opening it for reading would block for ever
    write_report(tmp_path, REGISTRY)
    assert "## st-dit" not in (tmp_path / "REPORT.md").read_text()


def test_a_full_disk_mid_write_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    import toolkit.results as results

    _inverse_rows().to_csv(tmp_path / "inverse_problem.csv", index=False)
    write_report(tmp_path, REGISTRY)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    real_fdopen, calls = os.fdopen, []

    def full_disk(fd, *args, **kwargs):
        calls.append(fd)
        if len(calls) == 3:  # the third file of the set: ENOSPC
            os.close(fd)
            raise OSError(28, "No space left on device")
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(results.os, "fdopen", full_disk)
    _inverse_rows(n_grid=(316, 1000, 3162, 10000)).to_csv(
        tmp_path / "inverse_problem.csv", index=False
    )
    with pytest.raises(ReportError, match="No space left"):
        write_report(tmp_path, REGISTRY)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert {p: b for p, b in after.items() if p.name != "inverse_problem.csv"} == {
        p: b for p, b in before.items() if p.name != "inverse_problem.csv"
    }  # every output as it was, no temporary left


def test_a_figure_that_cannot_be_drawn_is_noted_not_fatal(tmp_path, monkeypatch):
    import toolkit.report as report

    def broken(*args, **kwargs):
        raise ValueError("cannot draw")

    monkeypatch.setattr(report, "plot_metric", broken)
    _inverse_rows().to_csv(tmp_path / "inverse_problem.csv", index=False)
    with pytest.warns(UserWarning, match="not drawn"):
        write_report(tmp_path, REGISTRY)
    text = (tmp_path / "REPORT.md").read_text()
    assert (
        "Note: figure inverse_problem_score_error.png not drawn (ValueError: cannot draw)" in text
    )


def test_a_metric_figure_draws_at_most_max_panels_settings():
    import matplotlib

    matplotlib.use("Agg")
    from toolkit.plots import MAX_PANELS, metric_figure

    rows = []
    for g in range(MAX_PANELS + 6):
        for n in (100, 1000):
            rows.append({"study": "toy", "model": "m", "n": n, "seed": 0, "metric": "err",
                         "value": 1.0 / n, "g": g})  # fmt: skip
    from toolkit.rates import RATE_COLUMNS

    rates = pd.DataFrame(columns=list(RATE_COLUMNS))
    figure = metric_figure(pd.DataFrame(rows), "err", rates, ("g",))
    panels = [ax for ax in figure.axes if ax.get_visible() and ax.has_data()]
    assert len(panels) == MAX_PANELS
    assert f"the first {MAX_PANELS} of {MAX_PANELS + 6} settings" in figure._suptitle.get_text()
