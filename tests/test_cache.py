"""A cache that cannot lie: keys cover the code, device and threads; entries are checked."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import warnings

import pandas as pd
import pytest

from toolkit.sweep import SweepWarning, cache_dir, cell_key, code_hash, run_sweep, usable_cores

MODULE = """
import dataclasses

from toolkit.params import param
from toolkit.study import Study

OFFSET = {offset}


@dataclasses.dataclass(frozen=True)
class Config:
    n: tuple[int, ...] = param((10, 20, 30), "sizes", low=1)
    seeds: int = param(2, "seeds", low=1)


def run_cell(cell, device="cpu"):
    return [{{"metric": "m", "value": cell["n"] + cell["seed"] + OFFSET}}]


STUDY = Study(
    name="edited", summary="toy", config=Config, axes={{"n": "n"}}, run_cell=run_cell,
    profiles={{"default": {{}}}}, memory=lambda cell: 1.0,
)
"""


@pytest.fixture
def edited_module(tmp_path, monkeypatch):
    """A study module on sys.path whose source the test can edit."""
    folder = tmp_path / "code"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))

    def load(offset: int):
        (folder / "edited_study.py").write_text(MODULE.format(offset=offset))
        sys.modules.pop("edited_study", None)
        return importlib.import_module("edited_study")

    yield load
    sys.modules.pop("edited_study", None)


def values(result) -> list[float]:
    return pd.read_csv(result.path).sort_values(["n", "seed"])["value"].tolist()


def test_edited_study_code_is_recomputed_not_read_from_cache(edited_module, tmp_path):
    out = tmp_path / "out"
    module = edited_module(0)
    first = run_sweep(module.STUDY, module.Config(), out, progress=False)
    assert (first.cells, first.computed) == (6, 6)
    assert values(first) == [10, 11, 20, 21, 30, 31]
    old_hashes = set(pd.read_csv(first.path, dtype={"code_hash": str})["code_hash"])
    again = run_sweep(module.STUDY, module.Config(), out, progress=False)
    assert again.computed == 0  # unchanged code: every cell from the cache

    module = edited_module(100)  # the researcher edits a constant of the study
    edited = run_sweep(module.STUDY, module.Config(), out, progress=False)
    assert edited.computed == 6
    assert values(edited) == [110, 111, 120, 121, 130, 131]
    hashes = set(pd.read_csv(edited.path, dtype={"code_hash": str})["code_hash"])
    assert hashes == {code_hash("edited_study")} and not hashes & old_hashes


def test_code_hash_follows_the_core_modules_a_study_imports():
    """rf-attention's hash covers toolkit.ridge (imported inside a function) and the runner."""
    from toolkit import sweep

    seen = []
    real = sweep._source_file

    def spy(module):
        seen.append(module)
        return real(module)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sweep, "_source_file", spy)
        sweep.code_hash("studies.rf_attention")
    for module in (
        "studies.rf_attention",
        "toolkit.ridge",
        "toolkit.random_features",
        "toolkit.data.sphere_tokens",
        "toolkit.cell",
        "toolkit.study",
    ):
        assert module in seen
    assert not {"toolkit.cli", "toolkit.sweep", "toolkit.rates", "studies.st_dit"} & set(seen)


def test_code_hash_ignores_documentation_and_sees_library_versions(edited_module, tmp_path):
    from toolkit import sweep

    edited_module(0)
    before = code_hash("edited_study")
    path = tmp_path / "code" / "edited_study.py"
    path.write_text(
        path.read_text().replace(
            "import dataclasses", '"""A docstring."""\n# a comment\nimport dataclasses'
        )
    )
    assert code_hash("edited_study") == before  # documentation is not code
    path.write_text(path.read_text() + "\nimport scipy\n")
    with_scipy = code_hash("edited_study")
    assert with_scipy != before  # a new import is code, and scipy's version is hashed
    real = sweep._versions
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sweep, "_versions", lambda libs: [v + ".post1" for v in real(libs)])
        assert code_hash("edited_study") != with_scipy  # another scipy (or torch) version


def test_key_changes_with_cell_code_device_and_threads(edited_module):
    study = edited_module(0).STUDY
    cell = {"n": 10, "seed": 0}
    base = cell_key(study, cell, "abc", "cpu", 2)
    assert base == cell_key(study, dict(cell), "abc", "cpu", 2)
    others = {
        cell_key(study, {"n": 10, "seed": 1}, "abc", "cpu", 2),
        cell_key(study, cell, "abd", "cpu", 2),
        cell_key(study, cell, "abc", "cuda", 2),
        cell_key(study, cell, "abc", "cpu", 1),
    }
    assert base not in others and len(others) == 4


def test_a_copied_entry_is_detected_and_its_cell_recomputed(edited_module, tmp_path):
    module = edited_module(0)
    out = tmp_path / "out"
    first = run_sweep(module.STUDY, module.Config(), out, progress=False)
    entries = sorted(cache_dir(out, module.STUDY).glob("*.json"))
    by_n = {json.loads(p.read_text())["cell"]["n"]: p for p in entries}
    shutil.copy(by_n[10], by_n[30])  # a valid entry of another cell, copied over
    with pytest.warns(SweepWarning, match="made for another cell"):
        again = run_sweep(module.STUDY, module.Config(), out, progress=False)
    assert again.computed == 1
    assert values(again) == values(first)


def test_a_truncated_entry_is_recomputed_with_one_warning(edited_module, tmp_path):
    module = edited_module(0)
    out = tmp_path / "out"
    first = run_sweep(module.STUDY, module.Config(), out, progress=False)
    entry = sorted(cache_dir(out, module.STUDY).glob("*.json"))[0]
    entry.write_text(entry.read_text()[:25])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = run_sweep(module.STUDY, module.Config(), out, progress=False)
    messages = [str(w.message) for w in caught if w.category is SweepWarning]
    assert len(messages) == 1 and "unreadable" in messages[0]
    assert again.computed == 1 and values(again) == values(first)


def test_entry_with_rows_of_the_wrong_shape_is_recomputed(edited_module, tmp_path):
    module = edited_module(0)
    out = tmp_path / "out"
    run_sweep(module.STUDY, module.Config(), out, progress=False)
    entry = sorted(cache_dir(out, module.STUDY).glob("*.json"))[0]
    data = json.loads(entry.read_text())
    data["rows"] = [{"value": 1.0}]  # no metric
    entry.write_text(json.dumps(data))
    with pytest.warns(SweepWarning):
        again = run_sweep(module.STUDY, module.Config(), out, progress=False)
    assert again.computed == 1


@pytest.mark.slow
@pytest.mark.skipif(usable_cores() < 2, reason="needs two cores for two thread counts")
def test_jobs_1_and_2_use_their_own_cache_entries_and_say_so(tmp_path):
    from studies.rf_attention import STUDY
    from toolkit.params import build

    config = build(STUDY.config, {"heads": (16,), "n": (32, 64), "seeds": 1, "test_size": 64})
    one = run_sweep(STUDY, config, tmp_path, jobs=1, progress=False)
    threads_one = set(pd.read_csv(one.path)["threads"])
    two = run_sweep(STUDY, config, tmp_path, jobs=2, progress=False)
    assert two.computed == 8  # not read from the single-job entries
    threads_two = set(pd.read_csv(two.path)["threads"])
    assert threads_one == {usable_cores()} and threads_two == {usable_cores() // 2}
    assert len(list(cache_dir(tmp_path, STUDY).glob("*.json"))) == 16


@pytest.mark.parametrize(
    "name", ["rf-attention", "conditional-diffusion", "st-dit", "inverse-problem"]
)
@pytest.mark.slow
def test_a_cell_runs_no_report_module(name):
    """REPORT_MODULES are left out of the code hash because no cell runs them: checked on the
    cheapest smoke cell of every study, in a fresh interpreter."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from studies import registry\n"
        "from toolkit.params import build\n"
        "from toolkit.sweep import REPORT_MODULES\n"
        f"study = registry()[{name!r}]\n"
        "config = build(study.config, dict(study.profiles['smoke']))\n"
        "cell = min(study.cells(config), key=study.cost)\n"
        "study.run_cell(cell, 'cpu')\n"
        "print(sorted(m for m in REPORT_MODULES if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_code_hash_is_the_same_in_every_process():
    """Set iteration order changes between processes (string hashing is salted): the hash
    must not depend on it, or no cache entry would ever be found again."""
    import subprocess
    import sys

    code = "from toolkit.sweep import code_hash; print(code_hash('studies.conditional_diffusion'))"
    hashes = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**__import__("os").environ, "PYTHONHASHSEED": str(seed)},
        ).stdout.strip()
        for seed in (1, 2, 3)
    }
    assert len(hashes) == 1 and hashes == {code_hash("studies.conditional_diffusion")}
