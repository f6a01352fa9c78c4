"""Deterministic random generators derived from a seed and a label path.

Every random draw in a cell comes from a generator named by (seed, label, ...), so a
cell is a pure function of its parameters: the same numbers on every machine, in any
order, on any worker. Draws are made on the CPU and moved to the compute device, so
CPU and GPU runs see identical data.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *labels: object) -> int:
    """A 63-bit integer seed that depends on `seed` and every label, stably across runs."""
    text = "/".join([str(int(seed)), *map(str, labels)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def generator(seed: int, *labels: object) -> torch.Generator:
    """A CPU torch generator seeded by `derive_seed(seed, *labels)`."""
    g = torch.Generator(device="cpu")
    g.manual_seed(derive_seed(seed, *labels))
    return g
