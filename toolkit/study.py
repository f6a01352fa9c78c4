"""The contract between the core and a study: one `Study` object per study module.

A study module (`studies/<name>.py`) declares its parameters as a frozen dataclass
(toolkit.params), runs one cell into tidy rows, and ends with one `STUDY = Study(...)`
that names everything the core needs. The sweep runner, the rate fitter, the report and
the CLI read only this object (the registry in `studies/__init__.py` maps names to
modules; the CLI passes it on), so a new study is one module and one registry line.

    Study(
        name          CLI name, e.g. "rf-attention". Every file name derives from it
                      (`slug` = name with "_" for "-"): the module studies/<slug>.py, the
                      CSV <slug>.csv, the cache .cache/<slug>/, figures <slug>_*.png.
        summary       the claim under test in a sentence or two (shown by --help)
        config        the parameter dataclass; its fields are the flags and CSV columns
        axes          {list-valued config field: cell key}: every combination of their
                      values and of seed in range(config.seeds) is one cell; every other
                      field is copied into each cell (toolkit.sweep.grid_cells)
        run_cell      run_cell(cell, device) -> rows (dicts with at least metric, value);
                      a pure function of the cell (all randomness seeded from it)
        profiles      {"smoke": {...}, "default": {...}, "paper": {...}} field overrides
        memory        memory(cell) -> estimated peak bytes of one cell, from its parameters
                      (checked against --max-memory before any work)
        cost          cost(cell) -> relative run time (weights the progress bar's ETA)
        readme        the study's document, docs/studies/<name>.md (shown by --help)
      report (toolkit.rates, toolkit.report), all optional:
        claims        the claims under test, as Markdown for REPORT.md
        rate_groups   CSV columns that, with model and metric, identify one curve in n
        theory(setting) -> toolkit.stats.Claim (the theory's exponent, the kind of claim
                      and its margin) for one curve, or None
        floors        {metric: metric recording its additive floor at the same setting, n,
                      seed} (fitted as log(value - floor))
        resolutions   {metric: metric recording its standard error} (points within one SE
                      of zero are not fitted)
        model_free_metrics  metrics identical for every model (fitted once)
        non_rate_metrics  metrics that are not curves in n (never fitted)
        comparisons(frame) -> DataFrame with COMPARISON_COLUMNS: claims that are orderings
        figures(frame) -> {file name: PNG bytes} the study draws itself (the report writes
                      them, atomically, after everything else has been computed)
    )

This module imports nothing heavy (no torch, no pandas), so `toolkit --help` and
`toolkit list` stay fast; study modules keep their torch imports inside functions.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Cell = dict[str, Any]
Row = dict[str, Any]

# The columns of a study's comparisons table (claims that are orderings between models).
COMPARISON_COLUMNS = (
    "study",
    "claim",
    "setting",
    "statistic",
    "value",
    "ci_low",
    "ci_high",
    "verdict",
)


def unit_cost(cell: Cell) -> float:
    """Every cell costs the same (the default cost model)."""
    return 1.0


@dataclass(frozen=True)
class Study:
    """Everything the core knows about a study (module docstring)."""

    name: str
    summary: str
    config: type
    axes: Mapping[str, str]
    run_cell: Callable[[Cell, str], list[Row]]
    profiles: Mapping[str, Mapping[str, Any]]
    memory: Callable[[Cell], float]
    cost: Callable[[Cell], float] = unit_cost
    readme: str = ""
    claims: str = ""
    rate_groups: tuple[str, ...] = ()
    theory: Callable[[dict[str, Any]], Any] | None = None
    floors: Mapping[str, str] = field(default_factory=dict)
    resolutions: Mapping[str, str] = field(default_factory=dict)
    model_free_metrics: tuple[str, ...] = ()
    non_rate_metrics: tuple[str, ...] = ()
    comparisons: Callable[[Any], Any] | None = None
    figures: Callable[[Any], dict[str, bytes]] | None = None

    def __post_init__(self) -> None:
        names = {f.name for f in dataclasses.fields(self.config)}
        if "seeds" not in names:
            raise ValueError(f"study {self.name}: its config needs a `seeds` field")
        unknown = sorted(set(self.axes) - names)
        if unknown:
            raise ValueError(f"study {self.name}: axes {unknown} are not config fields")
        for profile, overrides in self.profiles.items():
            bad = sorted(set(overrides) - names)
            if bad:
                raise ValueError(f"study {self.name}: profile {profile} sets unknown {bad}")

    @property
    def slug(self) -> str:
        """The name as an identifier: module, CSV, cache and figure names derive from it."""
        return self.name.replace("-", "_")

    @property
    def output(self) -> str:
        """The CSV file name, e.g. rf_attention.csv."""
        return f"{self.slug}.csv"

    @property
    def module(self) -> str:
        """The module that defines the study (its source is part of every cache key)."""
        return self.run_cell.__module__

    def figure_name(self, what: str) -> str:
        """A figure file name, e.g. rf_attention_rel_test_error.png."""
        safe = "".join(c if c.isalnum() or c in "_.-" else "_" for c in what)
        return f"{self.slug}_{safe}.png"

    def grid_size(self, config: Any) -> int:
        """The number of cells of `config`, computed without building them."""
        sizes = [len(getattr(config, name)) for name in self.axes]
        return math.prod(sizes) * int(config.seeds)

    def cells(self, config: Any) -> list[Cell]:
        """The cells of `config`: grid_cells over the study's axes."""
        return grid_cells(config, self.axes)


def grid_cells(config: Any, axes: Mapping[str, str]) -> list[Cell]:
    """One cell per combination of the list-valued fields in `axes` (field name -> the
    cell's key, e.g. {"n": "n", "models": "model"}, outermost first) and per seed in
    range(config.seeds). n runs largest first, so parallel workers finish together. Every
    other field is copied into each cell (tuples as lists, which the cell handles in one go).
    """
    names = [f.name for f in dataclasses.fields(config)]
    shared = {
        name: list(value) if isinstance(value, tuple) else value
        for name in names
        if name not in axes and name != "seeds"
        for value in [getattr(config, name)]
    }
    values = [
        sorted(getattr(config, name), reverse=True) if name == "n" else getattr(config, name)
        for name in axes
    ]
    return [
        {**dict(zip(axes.values(), combo[:-1], strict=True)), "seed": combo[-1], **shared}
        for combo in itertools.product(*values, range(config.seeds))
    ]
