"""SAM's 2D ViT image encoder: 1024^2 RGB slice -> 256 x 64^2 embedding (state-dict keys of `ImageEncoderViT`).

Same parameters and results as segment-anything's encoder, computed faster:
- attention runs in torch's fused `scaled_dot_product_attention`, the decomposed relative-position terms added as
  its mask; global blocks build that mask for a band of query rows at a time, so the 4096 x 4096 attention matrix
  and bias are never held whole;
- windowed blocks compute q/k/v and the output projection for the real tokens only: a zero-padded token's q/k/v is
  exactly the qkv bias, so the 64 -> 70 padding is filled with it after the projection, and padded outputs (which the
  official code discards) are never projected;
- float32 CPU inference takes `encoder_cpu.block_forward` instead: row chunks, fused oneDNN linears (not when
  traced), global attention as banded GEMMs (see there).
"""
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...model.common import LayerNorm3d as LayerNorm2d  # channel LayerNorm: the same math for 2D maps
from ...model.common import MLPBlock
from ...model.cpu_fused import cpu_inference
from ...model.relative_position import relative_table
from .encoder_cpu import block_forward

#: Bias elements (floats) one attention call may hold; attention splits its queries into bands of
#: whole token rows to stay below (256 MiB in fp32, reused across bands; a quarter of one
#: 4096^2 x 12-head matrix, of which the official code holds several at once).
BIAS_BUDGET = 1 << 26


class PatchEmbed(nn.Module):
    """Non-overlapping 16^2 patches -> tokens (B x 3 x H x W -> B x h x w x C)."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # contiguous tokens: a permuted view would hand its channel-first strides to the whole residual stream
        # (the sum with pos_embed keeps them), and every LayerNorm and Linear after would copy it first
        return self.proj(x).permute(0, 2, 3, 1).contiguous()


class Attention(nn.Module):
    """Multi-head self-attention with decomposed relative positions (tables for a `table_size`^2 token grid)."""

    def __init__(self, dim: int, num_heads: int, table_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * table_size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * table_size - 1, head_dim))

    def forward(self, x: torch.Tensor, window: int = 0) -> torch.Tensor:
        """x: B x H x W x C (after norm1); window 0: global attention, else zero-padded windows of that size."""
        b, h, w, dim = x.shape
        heads = self.num_heads
        qkv = self.qkv(x)
        window_h, window_w = (window, window) if window else (h, w)
        hp, wp = h + (-h) % window_h, w + (-w) % window_w
        if (hp, wp) != (h, w):  # the official code pads zeros before qkv: a padded token's q, k, v = the bias
            padded = self.qkv.bias.to(qkv.dtype).expand(b, hp, wp, 3 * dim).clone()
            padded[:, :h, :w] = qkv
            qkv = padded
        rows, cols = hp // window_h, wp // window_w
        # windows and heads split in one copy per q/k/v: 3 x B x rows x cols x heads x window_h x window_w x C
        qkv = qkv.view(b, rows, window_h, cols, window_w, 3, heads, dim // heads).permute(5, 0, 1, 3, 6, 2, 4, 7)
        n = b * rows * cols
        q, k, v = (t.reshape(n, heads, window_h * window_w, dim // heads) for t in qkv.unbind(0))
        out = self._attend(q, k, v, window_h, window_w)
        # back to B x Hp x Wp x C in one copy
        out = out.view(b, rows, cols, heads, window_h, window_w, dim // heads).permute(0, 1, 4, 2, 5, 3, 6)
        out = out.reshape(b, hp, wp, dim)
        if (hp, wp) != (h, w):
            out = out[:, :h, :w]
        return self.proj(out)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid_h: int, grid_w: int,
                bias_budget: Optional[int] = None) -> torch.Tensor:
        """Attention of N x heads x (h*w) x C tokens on an h x w grid, relative-position bias in row bands."""
        n, heads, tokens, channels = q.shape
        if self.rel_pos_h.shape[0] != 2 * grid_h - 1 or self.rel_pos_w.shape[0] != 2 * grid_w - 1:
            raise ValueError("relative-position tables of %d/%d rows do not fit a %dx%d token grid"
                             % (self.rel_pos_h.shape[0], self.rel_pos_w.shape[0], grid_h, grid_w))
        rel_h = relative_table(grid_h, grid_h, self.rel_pos_h).to(q.dtype)  # qh x kh x C
        rel_w = relative_table(grid_w, grid_w, self.rel_pos_w).to(q.dtype)
        q_grid = q.reshape(n, heads, grid_h, grid_w, channels)
        term_h = torch.einsum("nahwc,hkc->nahwk", q_grid, rel_h)  # bias along key rows: n heads qh qw kh
        term_w = torch.einsum("nahwc,wkc->nahwk", q_grid, rel_w)  # bias along key columns: n heads qh qw kw
        budget = BIAS_BUDGET if bias_budget is None else bias_budget
        bands = -(-n * heads * grid_h * grid_w * tokens // budget)  # ceil: equal bands below the budget
        rows = -(-grid_h // max(1, bands))
        # One bias buffer reused for every band: fresh large tensors cost page faults, a reused one does not.
        buffer = q.new_empty(n * heads * rows * grid_w * tokens)
        out = q.new_empty(q.shape) if rows < grid_h else None
        for start in range(0, grid_h, rows):
            stop = min(grid_h, start + rows)
            shape = (n, heads, stop - start, grid_w, grid_h, grid_w)
            bias = buffer[: n * heads * (stop - start) * grid_w * tokens].view(shape)
            torch.add(term_h[:, :, start:stop, :, :, None], term_w[:, :, start:stop, :, None, :], out=bias)
            bias = bias.view(n, heads, (stop - start) * grid_w, tokens)
            if out is None:
                return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            band = slice(start * grid_w, stop * grid_w)
            out[:, :, band] = F.scaled_dot_product_attention(q[:, :, band], k, v, attn_mask=bias)
        return out


class Block(nn.Module):
    """Pre-norm transformer block; `window_size` 0 means global attention."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, grid_size: int, window_size: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, table_size=window_size or grid_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), act=nn.GELU)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if cpu_inference(x):
            return block_forward(self, x)
        x = x + self.attn(self.norm1(x), self.window_size)
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    """ViT over 16^2 patches with absolute + relative positions, then a conv neck to the prompt embedding size."""

    def __init__(
        self,
        img_size: int = 1024,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        window_size: int = 14,
        global_attn_indexes: Sequence[int] = (2, 5, 8, 11),
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size=patch_size, embed_dim=embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, grid_size=grid,
                  window_size=0 if index in global_attn_indexes else window_size)
            for index in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x 1024^2 -> B x out_chans x 64^2."""
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
