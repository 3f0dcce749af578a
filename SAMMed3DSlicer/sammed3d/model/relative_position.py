"""Relative-position attention biases of SAM-Med3D's encoder, and the exact removal of window padding.

The bias the released weights were trained with
-----------------------------------------------
The official 3D port of SAM's decomposed relative positions broadcasts its three per-axis terms onto other key axes
than their names suggest. For a query at grid position (qd, qh, qw) and a key at (kd, kh, kw), with `q[p]` the query
vector (unscaled) at position p, tables T_d, T_h, T_w indexed by offset + (W - 1) for an attention window W:

    bias = q[qd, qh, qw] . T_d[qd - kw]  +  q[qd, qh, kd] . T_h[qh - kw]  +  q[qd, qh, kh] . T_w[kh - kw]

(verified against the official `add_decomposed_rel_pos`, see Testing/test_model_parity.py). The weights depend on
it, so it is reproduced exactly. In a padded window the second and third terms read query vectors at positions
(qd, qh, kd) and (qd, qh, kh), which lie in the zero padding when kd or kh >= n; there the query is the qkv bias.

Removing the padding
--------------------
Windowed blocks zero-pad the n^3 = 8^3 token grid to a W^3 = 14^3 window. After `norm1` a padded token is zero, so
its key and value are the qkv biases, and its output is discarded. With a[kw], b[kd, kw], c[kh, kw] the three terms
above for a fixed real query, the padded keys (kw >= n, or kd >= n, or kh >= n) split into three disjoint sets whose
summed exponentials factorise:

    exp(scale * q.k_bias) * (  sum_{kw>=n} e^a Sb_W Sc_W  +  sum_{kw<n} e^a (Sb_pad Sc_W + Sb_n Sc_pad)  )

with Sb_W[kw] = sum_{kd<W} e^b[kd, kw], Sb_n the sum over kd < n, Sb_pad over kd >= n (Sc likewise over kh).
Attention over the n^3 real keys plus ONE extra key (key k_bias, value v_bias, additive bias = log of the bracket)
therefore equals the official padded attention exactly, at a fifth of its cost. Every sum is of positive terms, taken
in log space (logsumexp, logaddexp): no cancellation, no overflow, float32 as accurate as the official code.
"""
from typing import Optional, Tuple

import torch


def relative_table(q_size: int, k_size: int, table: torch.Tensor) -> torch.Tensor:
    """Rows of `table` (2W-1 x C) for query offsets 0..q_size-1 and key offsets 0..k_size-1: q_size x k_size x C."""
    window = (table.shape[0] + 1) // 2
    q = torch.arange(q_size, device=table.device)[:, None]
    k = torch.arange(k_size, device=table.device)[None, :]
    return table[q - k + (window - 1)]


def bias_terms(
    q: torch.Tensor,
    tables: Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    window: int,
    q_pad: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The terms a, b, c of the module docstring for every real query and every window key offset.

    q: B x heads x n x n x n x C (unscaled queries of the real tokens); `window` W >= n; q_pad: B x heads x C, the
    query of a padded token (needed when W > n). Returns a: [..., qd, qh, qw, kw], b: [..., qd, qh, kd, kw],
    c: [..., qd, qh, kh, kw], each of size W along the key axes.
    """
    n = q.shape[2]
    if window > n:
        b_, h_, _, _, _, c_ = q.shape
        pad = q_pad[:, :, None, None, None, :].expand(b_, h_, n, n, window - n, c_)
        q_ext = torch.cat([q, pad], dim=4)  # positions (qd, qh, 0..W-1)
    else:
        q_ext = q
    a = torch.einsum("bhxyzc,xkc->bhxyzk", q, relative_table(n, window, tables[0]))
    b = torch.einsum("bhxyzc,ykc->bhxyzk", q_ext, relative_table(n, window, tables[1]))
    c = torch.einsum("bhxyzc,zkc->bhxyzk", q_ext, relative_table(window, window, tables[2]))
    return a, b, c


def real_key_bias(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, n: int) -> torch.Tensor:
    """Bias of every real query for every real key: B x heads x n^3 x n^3 (both in d, h, w raster order)."""
    batch, heads = a.shape[:2]
    bias = (
        a[:, :, :, :, :, None, None, :n]  # qd qh qw . . kw
        + b[:, :, :, :, None, :n, None, :n]  # qd qh . kd . kw
        + c[:, :, :, :, None, None, :n, :n]  # qd qh . . kh kw
    )
    return bias.reshape(batch, heads, n ** 3, n ** 3)


def padding_key_bias(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, n: int) -> torch.Tensor:
    """log(sum over the padded window keys of exp(bias)) for every real query: B x heads x n^3."""
    batch, heads = a.shape[:2]
    # per (qd, qh, kw): log of Sb and Sc over the whole window, the real positions and the padded positions
    sb_window, sb_real, sb_pad = (torch.logsumexp(t, dim=-2) for t in (b, b[..., :n, :], b[..., n:, :]))
    sc_window, sc_real, sc_pad = (torch.logsumexp(t, dim=-2) for t in (c, c[..., :n, :], c[..., n:, :]))
    outside = (sb_window + sc_window)[..., n:]  # kw >= n: every kd, kh
    inside = torch.logaddexp(sb_pad + sc_window, sb_real + sc_pad)[..., :n]  # kw < n: kd or kh padded
    per_kw = a + torch.cat([inside, outside], dim=-1)[:, :, :, :, None, :]
    return torch.logsumexp(per_kw, dim=-1).reshape(batch, heads, n ** 3)
