"""One ViT block of SAM's image encoder for float32 CPU inference: the same results, with less memory traffic.

The plain block (`image_encoder.Block`) is what GPUs, autograd and autocast run. A TorchScript trace (the Slicer
module's GIL-free encoder) records this chunked block with plain linear layers (oneDNN's fused ops do not trace). On a CPU its time goes to
GEMMs (at the machine's peak already), to the attention's 4096 x 4096 scores, and to memory: every block allocates
~150 MiB of fresh temporaries (qkv, the padded windows, the bias mask, the MLP hidden layer), which the C allocator
maps from the kernel each time (glibc maps allocations over 32 MiB afresh; ~0.5 s of page faults per slice). Here:

- norm1 + qkv, the output projection + residual and norm2 + MLP + residual run over chunks of token rows (<= 16 rows
  of 64 tokens), so no temporary exceeds ~13 MiB and each chunk's GEMM output is still in cache for the next step;
  the linear layers are oneDNN GEMMs with the GELU or the residual sum fused (`model.cpu_fused`);
- q, k and v go straight from each chunk into head-major (global) or window-major (windowed) tensors; a zero-padded
  window token's q/k/v is exactly the qkv bias, so the padding is filled with it and never computed;
- global attention runs as GEMMs over bands of query rows of one head (4 MiB of scores, cache-resident): scores =
  (q * scale) @ k^T, + rel_h[query, key row] + rel_w[query, key column] by broadcasting, softmax in place, @ v;
  the official order of operations, and no bias matrix in memory. Windowed attention (196 tokens) stays in torch's
  fused attention with its bias built a band at a time (`SDPA_BIAS_BUDGET`).
"""
from typing import Tuple

import torch
from torch.nn import functional as F

from ...model.cpu_fused import linear
from ...model.relative_position import relative_table

#: Token rows of the grid per chunk of the per-token layers (16 x 64 = 1024 tokens: <= 13 MiB per temporary).
CHUNK_ROWS = 16
#: Attention scores (floats) one band of the global attention holds: 4 MiB, which stay in cache between the first
#: GEMM, the bias sums, the softmax and the second GEMM (4 rows of 64 queries x 4096 keys of one head).
SCORE_BUDGET = 1 << 20
#: Bias elements (floats) built at a time for torch's fused attention in windowed blocks (16 MiB).
SDPA_BIAS_BUDGET = 1 << 22
#: Windows of at least this many tokens attend by banded GEMMs; smaller ones (SAM's 14^2) by torch's fused kernel.
BANDED_MIN_TOKENS = 1024


def block_forward(block, x: torch.Tensor) -> torch.Tensor:
    """`block(x)` for x: B x H x W x C, float32 CPU inference (see the module docstring)."""
    attn = block.attn
    b, h, w, dim = (int(size) for size in x.shape)  # ints while tracing too: the chunking is fixed per shape
    window_h, window_w = (block.window_size, block.window_size) if block.window_size else (h, w)
    q, k, v = _windowed_qkv(attn, block.norm1, x, window_h, window_w)
    if window_h * window_w >= BANDED_MIN_TOKENS:
        out = banded_attention(attn, q, k, v, window_h, window_w)
    else:
        out = attn._attend(q, k, v, window_h, window_w, bias_budget=SDPA_BIAS_BUDGET)
    heads, channels = attn.num_heads, dim // attn.num_heads
    rows, cols = -(-h // window_h), -(-w // window_w)
    # the attention output as B x rows x window_h x cols x window_w x C (a view of the window-major result)
    grid = out.view(b, rows, cols, heads, window_h, window_w, channels).permute(0, 1, 4, 2, 5, 3, 6)
    x_attended = torch.empty_like(x)
    for start, stop in _row_chunks(h, window_h):
        row, offset = divmod(start, window_h)
        tokens = grid[:, row, offset:offset + stop - start].reshape(b, stop - start, cols * window_w, dim)[:, :, :w]
        x_attended[:, start:stop] = linear(attn.proj, tokens, residual=x[:, start:stop])
    x_out = torch.empty_like(x)
    mlp = block.mlp
    for start, stop in _row_chunks(h, window_h):
        part = x_attended[:, start:stop]
        hidden = linear(mlp.lin1, block.norm2(part), activation="gelu")
        x_out[:, start:stop] = linear(mlp.lin2, hidden, residual=part)
    return x_out


def _row_chunks(h: int, window_h: int):
    """(start, stop) token-row chunks of at most CHUNK_ROWS rows, none straddling a window row."""
    start = 0
    while start < h:
        stop = min(h, start + CHUNK_ROWS, (start // window_h + 1) * window_h)
        yield start, stop
        start = stop


def _windowed_qkv(attn, norm, x: torch.Tensor, window_h: int, window_w: int) -> Tuple[torch.Tensor, ...]:
    """q, k, v of norm(x) as N x heads x (window_h * window_w) x C each (N = B x windows), padding = qkv bias."""
    b, h, w, dim = (int(size) for size in x.shape)
    heads = attn.num_heads
    channels = dim // heads
    rows, cols = -(-h // window_h), -(-w // window_w)
    n, tokens = b * rows * cols, window_h * window_w
    padded = (rows * window_h, cols * window_w) != (h, w)
    bias = attn.qkv.bias.view(3, 1, heads, 1, channels)
    outputs = []
    for index in range(3):
        tensor = x.new_empty(n, heads, tokens, channels)
        if padded:  # the official code pads zeros before qkv: a padded token's q, k, v = the bias
            tensor.copy_(bias[index].expand(n, heads, tokens, channels))
        outputs.append(tensor)
    # each as B x rows x window_h x cols x window_w x heads x C: where a token of the grid goes
    targets = [t.view(b, rows, cols, heads, window_h, window_w, channels).permute(0, 1, 4, 2, 5, 3, 6)
               for t in outputs]
    for start, stop in _row_chunks(h, window_h):
        row, offset = divmod(start, window_h)
        part = linear(attn.qkv, norm(x[:, start:stop])).view(b, stop - start, w, 3, heads, channels)
        for col in range(cols):
            first, last = col * window_w, min(w, (col + 1) * window_w)
            for index, target in enumerate(targets):
                target[:, row, offset:offset + stop - start, col, : last - first] = part[:, :, first:last, index]
    return tuple(outputs)


def banded_attention(attn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid_h: int, grid_w: int):
    """Attention of N x heads x (h*w) x C contiguous tokens on an h x w grid, GEMMs over bands of query rows."""
    n, heads, tokens, channels = (int(size) for size in q.shape)
    # relative-position terms from the unscaled queries, as the official code: one GEMM per query row / column
    q_grid = q.view(n * heads, grid_h, grid_w, channels)
    rel_h = relative_table(grid_h, grid_h, attn.rel_pos_h).to(q.dtype)  # qh x kh x C
    term_h = torch.matmul(q_grid.transpose(0, 1).reshape(grid_h, -1, channels), rel_h.transpose(1, 2))
    term_h = term_h.view(grid_h, n, heads, grid_w, grid_h)  # qh, n, head, qw, kh
    rel_w = relative_table(grid_w, grid_w, attn.rel_pos_w).to(q.dtype)
    term_w = torch.matmul(q_grid.permute(2, 0, 1, 3).reshape(grid_w, -1, channels), rel_w.transpose(1, 2))
    term_w = term_w.view(grid_w, n, heads, grid_h, grid_w)  # qw, n, head, qh, kw
    scaled = q * (channels ** -0.5)
    rows = max(1, min(grid_h, SCORE_BUDGET // (grid_w * tokens)))
    buffer = q.new_empty(rows * grid_w * tokens)
    out = torch.empty_like(q)
    for index in range(n):
        for head in range(heads):
            keys_t, values = k[index, head].t(), v[index, head]
            for start in range(0, grid_h, rows):
                stop = min(grid_h, start + rows)
                band = slice(start * grid_w, stop * grid_w)
                scores = buffer[: (stop - start) * grid_w * tokens].view((stop - start) * grid_w, tokens)
                torch.mm(scaled[index, head, band], keys_t, out=scores)
                grid = scores.view(stop - start, grid_w, grid_h, grid_w)  # q row, q column, k row, k column
                grid.add_(term_h[start:stop, index, head, :, :, None])
                grid.add_(term_w[:, index, head, start:stop, None, :].transpose(0, 1))
                torch.ops.aten._softmax.out(scores, -1, False, out=scores)
                torch.mm(scores, values, out=out[index, head, band])
    return out
