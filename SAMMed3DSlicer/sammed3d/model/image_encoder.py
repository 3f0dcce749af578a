"""The 3D ViT image encoder: 128^3 volume -> 384 x 8^3 embedding.

Same parameters and results as the official `ImageEncoderViT3D`, computed faster:
- the 16^3 patch embedding is one matrix product instead of a strided convolution;
- windowed blocks attend over the 8^3 real tokens plus one analytic "padding" key instead of a zero-padded 14^3
  window (exact; see :mod:`.relative_position`);
- attention runs in torch's fused `scaled_dot_product_attention` with the relative-position bias as its mask.
"""
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .common import LayerNorm3d, MLPBlock
from .relative_position import bias_terms, padding_key_bias, real_key_bias


class PatchEmbed3D(nn.Module):
    """Non-overlapping 16^3 patches -> tokens (B x 1 x D x H x W -> B x d x h x w x C)."""

    def __init__(self, patch_size: int = 16, in_chans: int = 1, embed_dim: int = 768) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, d, h, w = x.shape
        p = self.patch_size
        patches = x.reshape(b, c, d // p, p, h // p, p, w // p, p)
        patches = patches.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, d // p, h // p, w // p, c * p ** 3)
        weight = self.proj.weight.reshape(self.proj.out_channels, -1)
        return F.linear(patches, weight, self.proj.bias)


class Attention(nn.Module):
    """Multi-head self-attention with decomposed relative positions, global or in one zero-padded window."""

    def __init__(self, dim: int, num_heads: int, table_window: int, padded_window: int = 0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.padded_window = padded_window
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_d = nn.Parameter(torch.zeros(2 * table_window - 1, head_dim))
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * table_window - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * table_window - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, h, w, dim = x.shape
        if not d == h == w:
            raise ValueError("the image encoder expects a cubic token grid, got %dx%dx%d" % (d, h, w))
        n, heads = d, self.num_heads
        qkv = self.qkv(x).reshape(b, n ** 3, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # B x heads x N x C
        tables = (self.rel_pos_d, self.rel_pos_h, self.rel_pos_w)
        window = self.padded_window
        if window and window < n:
            raise ValueError("token grid %d is larger than the attention window %d" % (n, window))
        padded = bool(window) and window > n
        q_bias, k_bias, v_bias = self.qkv.bias.reshape(3, 1, heads, 1, -1).to(q.dtype)
        terms = bias_terms(
            q.reshape(b, heads, n, n, n, -1), tables, window if padded else n, q_bias[:, :, 0].expand(b, -1, -1)
        )
        bias = real_key_bias(*terms, n)
        if padded:
            k = torch.cat([k, k_bias.expand(b, -1, -1, -1)], dim=2)
            v = torch.cat([v, v_bias.expand(b, -1, -1, -1)], dim=2)
            bias = torch.cat([bias, padding_key_bias(*terms, n)[..., None]], dim=-1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        out = out.transpose(1, 2).reshape(b, d, h, w, dim)
        return self.proj(out)


class Block3D(nn.Module):
    """Pre-norm transformer block; `window_size` 0 means global attention."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, grid_size: int, window_size: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, table_window=window_size or grid_size, padded_window=window_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), act=nn.GELU)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT3D(nn.Module):
    """ViT over 16^3 patches with absolute + relative positions, then a conv neck to the prompt embedding size."""

    def __init__(
        self,
        img_size: int = 128,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 384,
        window_size: int = 14,
        global_attn_indexes: Sequence[int] = (2, 5, 8, 11),
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed3D(patch_size=patch_size, embed_dim=embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block3D(
                embed_dim,
                num_heads,
                mlp_ratio,
                grid_size=grid,
                window_size=0 if index in global_attn_indexes else window_size,
            )
            for index in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv3d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm3d(out_chans),
            nn.Conv3d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm3d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x 1 x 128^3 -> B x out_chans x 8^3."""
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 4, 1, 2, 3))
