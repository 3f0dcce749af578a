"""Run the image encoder without holding Python's GIL, so that it keeps full speed under Slicer's event loop.

Slicer's main thread holds the GIL while its Qt event loop idles; a worker thread then runs only while the main
thread executes Python. Eager PyTorch releases the GIL inside each operation but needs it back between operations,
so an eager encoder crawls from one operation to the next whenever Slicer's loop is idle. A traced
(TorchScript) encoder runs its whole graph in C++ with the GIL released: the same operations on the same weights.

:func:`release_gil_in_encoder` swaps the model's ``image_encoder`` for a wrapper that traces it once per input
shape (ROIs are always 1 x 1 x 128^3) and falls back to the eager encoder under autocast (reduced precision) or
when tracing fails. Call it from the thread that loads the model, before the warm-up (which then traces).
"""
from __future__ import annotations

import logging
import warnings

log = logging.getLogger(__name__)


def _autocast_enabled(torch) -> bool:
    try:
        return any(torch.is_autocast_enabled(device) for device in ("cpu", "cuda"))
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


def release_gil_in_encoder(model) -> bool:
    """Make ``model.image_encoder`` run without the GIL (see the module docstring); True if it was wrapped."""
    encoder = getattr(model, "image_encoder", None)
    if encoder is None or is_gil_free(encoder):
        return False
    model.image_encoder = _traced_encoder_class()(encoder)
    return True


def is_gil_free(encoder) -> bool:
    """True for an encoder wrapped by :func:`release_gil_in_encoder`."""
    return bool(getattr(encoder, "runs_without_gil", False))


def _traced_encoder_class():
    import torch

    class TracedEncoder(torch.nn.Module):
        """The eager encoder, run through a per-shape TorchScript trace of itself (same parameters)."""

        runs_without_gil = True

        def __init__(self, eager):
            super().__init__()
            self.eager = eager
            self._traces = {}
            self._failed = False

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(super().__getattr__("eager"), name)  # img_size, patch size, ...

        def forward(self, image):
            if self._failed or _autocast_enabled(torch) or torch.is_grad_enabled():
                return self.eager(image)
            key = (tuple(image.shape), image.dtype, image.device)
            traced = self._traces.get(key)
            if traced is None:
                try:
                    with torch.jit.optimized_execution(False), warnings.catch_warnings():
                        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks: fixed per trace
                        warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.10 deprecates tracing
                        traced = torch.jit.trace(self.eager, image, check_trace=False)
                except Exception:  # noqa: BLE001 - keep working eagerly (slower under Slicer's loop)
                    log.warning("tracing the image encoder failed; running it eagerly", exc_info=True)
                    self._failed = True
                    return self.eager(image)
                self._traces[key] = traced
            with torch.jit.optimized_execution(False):  # no graph rewrites: the eager encoder's operations
                return traced(image)

    return TracedEncoder