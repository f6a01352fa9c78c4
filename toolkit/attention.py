"""Attention layers and a diffusion transformer for sequences (DiT style) [DiT-GP].

Sections in reading order: attention, modulation, DiT block, final layer, the sequence DiT,
and the structural baseline (an MLP on the flattened sequence with the same parameter
budget). Both networks predict the noise eps of x_t = alpha_t x_0 + sigma_t eps, from
x_t: (batch, frames, dim) and t: (batch,).

Attention activation:
- softmax: w_ij = softmax_j(q_i . k_j / sqrt(d_head)); each row sums to 1.
- relu:    w_ij = relu(q_i . k_j / sqrt(d_head)) / N, normalised by the sequence length N
  as in the theory [DiT-GP], so row i sums to the mean of relu(q_i . k_j / sqrt(d_head))
  over j (not to 1); an all-negative row attends to nothing.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from toolkit.embeddings import TimeEmbedding, sinusoidal_embedding

ACTIVATIONS = ("relu", "softmax")
# Time features of both sequence networks: 32 frequencies, 0.05 to 3 per unit of log t.
DIT_TIME_FREQUENCIES = (32, -1.3, 0.5)


# --- Attention ----------------------------------------------------------------------------


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention; `keep_weights = True` stores the last weights in `weights`."""

    def __init__(self, width: int, heads: int, activation: str = "softmax") -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width must be a multiple of heads (got {width} and {heads})")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {', '.join(ACTIVATIONS)} (got {activation!r})"
            )
        self.heads, self.activation = heads, activation
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.keep_weights = False
        self.weights: torch.Tensor | None = None  # (batch, heads, N, N) when kept

    def attention_weights(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """q, k: (batch, heads, N, d_head) -> w: (batch, heads, N, N)."""
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if self.activation == "softmax":
            return scores.softmax(dim=-1)
        return torch.relu(scores) / scores.shape[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, width = x.shape
        # (batch, N, 3 width) -> three (batch, heads, N, d_head)
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        w = self.attention_weights(q, k)
        if self.keep_weights:
            self.weights = w.detach()
        out = (w @ v).transpose(1, 2).reshape(b, n, width)
        return self.proj(out)


# --- Modulation (embedders: toolkit.embeddings) ---------------------------------------------


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x (batch, N, width) normalised elsewhere, shift/scale (batch, width)."""
    return x * (1 + scale[:, None]) + shift[:, None]


# --- DiT block and final layer -----------------------------------------------------------


def _norm(width: int, norm: bool) -> nn.Module:
    """DiT's pre-norm, or none: LayerNorm makes a token's features scale-free, which a
    score that is linear in x (Gaussian data) cannot afford (see SequenceDiT)."""
    return nn.LayerNorm(width, elementwise_affine=False, eps=1e-6) if norm else nn.Identity()


class FeedForward(nn.Module):
    def __init__(self, width: int, ratio: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(width, ratio * width)
        self.out = nn.Linear(ratio * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The exact (erf) GELU: on the CPU the tanh approximation costs about twice as much
        # (2048 x 128 activations, forward and backward: 1.5 ms against 0.7 ms once warm),
        # ~4% of a DiT step (benchmarks/diffusion_steps.py).
        return self.out(nn.functional.gelu(self.fc(x)))


class DiTBlock(nn.Module):
    """Attention and MLP, each pre-normed, modulated and gated by the time embedding.

    adaLN-Zero: the modulation is initialised to zero, so gates are 0 and each block starts
    as the identity map."""

    def __init__(self, width: int, heads: int, activation: str, norm: bool = True) -> None:
        super().__init__()
        self.norm1 = _norm(width, norm)
        self.attn = MultiHeadAttention(width, heads, activation)
        self.norm2 = _norm(width, norm)
        self.mlp = FeedForward(width)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """Modulated norm and a linear map from width back to the frame dimension."""

    def __init__(self, width: int, dim: int, norm: bool = True) -> None:
        super().__init__()
        self.norm = _norm(width, norm)
        self.linear = nn.Linear(width, dim)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


# --- The sequence DiT ----------------------------------------------------------------------


class SequenceDiT(nn.Module):
    """One token per frame: x_t (batch, N, d) -> eps_hat (batch, N, d)."""

    def __init__(
        self,
        frames: int,
        dim: int,
        width: int = 64,
        depth: int = 2,
        heads: int = 4,
        activation: str = "softmax",
        norm: bool = True,
    ) -> None:
        super().__init__()
        self.frame_embed = nn.Linear(dim, width)
        pos = sinusoidal_embedding(torch.arange(frames), width)
        self.register_buffer("pos_embed", pos[None], persistent=False)  # (1, N, width), fixed
        self.time_embed = TimeEmbedding(width, *DIT_TIME_FREQUENCIES)
        self.blocks = nn.ModuleList(DiTBlock(width, heads, activation, norm) for _ in range(depth))
        self.final = FinalLayer(width, dim, norm)
        self.initialize()

    def initialize(self) -> None:
        """Xavier linear layers, then adaLN-Zero: zero modulation and a zero output layer."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for block in [*self.blocks, self.final]:
            nn.init.zeros_(block.ada[-1].weight)
            nn.init.zeros_(block.ada[-1].bias)
        nn.init.zeros_(self.final.linear.weight)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        c = self.time_embed(t)  # (batch, width)
        h = self.frame_embed(x) + self.pos_embed  # (batch, N, width)
        for block in self.blocks:
            h = block(h, c)
        return self.final(h, c)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Attention weights of every layer and head: (layers, batch, heads, N, N)."""
        layers = [block.attn for block in self.blocks]
        for attn in layers:
            attn.keep_weights = True
        try:
            self(x, t)
            return torch.stack([attn.weights for attn in layers])
        finally:
            for attn in layers:
                attn.keep_weights, attn.weights = False, None


# --- Baseline: an MLP on the flattened sequence, same parameter budget --------------------


class SequenceMLP(nn.Module):
    """x_t (batch, N, d) flattened, concatenated with a time embedding, `depth` hidden layers."""

    def __init__(self, frames: int, dim: int, hidden: int, depth: int = 2, time_width: int = 64):
        super().__init__()
        self.time_embed = TimeEmbedding(time_width, *DIT_TIME_FREQUENCIES)
        sizes = [frames * dim + time_width] + [hidden] * depth
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, frames * dim))
        nn.init.zeros_(self.net[-1].weight)  # start at eps_hat = 0, like the DiT
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x.flatten(1), self.time_embed(t)], dim=-1)
        return self.net(h).view_as(x)

    @classmethod
    def matched(cls, budget: int, frames: int, dim: int, depth: int = 2) -> SequenceMLP:
        """The MLP whose parameter count is closest to `budget` (hidden width searched)."""
        best = min(
            range(1, 4097),
            key=lambda h: abs(_mlp_parameters(h, frames, dim, depth) - budget),
        )
        return cls(frames, dim, best, depth)


def _mlp_parameters(hidden: int, frames: int, dim: int, depth: int, time_width: int = 64) -> int:
    time = 64 * time_width + time_width + time_width * time_width + time_width
    k = frames * dim
    first = (k + time_width) * hidden + hidden
    middle = (depth - 1) * (hidden * hidden + hidden)
    return time + first + middle + hidden * k + k


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
