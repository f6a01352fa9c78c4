"""A toolkit for numerical validation of theory on attention and diffusion models."""

__version__ = "0.1.0"

from toolkit.results import load_results  # noqa: E402

__all__ = ["__version__", "load_results"]
