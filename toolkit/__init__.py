"""A toolkit for numerical validation of theory on attention and diffusion models."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_results"]


def __getattr__(name: str) -> Any:
    # load_results needs pandas; importing it lazily keeps `toolkit --help` fast.
    if name == "load_results":
        from toolkit.results import load_results

        return load_results
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
