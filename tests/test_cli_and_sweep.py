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
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()


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


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_plain_run_writes_into_runs_and_make_into_results():
    """A plain `toolkit run` never touches the committed results/; the Makefile's study
    targets name results/ explicitly, and runs/ is git-ignored."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert cli.DEFAULT_OUT == "runs"
    assert "runs/" in (root / ".gitignore").read_text().split()
    makefile = (root / "Makefile").read_text()
    assert "\nOUT ?= results\n" in makefile
    runs = [line for line in makefile.splitlines() if "$(TOOLKIT) run " in line]
    assert len(runs) >= 7 and all("--out $(OUT)" in line for line in runs)


def test_another_configuration_in_out_needs_force(tmp_path, monkeypatch, capsys):
    assert run(["run", "rf-attention", *TINY, "--out", str(tmp_path)], monkeypatch) == 0
    csv = tmp_path / "rf_attention.csv"
    before = csv.read_bytes()
    entries = sorted((tmp_path / ".cache").rglob("*.json"))
    capsys.readouterr()

    other = [*TINY, "--heads", "8"]
    assert run(["run", "rf-attention", *other, "--out", str(tmp_path)], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --out ") and "--force" in err
    assert "heads 16, here 8" in err
    assert csv.read_bytes() == before
    assert sorted((tmp_path / ".cache").rglob("*.json")) == entries

    # The same configuration again (a rerun, a resume) needs no --force.
    assert run(["run", "rf-attention", *TINY, "--out", str(tmp_path)], monkeypatch) == 0
    forced = ["run", "rf-attention", *other, "--n", "32", "--out", str(tmp_path), "--force"]
    assert run(forced, monkeypatch) == 0
    frame = pd.read_csv(csv)
    assert set(frame["heads"]) == {8} and set(frame["n"]) == {32}


def test_a_smaller_grid_or_other_seeds_count_as_another_configuration(tmp_path):
    from pathlib import Path

    from toolkit.cli import config_for, configuration_change

    results = Path(__file__).resolve().parents[1] / "results"
    config = config_for(STUDY, "default", {})
    # The committed CSV is the default profile's: no change; fewer seeds or n are one.
    assert configuration_change(results / STUDY.output, STUDY.cells(config)) is None
    fewer = config_for(STUDY, "default", {"seeds": "1"})
    assert configuration_change(results / STUDY.output, STUDY.cells(fewer)) == "seed 0,1, here 0"
    smaller = config_for(STUDY, "default", {"n": "256"})
    assert configuration_change(results / STUDY.output, STUDY.cells(smaller)).startswith("n ")
    assert configuration_change(tmp_path / "missing.csv", STUDY.cells(config)) is None
    (tmp_path / "rf_attention.csv").write_bytes(b"\xff\xfe not a csv")
    change = configuration_change(tmp_path / "rf_attention.csv", STUDY.cells(config))
    assert change is not None


def _listed(out: str) -> dict[str, dict[str, str]]:
    """`toolkit list` output as {study: {flag: value}}."""
    listed: dict[str, dict[str, str]] = {}
    for line in out.splitlines():
        if line and not line.startswith(" "):
            study = listed.setdefault(line.split()[0], {})
        elif line.strip():
            flag_, value = line.split()[:2]
            study[flag_] = value
    return listed


def test_list_and_help_show_the_values_a_run_uses(monkeypatch, capsys):
    """For every study and profile, `toolkit list --profile P` shows the values of the
    configuration that `toolkit run --profile P` builds; `run --help` shows the default
    profile's, the values of a plain `toolkit run`."""
    import typer

    from studies import registry
    from toolkit.cli import build_app, config_for
    from toolkit.params import fields, flag

    studies = registry()
    commands = typer.main.get_command(build_app(studies)).commands["run"].commands
    for profile in sorted({p for s in studies.values() for p in s.profiles}):
        assert run(["list", "--profile", profile], monkeypatch) == 0
        listed = _listed(capsys.readouterr().out)
        assert set(listed) == {n for n, s in studies.items() if profile in s.profiles}
        for name in listed:
            config = config_for(studies[name], profile, {})
            for f, _ in fields(studies[name].config):
                value = getattr(config, f.name)
                text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
                assert listed[name][flag(f.name)] == text, (name, profile, f.name)
                if profile == "default":
                    option = next(p for p in commands[name].params if p.name == f.name)
                    assert option.help.endswith(f"default: {text}]"), (name, f.name)


def test_list_with_an_unknown_profile_exits_2(monkeypatch, capsys):
    assert run(["list", "--profile", "huge"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--profile must be one of" in err
