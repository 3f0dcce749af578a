"""Checkpoints published on Zenodo (MedSAM's `medsam_vit_b.pth`): download once with a progress bar, verify, cache.

The file goes to the Hugging Face cache root (``HF_HUB_CACHE``, e.g. ~/.cache/huggingface/hub) under
``zenodo--<record>/<file>``, next to the Hugging Face downloads; a cached file is used without any network access.
``HF_HUB_OFFLINE`` is honoured as for the Hugging Face files. ``SAMMED3D_ZENODO_ENDPOINT`` replaces
https://zenodo.org (mirrors, tests).

Verification: the byte count and the MD5 checksum Zenodo lists for the file are checked after the download. Both
were recorded from public references to the record (Zenodo itself was unreachable when this was written); a
mismatch is reported and the download discarded. The SHA-256 of the verified file is stored beside it
(``<file>.sha256``) and checked again, with the size, every time the cached file is used.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Union

from ..atomic import atomic_path
from ..errors import CheckpointError

PathLike = Union[str, "os.PathLike[str]"]
ProgressCallback = Callable[[int, Optional[int]], None]
DEFAULT_ENDPOINT = "https://zenodo.org"
_CHUNK = 1 << 20
_TIMEOUT_S = 30


@dataclass(frozen=True)
class ZenodoFile:
    record: str
    filename: str
    size: int
    md5: str


#: name -> file (MedSAM, Ma et al. 2024: Apache-2.0 code; weights on Zenodo record 10689643)
ZENODO_CHECKPOINTS: Dict[str, ZenodoFile] = {
    "medsam": ZenodoFile("10689643", "medsam_vit_b.pth", 375049145, "3bb6db55bd0c9ca30b61248bca72f8d6"),
}


def _offline() -> bool:
    from .hub import _offline as hub_offline

    return hub_offline()


def cache_root(cache_dir: Optional[PathLike] = None) -> Path:
    """`cache_dir`, else the Hugging Face hub cache (where the SAM-Med3D weights go)."""
    if cache_dir is not None:
        return Path(cache_dir)
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def file_url(entry: ZenodoFile, endpoint: Optional[str] = None) -> str:
    endpoint = (endpoint or os.environ.get("SAMMED3D_ZENODO_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    return "%s/records/%s/files/%s?download=1" % (endpoint, entry.record, entry.filename)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified_cached(path: Path, entry: ZenodoFile, name: str) -> bool:
    """True when the cached file is complete and unchanged since its verified download; raises if it was altered."""
    if not path.is_file():
        return False
    sidecar = path.with_name(path.name + ".sha256")
    if path.stat().st_size != entry.size or not sidecar.is_file():
        return False  # an interrupted copy or a file put there by hand: download again
    if _sha256(path) != sidecar.read_text().split()[0]:
        raise CheckpointError("the cached '%s' weights %s changed since they were downloaded and verified (SHA-256 "
                              "mismatch): delete the file to download it again" % (name, path))
    return True


def _download(url: str, target: Path, entry: ZenodoFile, name: str, progress: Optional[ProgressCallback]) -> None:
    from tqdm.auto import tqdm

    md5, sha256, done = hashlib.md5(), hashlib.sha256(), 0
    with atomic_path(target) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, open(tmp, "wb") as out, \
                    tqdm(total=entry.size, unit="B", unit_scale=True, desc=entry.filename, leave=False) as bar:
                if progress is not None:
                    progress(0, entry.size)
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    md5.update(block)
                    sha256.update(block)
                    done += len(block)
                    bar.update(len(block))
                    if progress is not None:
                        progress(done, entry.size)
                    if done > entry.size:
                        break
        except urllib.error.HTTPError as error:
            raise CheckpointError("could not download the '%s' weights from %s: HTTP %s %s"
                                  % (name, url, error.code, error.reason)) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", None) or error
            raise CheckpointError("could not download the '%s' weights from %s: %s; download it yourself and pass "
                                  "its path" % (name, url, " ".join(str(reason).split())[:160])) from None
        if done != entry.size:
            raise CheckpointError("the '%s' download from %s has %d bytes, expected %d; nothing was kept"
                                  % (name, url, done, entry.size))
        if md5.hexdigest() != entry.md5:
            raise CheckpointError("the '%s' download from %s fails its MD5 check (%s, expected %s); nothing was kept"
                                  % (name, url, md5.hexdigest(), entry.md5))
    with atomic_path(target.with_name(target.name + ".sha256")) as tmp:
        Path(tmp).write_text("%s  %s\n" % (sha256.hexdigest(), entry.filename))


def download_zenodo(name: str, progress: Optional[ProgressCallback] = None, cache_dir: Optional[PathLike] = None,
                    endpoint: Optional[str] = None) -> Path:
    """The local, verified file of a Zenodo checkpoint: from the cache, else downloaded into it (one-line errors)."""
    entry = ZENODO_CHECKPOINTS[name]
    folder = cache_root(cache_dir) / ("zenodo--%s" % entry.record)
    target = folder / entry.filename
    try:
        if _verified_cached(target, entry, name):
            return target
    except OSError as error:
        raise CheckpointError("cannot use the cached '%s' weights %s: %s" % (name, target, error)) from None
    url = file_url(entry, endpoint)
    if _offline():
        raise CheckpointError("the '%s' weights are not in the cache (%s) and HF_HUB_OFFLINE is set: unset it to "
                              "download them, or download %s yourself and pass its path" % (name, target, url))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError("cannot create the cache folder %s: %s" % (folder, error.strerror or error)) from None
    _download(url, target, entry, name, progress)
    return target
