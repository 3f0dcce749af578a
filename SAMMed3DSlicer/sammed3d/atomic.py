"""Atomic file replacement: write to a temporary file beside the target, then os.replace (never a partial file)."""
import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the target's folder; on success it replaces `path` with the usual permissions
    (mkstemp makes owner-only files), on failure it is removed and `path` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, str(path))
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)
