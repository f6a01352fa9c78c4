"""`toolkit report`: outputs from synthetic CSVs, a study's hooks, and bad input."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studies import registry
from toolkit.cli import main
from toolkit.rates import SAMPLE_COMPLEXITY_COLUMNS
from toolkit.report import ReportError, write_report
from toolkit.stats import Claim
from toolkit.study import Study

N_GRID = (128, 256, 512, 1024)
SLOPES = {  # (model, target) -> true slope of the synthetic rf-attention curves
    ("rfa", "inner1"): -1.0,
    ("rfmlp", "inner1"): -0.2,
    ("rfa", "first-key"): -0.1,
    ("rfmlp", "first-key"): -0.3,
}


@pytest.fixture(autouse=True)
def no_exit(monkeypatch):
    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")


def rf_attention_csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = [
        {
            "study": "rf-attention",
            "model": model,
            "n": n,
            "seed": seed,
            "metric": "rel_test_error",
            "value": 0.5 * (n / 128) ** slope * np.exp(0.05 * rng.standard_normal()),
            "dim": 8,
            "keys": 8,
            "heads": 4096,
            "target": target,
        }
        for (model, target), slope in SLOPES.items()
        for n in N_GRID
        for seed in range(3)
    ]
    pd.DataFrame(rows).to_csv(path / "rf_attention.csv", index=False)
    return path


def test_cli_report_writes_rates_comparisons_figures_and_markdown(tmp_path, capsys):
    rf_attention_csv(tmp_path)
    assert main(["report", "--results", str(tmp_path)]) == 0
    rates = pd.read_csv(tmp_path / "rates.csv")
    assert len(rates) == len(SLOPES)
    for r in rates.itertuples():
        assert r.setting.endswith(", keys=8, heads=4096")
        true = SLOPES[(r.model, r.setting.split(",")[0].removeprefix("target="))]
        assert r.slope == pytest.approx(true, abs=0.05)
        assert r.ci_low <= true <= r.ci_high
        assert (r.n_min, r.n_max, r.n_points, r.verdict) == (128, 1024, 4, "no theory")
    comparisons = pd.read_csv(tmp_path / "comparisons.csv").set_index("setting")
    row = comparisons.loc["target=inner1"]
    # rfmlp's error at 1024 is 0.5 * 8^-0.2 = 0.33; rfa reaches it at 128 * 8^0.2 = 194.
    assert row.value == pytest.approx(1024 / (128 * 8**0.2), rel=0.05)
    assert row.verdict == "holds"
    assert comparisons.loc["target=first-key"].verdict == "holds"
    png = tmp_path / "figures" / "rf_attention_rel_test_error.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "REPORT.md").read_text()
    assert "## rf-attention" in report
    assert "figures/rf_attention_rel_test_error.png" in report
    assert f"| {rates.iloc[0].slope:.3f} |" in report  # tables are the numbers of rates.csv
    assert "REPORT.md" in capsys.readouterr().out
    complexity = pd.read_csv(tmp_path / "sample_complexity.csv")
    assert list(complexity.columns) == list(SAMPLE_COMPLEXITY_COLUMNS)
    assert len(complexity) == 3 * len(SLOPES)  # three default levels per curve
    assert set(complexity["status"]) <= {"reached", "already reached", "not reached"}
    png = tmp_path / "figures" / "rf_attention_sample_complexity.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(figures/rf_attention_sample_complexity.png)" in report
    # The report opens with the claims table: its first section, before any study.
    assert report.index("## Claims") < report.index("## rf-attention")
    claims = report[report.index("## Claims") : report.index("## Method")]
    assert "| rf-attention | rfa needs several times fewer samples |" in claims
    # A second report over the same directory reads only the study CSVs.
    assert main(["report", "--results", str(tmp_path)]) == 0
    assert pd.read_csv(tmp_path / "sample_complexity.csv").equals(complexity)


def test_report_uses_the_study_theory_floor_and_figure_hook(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for beta in (1.0, 2.0):
        for n in (100, 300, 1000, 3000, 10000):
            for seed in range(3):
                tv = n ** (-beta / (2 + 2 * beta)) * np.exp(0.05 * rng.standard_normal())
                key = {"study": "toy", "model": "kernel", "n": n, "seed": seed, "beta": beta}
                rows += [
                    {**key, "metric": "tv", "value": tv},
                    {**key, "metric": "tv_floor", "value": 0.05},  # swallows n=10000, beta=2
                ]
    pd.DataFrame(rows).to_csv(tmp_path / "toy.csv", index=False)

    @dataclass(frozen=True)
    class ToyConfig:
        n: tuple[int, ...] = (100, 300, 1000, 3000, 10000)
        beta: tuple[float, ...] = (1.0, 2.0)
        seeds: int = 3

    def figures(frame):
        return {"toy_extra.png": b"png"}

    toy = Study(
        name="toy",
        summary="A toy study.",
        config=ToyConfig,
        axes={"n": "n", "beta": "beta"},
        run_cell=lambda cell, device: [],
        profiles={"default": {}},
        memory=lambda cell: 0.0,
        claims="Toy study.\n\nDetails.",
        rate_groups=("beta",),
        resolutions={"tv": "tv_floor"},
        theory=lambda s: Claim(-s["beta"] / (2 + 2 * s["beta"])),
        figures=figures,
    )
    written = write_report(tmp_path, {"toy": toy}, resamples=500)
    rates = pd.read_csv(tmp_path / "rates.csv").set_index("setting")
    assert list(rates["verdict"]) == ["holds", "holds"]
    assert rates.loc["beta=1", "theory"] == pytest.approx(-0.25)
    assert rates.loc["beta=2", "n_max"] == 3000  # 10000**(-1/3) = 0.046 < floor 0.05
    assert not (tmp_path / "comparisons.csv").exists()  # no study declares comparisons
    assert tmp_path / "figures" / "toy_extra.png" in written
    assert (tmp_path / "figures" / "toy_extra.png").read_bytes() == b"png"
    report = (tmp_path / "REPORT.md").read_text()
    assert "> Toy study." in report and "figures/toy_extra.png" in report


def test_missing_directory_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["report", "--results", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --results {missing}: no such directory\n"
    assert not missing.exists()


def test_csv_missing_shared_columns_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    rf_attention_csv(tmp_path)
    columns = ["study", "model", "n", "metric", "value"]
    frame = pd.read_csv(tmp_path / "rf_attention.csv")[columns]
    frame.to_csv(tmp_path / "rf_attention.csv", index=False)
    assert main(["report", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --results ") and "missing column(s) seed" in err
    assert err.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["rf_attention.csv"]


def test_a_study_missing_its_setting_columns_is_reported_not_analysed(tmp_path, capsys):
    """Isolation: a study the report cannot analyse gets a section saying why; the report
    itself completes (exit 0) with one warning line."""
    rf_attention_csv(tmp_path)
    columns = ["study", "model", "n", "seed", "metric", "value"]
    frame = pd.read_csv(tmp_path / "rf_attention.csv")[columns]
    frame.to_csv(tmp_path / "rf_attention.csv", index=False)
    assert main(["report", "--results", str(tmp_path)]) == 0
    assert "rf-attention not analysed" in capsys.readouterr().err
    report = (tmp_path / "REPORT.md").read_text()
    assert "Not analysed: " in report and "missing column(s) target" in report


def test_directory_without_study_csv_is_a_report_error(tmp_path):
    (tmp_path / "rates.csv").write_text("study\n")  # derived tables do not count
    with pytest.raises(ReportError, match="no study CSV files"):
        write_report(tmp_path, registry())


@pytest.mark.slow
def test_report_opens_with_one_claim_per_row_and_keeps_non_rates_out_of_rate_tables(tmp_path):
    """Rate claims are gathered across settings; metrics with no exponent get their own
    table; metrics that do not change with n (non-rate, floors) appear in no table."""
    rng = np.random.default_rng(2)
    rows = []
    for beta in (1.0, 2.0):
        for n in (100, 300, 1000, 3000):
            for seed in range(3):
                key = {"study": "toy", "model": "kernel", "n": n, "seed": seed, "beta": beta}
                noise = np.exp(0.03 * rng.standard_normal(3))
                rows += [
                    {**key, "metric": "tv", "value": n ** (-beta / 4) * noise[0]},
                    {**key, "metric": "tv_floor", "value": 1e-4},
                    {**key, "metric": "alignment", "value": 0.9 * n**0.01 * noise[1]},
                    {**key, "metric": "tv_sampler", "value": 0.01},  # the same at every n
                ]
    pd.DataFrame(rows).to_csv(tmp_path / "toy.csv", index=False)

    @dataclass(frozen=True)
    class ToyConfig:
        n: tuple[int, ...] = (100, 300, 1000, 3000)
        beta: tuple[float, ...] = (1.0, 2.0)
        seeds: int = 3

    exponent = {"tv": -0.25}  # right for beta = 1, wrong for beta = 2 (-0.5 measured)
    toy = Study(
        name="toy",
        summary="A toy study.",
        config=ToyConfig,
        axes={"n": "n", "beta": "beta"},
        run_cell=lambda cell, device: [],
        profiles={"default": {}},
        memory=lambda cell: 0.0,
        rate_groups=("beta",),
        resolutions={"tv": "tv_floor"},
        non_rate_metrics=("tv_sampler",),
        theory=lambda s: Claim(exponent[s["metric"]]) if s["metric"] in exponent else None,
    )
    write_report(tmp_path, {"toy": toy}, resamples=300)
    report = (tmp_path / "REPORT.md").read_text()
    claims = report[report.index("## Claims") : report.index("## Method")]
    (row,) = [line for line in claims.splitlines() if line.startswith("| toy |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "kernel: tv falls like n^-0.25"
    assert "beta=1: -0.24" in cells[3] and "beta=2: -0.49" in cells[3]  # one slope per setting
    assert cells[4] == "-0.250"
    assert cells[5] == "**fails** (1/2 holds, 1/2 fails)"
    assert cells[6] == "[tv](figures/toy_tv.png)"
    rates_part = report[report.index("### Rates against theory") :]
    rate_table = rates_part[: rates_part.index("What it would take")]
    described = rates_part[rates_part.index("### Curves without a theory exponent") :]
    assert rate_table.count("| tv |") == 2 and "alignment" not in rate_table
    assert described.count("| alignment |") == 2 and "no theory" not in report
    assert "tv_sampler" not in report and "| tv_floor |" not in report
    complexity = pd.read_csv(tmp_path / "sample_complexity.csv")
    assert set(complexity["metric"]) == {"tv", "alignment"}
    assert (tmp_path / "figures" / "toy_sample_complexity.png").exists()
    assert "![n_eps against beta](figures/toy_sample_complexity.png)" in report


@pytest.mark.slow
def test_a_profile_folder_gets_its_own_report_and_a_section_in_the_top_one(tmp_path):
    rf_attention_csv(tmp_path)
    sub = tmp_path / "rf_attention_keys"
    sub.mkdir()
    rf_attention_csv(sub)
    (tmp_path / "empty_folder").mkdir()  # no study CSV: not a profile folder
    assert main(["report", "--results", str(tmp_path)]) == 0
    for folder in (tmp_path, sub):
        assert (folder / "REPORT.md").exists() and (folder / "rates.csv").exists()
        assert (folder / "figures" / "rf_attention_sample_complexity.png").exists()
    pd.testing.assert_frame_equal(
        pd.read_csv(sub / "comparisons.csv"), pd.read_csv(tmp_path / "comparisons.csv")
    )
    top = (tmp_path / "REPORT.md").read_text()
    section = top.split("## Other profiles", 1)[1]
    assert "### rf_attention_keys" in section and "empty_folder" not in top
    assert "(rf_attention_keys/REPORT.md)" in section
    assert "](rf_attention_keys/figures/rf_attention_sample_complexity.png)" in section
    assert "| rf-attention | rfa needs several times fewer samples" in section
    assert "## Other profiles" not in (sub / "REPORT.md").read_text()


@pytest.mark.slow
def test_report_figures_drawn_by_two_workers_are_the_same_files(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        rf_attention_csv(folder)
    assert main(["report", "--results", str(one)]) == 0
    assert main(["report", "--results", str(two), "--jobs", "2"]) == 0
    names = sorted(p.name for p in (one / "figures").iterdir())
    assert names == sorted(p.name for p in (two / "figures").iterdir()) and len(names) == 2
    for name in names:
        assert (one / "figures" / name).read_bytes() == (two / "figures" / name).read_bytes()
    assert (one / "REPORT.md").read_text().replace(str(one), "") == (
        two / "REPORT.md"
    ).read_text().replace(str(two), "")
