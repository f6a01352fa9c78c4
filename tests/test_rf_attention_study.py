"""The rf-attention study on its smoke scale: the paper's orderings, reproducibly."""

import pytest

from studies import rf_attention
from toolkit.params import ParameterError, build


def errors(model, n=1024, heads=512, seed=0, targets=("inner1", "inner2", "first-key")):
    cell = {
        "model": model,
        "n": n,
        "seed": seed,
        "heads": heads,
        "dim": 8,
        "keys": 8,
        "bias": 1.0,
        "noise": 0.0,
        "test_size": 1024,
        "targets": list(targets),
    }
    return {r["target"]: r["value"] for r in rf_attention.run_cell(cell)}


@pytest.fixture(scope="module")
def smoke():
    return {m: errors(m) for m in ("rfa", "brfa", "rfmlp")}


def test_rfa_beats_rfmlp_on_inner1_by_a_clear_factor(smoke):
    # Measured: rfa ~0.02, rfmlp ~1.0 (no better than predicting zero).
    assert smoke["rfmlp"]["inner1"] / smoke["rfa"]["inner1"] > 10


def test_brfa_beats_rfa_on_inner2(smoke):
    # Measured: brfa ~0.73, rfa ~1.0 at n = 1024, M = 512.
    assert smoke["brfa"]["inner2"] < 0.85 * smoke["rfa"]["inner2"]


def test_no_model_learns_first_key_at_smoke_scale(smoke):
    # first-key is not permutation invariant: averaged keys cannot see which key is first.
    assert smoke["rfa"]["first-key"] > 0.9


def test_cells_are_reproducible_and_seeds_differ():
    a = errors("rfa", n=256, heads=64)
    assert errors("rfa", n=256, heads=64) == a
    assert errors("rfa", n=256, heads=64, seed=1) != a


def test_label_noise_increases_excess_risk():
    base = dict(model="rfa", n=512, seed=0, heads=128, dim=8, keys=8, bias=1.0, test_size=512)
    clean = rf_attention.run_cell({**base, "noise": 0.0, "targets": ["inner1"]})[0]["value"]
    noisy = rf_attention.run_cell({**base, "noise": 1.0, "targets": ["inner1"]})[0]["value"]
    assert noisy > 1.5 * clean


def test_cells_cover_the_grid():
    study = rf_attention.STUDY
    config = build(study.config, {"n": (16, 32), "seeds": 2, "models": ("rfa", "rfmlp")})
    cells = study.cells(config)
    assert study.grid_size(config) == len(cells)
    assert len(cells) == 2 * 2 * 2
    assert {(c["model"], c["n"], c["seed"]) for c in cells} == {
        (m, n, s) for m in ("rfa", "rfmlp") for n in (16, 32) for s in (0, 1)
    }


@pytest.mark.parametrize(
    "overrides,flag",
    [
        ({"heads": 0}, "--heads"),
        ({"n": (1, 8)}, "--n"),
        ({"targets": ("inner9",)}, "--targets"),
        ({"models": ()}, "--models"),
        ({"noise": -1.0}, "--noise"),
        ({"dim": 1}, "--dim"),
    ],
)
def test_config_validation_names_the_flag(overrides, flag):
    with pytest.raises(ParameterError, match=flag):
        build(rf_attention.STUDY.config, overrides)


def test_targets_and_models_are_those_of_the_data_and_the_model_table():
    from toolkit.data.sphere_tokens import TARGETS

    assert rf_attention.TARGETS == TARGETS
    config = rf_attention.STUDY.config()
    assert config.targets == TARGETS and config.models == tuple(rf_attention.MODELS)
    assert rf_attention.STUDY.output == "rf_attention.csv"
