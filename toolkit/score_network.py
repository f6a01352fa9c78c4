"""A conditional score network for classifier-free guidance (trained by diffusion.train_dsm).

ConditionalScoreNet predicts the noise eps_hat(x_t, t, y) (the score is -eps_hat / sigma_t,
see toolkit.diffusion), or, with parametrisation "score", minus the score f(x_t, t, y) (then
eps_hat = sigma_t f: toolkit.diffusion.eps_prediction). Sections in reading order:
embedders, trunk block, model.
- time: toolkit.embeddings.TimeEmbedding (16 frequencies, 0.1 to 10 per unit of log t);
- condition: a linear embedding of y, replaced by a learned null embedding where the
  classifier-free-guidance mask (toolkit.diffusion.token_drop) is True;
- trunk: residual MLP blocks (pre-LayerNorm, SiLU) on embed(x) + embed(t) + embed(y).
"""

from __future__ import annotations

import torch
from torch import nn

from toolkit.diffusion import PARAMETRISATIONS, OUProcess, eps_to_score
from toolkit.embeddings import TimeEmbedding


class ConditionEmbedding(nn.Module):
    """Linear embedding of y, or the learned null token where drop: -> (batch, width)."""

    def __init__(self, cond_dim: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cond_dim, width)
        self.null = nn.Parameter(torch.zeros(width))

    def forward(self, y: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        return torch.where(drop.unsqueeze(1), self.null, self.proj(y))


class Block(nn.Module):
    """Residual MLP block: h + W2 silu(W1 LayerNorm(h))."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.mlp(self.norm(h))


class ConditionalScoreNet(nn.Module):
    """eps_hat(x_t, t, y, drop): x (batch, d), t (batch,), y (batch, d_y), drop (batch,) bool."""

    def __init__(
        self, dim: int, cond_dim: int, width: int = 64, depth: int = 2, parametrisation: str = "eps"
    ) -> None:
        super().__init__()
        if parametrisation not in PARAMETRISATIONS:
            raise ValueError(
                f"parametrisation must be one of {', '.join(PARAMETRISATIONS)} "
                f"(got {parametrisation!r})"
            )
        self.parametrisation = parametrisation  # what forward() outputs: eps or -score
        self.embed_x = nn.Linear(dim, width)
        self.embed_t = TimeEmbedding(width)
        self.embed_y = ConditionEmbedding(cond_dim, width)
        self.blocks = nn.Sequential(*(Block(width) for _ in range(depth)))
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, drop: torch.Tensor
    ) -> torch.Tensor:
        h = self.embed_x(x) + self.embed_t(t) + self.embed_y(y, drop)
        return self.head(self.blocks(h))

    @torch.no_grad()
    def score(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, process: OUProcess
    ) -> torch.Tensor:
        """The score in x's dtype (-eps_hat / sigma_t, or minus the output for the "score"
        parametrisation); y None is the null (unconditional) score."""
        dtype = next(self.parameters()).dtype
        if y is None:
            y = torch.zeros(x.shape[0], self.embed_y.proj.in_features, device=x.device)
            drop = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        else:
            drop = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        out = self(x.to(dtype), t.to(dtype), y.to(dtype), drop)
        if self.parametrisation == "score":
            return (-out).to(x.dtype)
        return eps_to_score(out, t.to(dtype), process).to(x.dtype)
