"""Read model weights from .pth / .safetensors files without ever executing code stored in them.

A ``.pth`` file is a pickle, and unpickling can run arbitrary code. We only ever call
``torch.load(..., weights_only=True)``, with a short allow-list of harmless globals that the official SAM-Med3D
training script puts next to the weights (an ``argparse.Namespace`` and numpy scalars). Anything else is refused.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import CheckpointError

PathLike = Union[str, "os.PathLike[str]"]
logger = logging.getLogger(__name__)

#: Keys under which a training checkpoint keeps the model weights, tried in this order.
STATE_DICT_KEYS = ("model_state_dict", "state_dict", "model")
DDP_PREFIX = "module."
CACHE_FORMAT = "sammed3d-weights-cache/1"
_HASH_CHUNK = 1 << 20


def _numpy_scalar_reconstructor():
    """numpy's pickle helper that rebuilds numpy scalars (``numpy._core`` on numpy 2, ``numpy.core`` before)."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 1.26
        from numpy.core.multiarray import scalar
    return scalar


def allowed_globals() -> List[Union[type, Tuple[object, str]]]:
    """The globals a weights file may reference besides tensors: what the official checkpoint format needs.

    The numpy scalar reconstructor is listed under both of its pickle names, because a file written with numpy 1.x
    names it ``numpy.core.multiarray.scalar`` and one written with numpy 2 ``numpy._core.multiarray.scalar``.
    ``type(np.dtype(np.float64))`` is ``numpy.dtypes.Float64DType`` on numpy >= 1.25 (and its unnamed equivalent on
    older numpy, which has no ``numpy.dtypes`` module).
    """
    scalar = _numpy_scalar_reconstructor()
    dtype_classes = []
    for dtype_class in (type(np.dtype(np.float64)), type(np.dtype(np.float32))):
        if dtype_class is not np.dtype and dtype_class not in dtype_classes:
            dtype_classes.append(dtype_class)
    return [
        argparse.Namespace,
        np.dtype,
        *dtype_classes,
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
    ]


@contextlib.contextmanager
def _safe_globals_allowed():
    """Allow-list :func:`allowed_globals` for ``torch.load(weights_only=True)`` on whatever this torch supports."""
    serialization = torch.serialization
    if hasattr(serialization, "safe_globals"):  # torch >= 2.5: scoped to this call
        with serialization.safe_globals(allowed_globals()):
            yield
    elif hasattr(serialization, "add_safe_globals"):  # torch 2.4: process-wide, plain objects only
        serialization.add_safe_globals([g for g in allowed_globals() if not isinstance(g, tuple)])
        yield
    else:  # older torch: tensors and containers only (official training checkpoints will be refused)
        yield


def _supports_mmap() -> bool:
    return "mmap" in inspect.signature(torch.load).parameters


_REFUSAL_MARKERS = ("GLOBAL", "unrecognized function", "new object", "Unsupported class", "is blocked")
_GLOBAL_NAME = re.compile(r"GLOBAL ([A-Za-z_][\w.]*)")


def _refused_globals(path: Path, message: str) -> Optional[List[str]]:
    """The globals a refused load asked for, or None when the failure was not a refusal (i.e. a corrupt file)."""
    inner = message.split("WeightsUnpickler error:", 1)[-1]
    if not any(marker in inner for marker in _REFUSAL_MARKERS):
        return None
    names = _GLOBAL_NAME.findall(inner)
    scan = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if scan is not None:
        try:  # a static scan of the pickle opcodes: lists every refused global, runs nothing
            with _safe_globals_allowed():
                names = list(scan(str(path))) or names
        except Exception:  # noqa: BLE001 - best effort, the message above already names one
            pass
    return names or ["an object that is not a tensor"]


def _refusal_error(path: Path, names: List[str]) -> CheckpointError:
    return CheckpointError(
        "refused to load %s: the checkpoint needs %s, which is not allowed (only tensors, argparse.Namespace and "
        "numpy scalars are); sammed3d never executes code from weights files"
        % (path, ", ".join(sorted(set(names))))
    )


def _corrupt_error(path: Path, detail: object) -> CheckpointError:
    detail = str(detail)
    if "WeightsUnpickler error:" in detail:  # keep torch's diagnosis, drop its advice on weights_only
        detail = detail.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    with contextlib.suppress(OSError), open(path, "rb") as f:
        if f.read(4) == b"PK\x03\x04" and not zipfile.is_zipfile(path):
            detail = "incomplete zip archive: no central directory"
    detail = " ".join(detail.split())[:160]
    return CheckpointError("cannot read %s: the file is truncated or corrupt (%s)" % (path, detail or "unreadable"))


def _is_safetensors(path: Path) -> bool:
    """True when the file starts like a safetensors file (8-byte header length, then a JSON object)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 0 < int.from_bytes(head[:8], "little") < 1 << 30  # a pickle or zip never has "{" at offset 8


def _load_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for bad files
        raise _corrupt_error(path, exc) from None


def read_pickled_checkpoint(path: PathLike) -> object:
    """The whole object of a .pth file (e.g. a training checkpoint with optimizer state), read like the weights:
    ``torch.load`` with weights_only=True and the allow-list, never weights_only=False."""
    return _load_pickle(Path(path))


def _load_pickle(path: Path) -> object:
    """``torch.load`` with weights_only=True and the allow-list; never weights_only=False."""
    kwargs = {"map_location": "cpu", "weights_only": True}
    if zipfile.is_zipfile(path) and _supports_mmap():
        kwargs["mmap"] = True  # tensors we do not use (e.g. optimizer state) are never read from disk
    try:
        with _safe_globals_allowed():
            return torch.load(str(path), **kwargs)
    except (PermissionError, IsADirectoryError) as exc:
        raise CheckpointError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
    except Exception as exc:  # noqa: BLE001 - any parser failure means the file cannot be used
        refused = _refused_globals(path, str(exc))
        if refused is not None:
            raise _refusal_error(path, refused) from None
        raise _corrupt_error(path, exc) from None


def _model_weights(path: Path, obj: object) -> Dict[str, torch.Tensor]:
    """The model's tensors in a loaded checkpoint, with a DDP ``module.`` prefix removed."""
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    tensors = {}
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if isinstance(key, str) and isinstance(value, torch.Tensor):
                tensors[key[len(DDP_PREFIX):] if key.startswith(DDP_PREFIX) else key] = value
    if not tensors:
        raise CheckpointError("%s contains no model weights (no tensors found)" % path)
    return tensors


def _source_fingerprint(path: Path) -> str:
    """Cheap content fingerprint: size plus the first and last MiB (robust to copies, unlike mtime)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(_HASH_CHUNK))
        if size > _HASH_CHUNK:
            f.seek(max(size - _HASH_CHUNK, _HASH_CHUNK))
            digest.update(f.read(_HASH_CHUNK))
    return digest.hexdigest()[:20]


def default_cache_dir() -> Path:
    """``$SAMMED3D_CACHE``, else ``$XDG_CACHE_HOME/sammed3d``, else ``~/.cache/sammed3d``."""
    if os.environ.get("SAMMED3D_CACHE"):
        return Path(os.environ["SAMMED3D_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sammed3d"


def cache_path_for(path: PathLike, cache_dir: Optional[PathLike] = None) -> Path:
    """Where :func:`read_state_dict` keeps the safetensors copy of the model weights of ``path``."""
    path = Path(path)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / ("%s-%s.safetensors" % (path.stem, _source_fingerprint(path)))


def write_safetensors(
    state_dict: Mapping[str, torch.Tensor], path: PathLike, metadata: Optional[Dict[str, str]] = None
) -> Path:
    """Write tensors to a .safetensors file atomically (temp file in the same folder, then ``os.replace``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors, seen = {}, set()
    for key, value in state_dict.items():
        value = value.detach().to("cpu").contiguous()
        if value.numel() and value.data_ptr() in seen:  # safetensors refuses tensors sharing memory
            value = value.clone()
        seen.add(value.data_ptr())
        tensors[key] = value
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return path


def _read_cached(cached: Path) -> Optional[Dict[str, torch.Tensor]]:
    if not cached.is_file():
        return None
    try:
        return _load_safetensors(cached)
    except CheckpointError:
        logger.warning("ignoring unreadable weights cache %s", cached)
        return None


def _write_cache(cached: Path, source: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    try:
        write_safetensors(tensors, cached, metadata={"format": CACHE_FORMAT, "source": source.name})
    except OSError as exc:  # a read-only or full cache folder must not stop the model from loading
        logger.warning("could not cache weights at %s: %s", cached, exc)


def read_state_dict(
    path: PathLike, cache: bool = False, cache_dir: Optional[PathLike] = None
) -> Dict[str, torch.Tensor]:
    """Model weights (name -> tensor, on CPU) from an official training checkpoint, a bare state dict or safetensors.

    ``cache=True`` keeps a safetensors copy of the model weights of a ``.pth`` in ``cache_dir`` (default
    :func:`default_cache_dir`) so later loads skip unpickling. Raises :class:`CheckpointError` with a one-line
    message for a missing, unsafe, truncated or corrupt file, or one without tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(("checkpoint %s is not a file" if path.exists() else "checkpoint file not found: %s") % path)
    try:
        if _is_safetensors(path):
            return _model_weights(path, _load_safetensors(path))
        cached = cache_path_for(path, cache_dir) if cache else None
    except OSError as exc:
        raise CheckpointError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
    if cached is not None:
        tensors = _read_cached(cached)
        if tensors:
            return tensors
    tensors = _model_weights(path, _load_pickle(path))
    if cached is not None:
        _write_cache(cached, path, tensors)
    return tensors
