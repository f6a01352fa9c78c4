"""The committed results come from the code that is here: the cheapest default-profile cell
of every (study, model) is recomputed and compared with its rows in results/<slug>.csv.

The cell runs with the torch thread count its rows record. On the machine that produced
the CSVs the values agree exactly; RTOL covers float32 kernels that round differently on
another CPU (measured: 2e-7 relative for rfa-inf between two machines), and is far below
what any change of the computation gives (1e-3 and more).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from studies import registry
from toolkit.params import build

RESULTS = Path(__file__).resolve().parents[1] / "results"
RTOL = 1e-5
STUDIES = registry()


def cheapest_cells(study) -> list[dict]:
    config = build(study.config, dict(study.profiles["default"]))
    best: dict[str, dict] = {}
    for cell in study.cells(config):
        if cell["model"] not in best or study.cost(cell) < study.cost(best[cell["model"]]):
            best[cell["model"]] = cell
    return list(best.values())


CASES = [
    pytest.param(study, cell, id=f"{name}-{cell['model']}")
    for name, study in STUDIES.items()
    for cell in cheapest_cells(study)
]


@pytest.mark.slow
@pytest.mark.parametrize("study,cell", CASES)
def test_committed_rows_are_reproduced(study, cell):
    committed = pd.read_csv(RESULTS / study.output)
    rows = committed
    for key in [*study.axes.values(), "seed"]:
        rows = rows[rows[key] == cell[key]]
    assert len(rows), "the default profile's cell is missing from the committed CSV"
    assert set(rows["status"]) == {"ok"}
    (threads,) = set(rows["threads"])
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        fresh = study.run_cell(cell, "cpu")
    finally:
        torch.set_num_threads(before)
    assert len(fresh) == len(rows)
    for row in fresh:
        match = rows[rows["metric"] == row["metric"]]
        for extra in ("target", "row", "col"):
            if extra in row:
                match = match[match[extra] == row[extra]]
        assert len(match) == 1, row
        expected = float(match["value"].iloc[0])
        assert math.isclose(row["value"], expected, rel_tol=RTOL, abs_tol=1e-12), (
            row["metric"],
            row["value"],
            expected,
        )


@pytest.mark.parametrize("name", list(STUDIES))
def test_committed_rows_carry_the_hash_of_the_committed_code(name):
    """results/ was produced by the code that is here (toolkit.load_results keeps the hash as
    text: a hex hash like 8371624e69504925 would parse as a float)."""
    import toolkit
    from toolkit.sweep import code_hash

    study = STUDIES[name]
    frame = toolkit.load_results(RESULTS / study.output)
    assert set(frame["code_hash"]) == {code_hash(study.module)}
