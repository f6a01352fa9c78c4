"""The study contract: a toy study built from scratch runs through sweep, rates, report and
CLI alone; registry names; estimator tables; the core imports no study."""

from __future__ import annotations

import ast
import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studies import MODULES, registry
from toolkit.params import param
from toolkit.rates import study_rates
from toolkit.report import write_report
from toolkit.stats import Claim
from toolkit.study import Study

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    n: tuple[int, ...] = param((100, 400, 1600, 6400), "sample sizes", low=2)
    seeds: int = param(3, "seeds", low=1)
    models: tuple[str, ...] = param(("mean",), "estimators", choices=("mean", "median"))


def toy_cell(cell: dict, device: str = "cpu") -> list[dict]:
    """Squared error of the sample mean (or median) of n standard normals: ~ 1/n."""
    rng = np.random.default_rng([cell["seed"], cell["n"]])
    x = rng.standard_normal(cell["n"])
    estimate = {"mean": np.mean, "median": np.median}[cell["model"]](x)
    return [{"metric": "squared_error", "value": float(estimate**2) + 1e-12}]


def toy_study(**changes) -> Study:
    study = Study(
        name="toy-mean",
        summary="The sample mean of n standard normals has squared error 1/n.",
        config=ToyConfig,
        axes={"n": "n", "models": "model"},
        run_cell=toy_cell,
        profiles={"default": {}, "smoke": {"n": (100, 400, 1600)}},
        memory=lambda cell: 1e6,
        theory=lambda setting: Claim(-1.0),
    )
    return dataclasses.replace(study, **changes)


def test_a_toy_study_runs_through_sweep_rates_report_and_cli(tmp_path, monkeypatch, capsys):
    from toolkit.cli import main

    study = toy_study(profiles={"default": {"seeds": 40}, "smoke": {}})
    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")
    code = main(["run", "toy-mean", "--out", str(tmp_path), "--quiet"], studies={"toy-mean": study})
    assert code == 0
    frame = pd.read_csv(tmp_path / "toy_mean.csv")
    assert len(frame) == 4 * 40 and set(frame["status"]) == {"ok"}
    rates = study_rates(frame, study)
    (slope,) = rates["slope"]
    assert slope == pytest.approx(-1.0, abs=0.25)  # E x_bar^2 = 1/n
    row = rates.iloc[0]  # log of a squared normal has sd 2.2: 40 seeds cannot decide +-0.1
    assert row.ci_low <= -1.0 <= row.ci_high and row.verdict != "fails"

    written = write_report(tmp_path, {"toy-mean": study}, resamples=200)
    assert (tmp_path / "figures" / "toy_mean_squared_error.png").read_bytes()[:4] == b"\x89PNG"
    assert "## toy-mean" in written[-1].read_text()


def test_a_researcher_adds_an_estimator_in_one_place(tmp_path, monkeypatch):
    """rf-attention's models are a table: one new entry is a new --models choice."""
    from studies import rf_attention
    from toolkit.cli import main

    def ones(cell, train, test, y, device):  # predicts 0: relative error 1 on every target
        import torch

        from toolkit.ridge import RidgeFit

        fit = RidgeFit(torch.zeros(1), torch.ones(y.shape[1]), torch.ones(1), torch.ones(1, 1))
        return torch.zeros(test[0].shape[0], y.shape[1], dtype=torch.float64), fit

    monkeypatch.setitem(rf_attention.MODELS, "zero", ones)
    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")
    args = ["run", "rf-attention", "--models", "zero,rfa", "--heads", "8", "--n", "32"]
    args += ["--seeds", "1", "--test-size", "2000", "--out", str(tmp_path), "--quiet"]
    assert main(args) == 0
    frame = pd.read_csv(tmp_path / "rf_attention.csv")
    zero = frame[frame["model"] == "zero"]
    assert len(zero) == 5
    # Targets have unit variance exactly, so predicting 0 has error E f^2 = 1 (+- MC noise).
    assert np.allclose(zero["value"], 1.0, atol=0.12)
    assert len(frame[frame["model"] == "rfa"]) == 5


def test_registry_names_match_modules_csv_and_figures():
    studies = registry()
    assert [s.slug for s in studies.values()] == list(MODULES)
    for name, study in studies.items():
        assert study.name == name
        assert study.output == f"{study.slug}.csv"
        assert study.figure_name("kl") == f"{study.slug}_kl.png"
        assert (ROOT / "studies" / f"{study.slug}.py").exists()
        assert study.module == f"studies.{study.slug}"
        assert study.readme == f"docs/studies/{name}.md" and (ROOT / study.readme).is_file()
        assert {"smoke", "default", "paper"} <= set(study.profiles)


def test_a_study_with_an_unknown_axis_or_profile_field_is_refused():
    with pytest.raises(ValueError, match="axes"):
        toy_study(axes={"sizes": "n"})
    with pytest.raises(ValueError, match="profile smoke"):
        toy_study(profiles={"smoke": {"bogus": 1}})


def test_the_core_imports_no_study():
    """Only the entry points may import `studies`: the CLI and `toolkit.load_results`
    (toolkit/__init__.py), which pass the registry to a core that knows no study."""
    edges = {ROOT / "toolkit" / "cli.py", ROOT / "toolkit" / "__init__.py"}
    for path in (ROOT / "toolkit").rglob("*.py"):
        if path in edges:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "studies" for n in names), path


def test_help_and_list_import_no_torch():
    code = (
        "import sys, contextlib, io\n"
        "from toolkit.cli import main\n"
        "for argv in (['--help'], ['list'], ['run', 'st-dit', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print(sorted(m for m in ('torch', 'pandas', 'scipy') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_study_help_is_a_short_summary_with_the_study_document(monkeypatch, capsys):
    from toolkit.cli import main

    monkeypatch.setenv("TOOLKIT_NO_EXIT", "1")
    assert main(["run", "conditional-diffusion", "--help"]) == 0
    out = capsys.readouterr().out
    before_options = out.split("Options:")[0]
    assert "Documented in docs/studies/conditional-diffusion.md" in " ".join(before_options.split())
    assert len(before_options.strip().splitlines()) <= 10
    for flag in ("--max-memory", "--min-steps", "--max-steps", "--epochs", "--beta"):
        assert flag in out


def test_cost_weights_sum_to_the_cell_count_and_follow_the_cost():
    from toolkit.sweep import _weights

    study = toy_study(cost=lambda cell: cell["n"])
    cells = study.cells(ToyConfig())
    weights = _weights(study, cells)
    assert math.isclose(sum(weights), len(cells))
    by_n = {c["n"]: w for c, w in zip(cells, weights, strict=True)}
    assert by_n[6400] == pytest.approx(64 * by_n[100])


def test_every_study_estimates_memory_and_cost_of_its_default_cells():
    """Positive, finite estimates; the largest default cell fits a 24 GiB machine."""
    from toolkit.params import build

    for study in registry().values():
        config = build(study.config, dict(study.profiles["default"]))
        cells = study.cells(config)
        memory = [study.memory(c) for c in cells]
        costs = [study.cost(c) for c in cells]
        assert all(0 < m < 8 * 2**30 for m in memory), study.name
        assert all(0 < c < math.inf for c in costs), study.name


# Written by another change of the same issue; linked before they exist.
PENDING_DOCS = {ROOT / "docs" / "statistics.md", ROOT / "docs" / "robustness.md"}


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_documentation_links_resolve_inside_the_repository():
    import re

    for doc in _documents():
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(ROOT), (doc, target)
            assert path.exists() or path in PENDING_DOCS, (doc, target)


def test_nothing_points_outside_the_repository():
    outside = ("../" + "shared", "STUDIES" + ".md")
    files = [*_documents(), ROOT / "Makefile", ROOT / "pyproject.toml"]
    for folder in ("toolkit", "studies", "tests", "benchmarks"):
        files += sorted((ROOT / folder).rglob("*.py"))
    for path in files:
        text = path.read_text()
        assert not any(word in text for word in outside), path


def test_readme_is_short_and_every_study_has_its_document():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for name in registry():
        assert f"docs/studies/{name}.md" in readme
    for doc in ("statistics.md", "robustness.md"):
        assert f"docs/{doc}" in readme and doc in (ROOT / "docs" / "README.md").read_text()
