"""The registry of studies: each module here defines STUDY, a toolkit.study.Study.

Adding a study is one new module, studies/<slug>.py with `STUDY = Study(name=...)` whose
slug (the name with "_" for "-") is the module's name, and one entry in MODULES. Study
modules import torch inside their functions, so loading the registry stays fast.
"""

from __future__ import annotations

from importlib import import_module

from toolkit.study import Study

MODULES = ("rf_attention", "conditional_diffusion", "st_dit", "inverse_problem")


def registry() -> dict[str, Study]:
    """Study name -> Study, in the order of MODULES."""
    studies = [import_module(f"{__name__}.{module}").STUDY for module in MODULES]
    return {study.name: study for study in studies}
