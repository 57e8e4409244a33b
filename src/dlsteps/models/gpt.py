"""``tiny_gpt``: a small causal transformer for ``task: language_model``.

Token and position embeddings, ``n_layers`` pre-norm blocks (causal self-attention and an
MLP), a final norm and a head tied to the token embedding. It returns logits ``[B, V, T]``
(classes second, as ``cross_entropy`` takes them, like a segmentation model's
``[B, C, H, W]``). The defaults stay under 1M parameters for a character vocabulary and
have no dropout: the ladder starts plain, and scale-up turns ``dropout`` on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions <= t only."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not a multiple of n_heads {n_heads}")
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        return self.drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model),
            nn.GELU(),
            nn.Linear(4 * d_model, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """Token ids ``[B, T]`` -> next-token logits ``[B, V, T]``."""

    def __init__(
        self,
        num_classes: int,
        block_size: int = 128,
        d_model: int = 128,
        n_layers: int = 4,
        n_heads: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.block_size = block_size
        self.tokens = nn.Embedding(num_classes, d_model)
        self.positions = nn.Embedding(block_size, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes, bias=False)
        self.head.weight = self.tokens.weight  # tied: fewer parameters, a better start
        self.apply(_init)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled down
            if name.endswith(("proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, std=0.02 / (2 * n_layers) ** 0.5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        if t > self.block_size:
            raise ValueError(
                f"a sequence of {t} tokens is longer than block_size {self.block_size}"
            )
        pos = torch.arange(t, device=ids.device)
        x = self.drop(self.tokens(ids) + self.positions(pos))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x)).transpose(1, 2)


def _init(module: nn.Module) -> None:
    """Small weights: a fresh model predicts nearly uniform tokens (loss ln V at init)."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def tiny_gpt(
    num_classes: int = 256,
    block_size: int = 128,
    d_model: int = 128,
    n_layers: int = 4,
    n_heads: int = 4,
    dropout: float = 0.0,
) -> nn.Module:
    """``num_classes`` is the vocabulary size (from the data set); ``block_size`` the
    longest sequence it takes (from ``data.args.block_size``)."""
    return TinyGPT(num_classes, block_size, d_model, n_layers, n_heads, dropout)
