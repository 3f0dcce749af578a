"""Named checkpoints: find the weights file for "turbo" (Hugging Face download, cached), "demo" (bundled) or a path."""
from __future__ import annotations

import inspect
import os
import socket
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

from ..errors import CheckpointError

PathLike = Union[str, "os.PathLike[str]"]
ProgressCallback = Callable[[int, Optional[int]], None]

#: name -> (Hugging Face repo id, file name in that repo)
HUB_CHECKPOINTS: Dict[str, Tuple[str, str]] = {
    "turbo": ("blueyo0/SAM-Med3D", "sam_med3d_turbo.pth"),
}
#: name -> file name in sammed3d/data/
BUNDLED_CHECKPOINTS: Dict[str, str] = {
    "demo": "sam_med3d_demo.safetensors",
}
#: name -> one-line description, for help texts and error messages.
KNOWN_CHECKPOINTS: Dict[str, str] = {
    "turbo": "SAM-Med3D-turbo (official weights, Hugging Face blueyo0/SAM-Med3D, downloaded once then cached)",
    "medsam": "MedSAM ViT-B (official medsam_vit_b.pth, Zenodo record 10689643, downloaded once then cached)",
    "demo": "tiny demo model bundled with the package (not trained for real use)",
}
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
_DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "on", "yes", "true"}
#: Seconds to wait for a TCP connection to the Hub (or the proxy) before giving up on a download.
CONNECT_TIMEOUT_S = 3.0


def _offline() -> bool:
    """HF_HUB_OFFLINE, read now (huggingface_hub itself only reads it when first imported)."""
    from huggingface_hub import constants

    return bool(getattr(constants, "HF_HUB_OFFLINE", False)) or (
        os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
    )


def _progress_tqdm_class(progress: ProgressCallback):
    """A tqdm class for huggingface_hub that reports bytes to ``progress(done, total)`` (and still draws its bar)."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class ProgressTqdm(hf_tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._bytes_done = int(kwargs.get("initial") or 0)  # counted here: a disabled tqdm does not count
            progress(self._bytes_done, self.total)

        def update(self, n=1):
            self._bytes_done += int(n or 0)
            progress(self._bytes_done, self.total)
            return super().update(n)

    return ProgressTqdm


def _manual_download_hint(name: str, endpoint: str) -> str:
    repo_id, filename = HUB_CHECKPOINTS[name]
    return "download %s/%s/resolve/main/%s yourself and pass its path instead of '%s'" % (
        endpoint.rstrip("/"),
        repo_id,
        filename,
        name,
    )


def _short(exc: BaseException) -> str:
    """The root cause of an error in one short line (e.g. "[Errno 111] Connection refused", "HTTP 404 Not Found")."""
    response = getattr(exc, "response", None)
    if getattr(response, "status_code", None) is not None:
        return ("HTTP %s %s" % (response.status_code, getattr(response, "reason_phrase", "") or "")).strip()
    while exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__):
        exc = exc.__cause__ or exc.__context__
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _reachability_problem(endpoint: str, timeout: float = CONNECT_TIMEOUT_S) -> Optional[str]:
    """Why a TCP connection to ``endpoint`` (or to the proxy the environment names for it) fails, or None.

    One quick probe instead of huggingface_hub's retries with back-off (~27 s for a closed port or no DNS).
    """
    from urllib.parse import urlsplit
    from urllib.request import getproxies, proxy_bypass

    url = urlsplit(endpoint)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    proxy = getproxies().get(url.scheme)
    if proxy and host and not proxy_bypass(host):
        proxy_url = urlsplit(proxy if "://" in proxy else "http://" + proxy)
        host, port = proxy_url.hostname, proxy_url.port or 80
    if not host:
        return "invalid endpoint %r" % endpoint
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except socket.timeout:
        return "no answer from %s:%d within %.0f s" % (host, port, timeout)
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None


def _download_from_hub(
    name: str, cache_dir: Optional[PathLike], endpoint: Optional[str], progress: Optional[ProgressCallback]
) -> Path:
    """The cached file if present (no network at all), else a download into the Hugging Face cache."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import LocalEntryNotFoundError

    repo_id, filename = HUB_CHECKPOINTS[name]
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    shown_endpoint = endpoint or _DEFAULT_ENDPOINT
    kwargs = {"repo_id": repo_id, "filename": filename, "cache_dir": None if cache_dir is None else str(cache_dir)}
    try:
        return Path(hf_hub_download(local_files_only=True, **kwargs))
    except LocalEntryNotFoundError:
        pass
    except Exception as exc:  # noqa: BLE001 - an unreadable cache folder, for instance
        raise CheckpointError("cannot use the Hugging Face cache for '%s': %s" % (name, _short(exc))) from None
    if _offline():
        raise CheckpointError(
            "the '%s' weights are not in the Hugging Face cache and HF_HUB_OFFLINE is set: unset it to download them, "
            "or %s" % (name, _manual_download_hint(name, shown_endpoint))
        )
    problem = _reachability_problem(shown_endpoint)
    if problem:
        raise CheckpointError(
            "the '%s' weights are not cached and %s cannot be reached (%s): %s, or run once with network access"
            % (name, shown_endpoint, problem, _manual_download_hint(name, shown_endpoint))
        )
    if progress is not None and "tqdm_class" in inspect.signature(hf_hub_download).parameters:
        kwargs["tqdm_class"] = _progress_tqdm_class(progress)
    try:
        return Path(hf_hub_download(endpoint=endpoint, **kwargs))
    except Exception as exc:  # noqa: BLE001 - network, HTTP, disk errors: all end in the same advice
        raise CheckpointError(
            "could not download the '%s' weights (%s/%s) from %s: %s; %s"
            % (name, repo_id, filename, shown_endpoint, _short(exc), _manual_download_hint(name, shown_endpoint))
        ) from None


def _bundled(name: str) -> Path:
    path = DATA_DIR / BUNDLED_CHECKPOINTS[name]
    if not path.is_file():
        raise CheckpointError("the %s model is not bundled in this build (%s is missing)" % (name, path))
    return path


def resolve_checkpoint(
    name_or_path: PathLike,
    progress: Optional[ProgressCallback] = None,
    cache_dir: Optional[PathLike] = None,
    endpoint: Optional[str] = None,
) -> Path:
    """The local weights file for a checkpoint name ("turbo", "medsam", "demo") or an existing file path.

    "turbo" is downloaded once from Hugging Face into the standard Hugging Face cache (or ``cache_dir``) with a
    progress bar, and reused from there without any network access afterwards. ``progress(bytes_done, bytes_total)``
    is called during a download (``bytes_total`` may be None). Raises :class:`CheckpointError` (one line).
    """
    text = os.fspath(name_or_path)
    key = text.strip().lower()
    if key in HUB_CHECKPOINTS:
        return _download_from_hub(key, cache_dir, endpoint, progress)
    if key in BUNDLED_CHECKPOINTS:
        return _bundled(key)
    from .zenodo import ZENODO_CHECKPOINTS, download_zenodo

    if key in ZENODO_CHECKPOINTS:
        return download_zenodo(key, progress=progress, cache_dir=cache_dir)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise CheckpointError("checkpoint %s is not a file" % path)
    if path.suffix or os.sep in text or (os.altsep and os.altsep in text):
        raise CheckpointError("checkpoint file not found: %s" % path)
    raise CheckpointError(
        "unknown checkpoint '%s': use one of %s, or the path of a .pth / .safetensors file"
        % (text, ", ".join(sorted(KNOWN_CHECKPOINTS)))
    )
