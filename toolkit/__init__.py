"""A toolkit for numerical validation of theory on attention and diffusion models.

    import toolkit
    curves = toolkit.load_results("results")               # error against n, every study
    maps = toolkit.load_results("results", kind="other")   # attention maps, noise floors, ...

The columns are documented in docs/results.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__version__ = "0.1.0"

__all__ = ["__version__", "load_results"]


def load_results(
    path: str | os.PathLike,
    kind: str = "curves",
    studies: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The study CSVs at `path` (a results directory such as results/ or runs/, or one
    <slug>.csv) as one DataFrame; see toolkit.results.read_results.

    kind: "curves" (default: rows whose metric is a curve in n, one per model, n, seed,
    metric and setting), "other" (each study's non-curve rows: st-dit's attention maps
    attn_map with row and col, noise floors, ...) or "all". studies: name -> Study
    (default: the registered studies, studies.registry()).
    """
    # Imported here: pandas is slow to import, and `toolkit --help` should stay fast. Like
    # the CLI, this entry point supplies the registry to a core that knows no study.
    from toolkit.results import read_results

    if studies is None:
        from studies import registry

        studies = registry()
    return read_results(path, studies, kind)
