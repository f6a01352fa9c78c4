"""A conditional score network for classifier-free guidance (trained by diffusion.train_dsm).

ConditionalScoreNet predicts the noise eps_hat(x_t, t, y) (the score is -eps_hat / sigma_t,
see toolkit.diffusion), or, with parametrisation "score", minus the score f(x_t, t, y) (then
eps_hat = sigma_t f: toolkit.diffusion.eps_prediction). Sections in reading order:
embedders, trunk block, model.
- time: toolkit.embeddings.TimeEmbedding (16 frequencies, 0.1 to 10 per unit of log t);
- condition: a linear embedding of y, replaced by a learned null embedding where the
  classifier-free-guidance mask (toolkit.diffusion.token_drop) is True;
- optional (fourier > 0): random Fourier features of (x, y) (Tancik et al. 2020, y zeroed
  where masked), sin and cos of (x, y) B with B fixed and Gaussian of standard deviation
  fourier_scale, linearly embedded. An MLP on the raw inputs fits high frequencies slowly
  (spectral bias); the features set the resolution the network reaches in its steps;
- trunk: residual MLP blocks (pre-LayerNorm, SiLU) on the sum of the embeddings.
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


class FourierFeatures(nn.Module):
    """sin and cos of z B, B: (in_dim, features) fixed N(0, scale^2), then a linear map:
    z (batch, in_dim) -> (batch, width)."""

    def __init__(self, in_dim: int, features: int, scale: float, width: int) -> None:
        super().__init__()
        self.register_buffer("projection", scale * torch.randn(in_dim, features))
        self.proj = nn.Linear(2 * features, width)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        phase = z @ self.projection
        return self.proj(torch.cat([phase.sin(), phase.cos()], dim=1))


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
        self,
        dim: int,
        cond_dim: int,
        width: int = 64,
        depth: int = 2,
        parametrisation: str = "eps",
        fourier: int = 0,
        fourier_scale: float = 1.0,
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
        self.embed_xy = (
            FourierFeatures(dim + cond_dim, fourier, fourier_scale, width) if fourier else None
        )
        self.blocks = nn.Sequential(*(Block(width) for _ in range(depth)))
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, drop: torch.Tensor
    ) -> torch.Tensor:
        h = self.embed_x(x) + self.embed_t(t) + self.embed_y(y, drop)
        if self.embed_xy is not None:
            hidden = y.masked_fill(drop.unsqueeze(1), 0.0)
            h = h + self.embed_xy(torch.cat([x, hidden], dim=1))
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
