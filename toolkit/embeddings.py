"""Embeddings shared by the networks: diffusion time and frame position.

- TimeEmbedding: sin/cos of log t at log-spaced frequencies, then a two-layer SiLU MLP.
  log t spreads [t0, T] (three or four decades) evenly over the features; low
  frequencies keep the map smooth, so it extrapolates where few training times fall.
- sinusoidal_embedding: the Transformer's fixed features of integer positions.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class TimeEmbedding(nn.Module):
    """t: (batch,) -> (batch, width), from `frequencies` frequencies 10^lowest .. 10^highest
    (per unit of log t)."""

    def __init__(
        self, width: int, frequencies: int = 16, lowest: float = -1.0, highest: float = 1.0
    ) -> None:
        super().__init__()
        freqs = torch.logspace(lowest, highest, frequencies)
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * frequencies, width), nn.SiLU(), nn.Linear(width, width)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        phase = torch.log(t).unsqueeze(1) * self.freqs  # (batch, frequencies)
        return self.mlp(torch.cat([phase.sin(), phase.cos()], dim=1))


def sinusoidal_embedding(positions: torch.Tensor, width: int) -> torch.Tensor:
    """Transformer sinusoidal features of (integer) frame indices: (N,) -> (N, width)."""
    half = width // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    angles = positions.to(torch.float64)[:, None] * freqs[None]
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if width % 2:
        emb = torch.cat([emb, torch.zeros(len(positions), 1, dtype=torch.float64)], dim=-1)
    return emb.float()
