"""Fused CPU inference of linear layers: oneDNN GEMMs with the GELU or the residual sum in their epilogue.

`nn.Linear` on the CPU runs an MKL GEMM, then a separate pass for the activation and another for the residual sum;
oneDNN (`torch.ops.mkldnn._linear_pointwise`, what torch.compile emits for CPUs) applies them while the output tile is
still in cache, on a weight packed once for its blocking. Same parameters, float32 throughout (differences are GEMM
summation order, ~1e-6 relative). Used only where it is exact and safe: float32 CPU tensors, no autograd, autocast off
and no TorchScript tracing; everything else takes the plain `F.linear` path.
"""
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

_OPS = getattr(torch.ops, "mkldnn", None)


def _has_fused_ops() -> bool:
    try:
        return (torch.backends.mkldnn.is_available() and hasattr(_OPS, "_linear_pointwise")
                and hasattr(_OPS, "_reorder_linear_weight"))
    except (AttributeError, RuntimeError):
        return False


FUSED_OPS = _has_fused_ops()


def _autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def cpu_inference(x: torch.Tensor) -> bool:
    """Whether `x` is float32 CPU inference: no autograd, no autocast, not scripted (tracing is fine)."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not _autocast_on() and not torch.jit.is_scripting())


def fused_cpu(x: torch.Tensor) -> bool:
    """Whether `x` may take the oneDNN path: float32 CPU inference, not traced (its ops do not trace)."""
    return FUSED_OPS and cpu_inference(x) and not torch.jit.is_tracing()


#: The input rows oneDNN is told to expect when it packs a weight (any count works; this one suits token chunks).
PACK_ROWS = 1024


def _packed_weight(layer: nn.Linear) -> torch.Tensor:
    """The layer's weight in oneDNN's blocked layout, packed again only when it changed."""
    weight = layer.weight
    key = (weight.data_ptr(), weight._version)
    cached = layer.__dict__.get("_sammed3d_packed")
    if cached is None or cached[0] != key:
        cached = (key, _OPS._reorder_linear_weight(weight.detach(), PACK_ROWS))
        layer.__dict__["_sammed3d_packed"] = cached  # not a buffer: never saved, never moved with .to()
    return cached[1]


def linear(layer: nn.Linear, x: torch.Tensor, activation: Optional[str] = None,
           residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """`layer(x)`, then `activation` ("gelu": exact erf GELU) or `+ residual` (same shape as the output)."""
    if fused_cpu(x):
        flat = x.reshape(-1, x.shape[-1])
        if not flat.is_contiguous():
            flat = flat.contiguous()
        weight = _packed_weight(layer)
        if residual is not None:
            other = residual.reshape(flat.shape[0], -1)
            out = _OPS._linear_pointwise.binary(flat, other if other.is_contiguous() else other.contiguous(),
                                                weight, layer.bias, "add")
        else:
            out = _OPS._linear_pointwise(flat, weight, layer.bias, activation or "none", [], "none")
        return out.view(*x.shape[:-1], out.shape[-1])
    out = F.linear(x, layer.weight, layer.bias)
    if activation == "gelu":
        out = F.gelu(out)
    elif activation is not None:
        raise ValueError("unsupported activation %r" % activation)
    return out + residual if residual is not None else out
