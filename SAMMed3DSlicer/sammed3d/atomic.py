"""Atomic file replacement: write to a temporary file beside the target, then os.replace (never a partial file)."""
import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path in the target's folder (ending in ".tmp" + `suffix`, so writers that choose the format
    by extension still can); on success it replaces `path`, on failure it is removed and `path` is untouched.

    The result keeps the permissions of the file it replaces, or gets the usual ones (mkstemp makes owner-only files).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp" + suffix, dir=str(path.parent))
    os.close(fd)
    try:
        yield tmp
        if path.exists():
            mode = path.stat().st_mode & 0o777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, str(path))
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)
