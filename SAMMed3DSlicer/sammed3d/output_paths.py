"""Check output paths before any work: allowed suffix, existing writable folder, and never one of the inputs.

Commands call these before reading images or loading a model, so a typo costs nothing and a user's file is never
replaced by a result: an output that is (after resolving symlinks, ``..`` and hard links) the input image, a file
of an input DICOM folder, a prompt file or another output of the same run is refused. Every message names the path
as the user typed it.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from .errors import SamMed3DError


class OutputPathError(SamMed3DError):
    """An output path that cannot or must not be written."""


def _resolved(path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path)))).resolve()


def _same_file(a: Path, b: Path) -> bool:
    if _resolved(a) == _resolved(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def input_files(paths: Iterable) -> List[Path]:
    """The files a run reads: each given file, and the files directly inside each given folder (DICOM series)."""
    files = []
    for path in paths:
        if path is None:
            continue
        path = Path(os.path.expanduser(os.fspath(path)))
        files.append(path)
        if path.is_dir():
            try:
                files += [entry for entry in path.iterdir() if entry.is_file()]
            except OSError:
                pass
    return files


def _describe_input(path: Path, inputs: Sequence[Path]) -> str:
    return "an input file" if path in inputs else "a file of an input folder"


def _check_folder_writable(folder: Path, shown: str) -> None:
    if not folder.exists():
        raise OutputPathError("cannot write %s: folder %s does not exist" % (shown, folder))
    if not folder.is_dir():
        raise OutputPathError("cannot write %s: %s is not a folder" % (shown, folder))
    if not os.access(str(folder), os.W_OK | os.X_OK):
        raise OutputPathError("cannot write %s: folder %s is not writable" % (shown, folder))
    try:  # access() is not the whole truth (read-only mounts, ACLs, root): try (an unnamed file where possible)
        tempfile.TemporaryFile(dir=str(folder)).close()
    except OSError as error:
        reason = "" if error.errno == errno.ENOENT else " (%s)" % (error.strerror or type(error).__name__)
        raise OutputPathError("cannot write %s: folder %s is not writable%s" % (shown, folder, reason)) from None


def check_output_file(path, suffixes: Sequence[str], inputs: Sequence = (), option: str = "-o",
                      others: Sequence = ()) -> Path:
    """Refuse an output file that cannot be written or that would replace an input or another output.

    ``suffixes``: allowed endings (case-insensitive); ``inputs``: paths the run reads (files or folders, see
    :func:`input_files`); ``others``: outputs already checked for this run. Returns ``Path(path)``.
    """
    shown = os.fspath(path)
    path = Path(os.path.expanduser(shown))
    name = path.name.lower()
    if not any(name.endswith(s.lower()) and len(name) > len(s) for s in suffixes):
        raise OutputPathError("cannot write %s (%s): use a name ending in %s" % (shown, option, ", ".join(suffixes)))
    if path.is_dir():
        raise OutputPathError("cannot write %s (%s): it is a folder" % (shown, option))
    _check_folder_writable(Path(os.path.abspath(str(path))).parent, shown)
    if path.exists() and not os.access(str(path), os.W_OK):
        raise OutputPathError("cannot write %s (%s): the file is read-only" % (shown, option))
    given = [Path(os.path.expanduser(os.fspath(p))) for p in inputs if p is not None]
    for candidate in input_files(given):
        if _same_file(path, candidate):
            raise OutputPathError("%s %s is %s (%s); choose another output name"
                                  % (option, shown, _describe_input(candidate, given), candidate))
    for other in others:
        if other is not None and _same_file(path, Path(os.path.expanduser(os.fspath(other)))):
            raise OutputPathError("%s %s is also another output of this run; choose another name" % (option, shown))
    return path


def check_output_folder(path, inputs: Sequence = (), option: str = "--save-roi", parents: bool = False) -> Path:
    """Refuse an output folder that cannot be created or written, or that is (inside) an input folder or file.

    ``parents``: missing parent folders will be created too (then the nearest existing one must be writable).
    """
    shown = os.fspath(path)
    path = Path(os.path.expanduser(shown))
    if path.exists() and not path.is_dir():
        raise OutputPathError("cannot write into %s (%s): it is a file, not a folder" % (shown, option))
    existing = path if path.exists() else Path(os.path.abspath(str(path))).parent
    while parents and not existing.exists() and existing.parent != existing:
        existing = existing.parent
    _check_folder_writable(existing, shown)
    target = _resolved(path)
    for candidate in (Path(os.path.expanduser(os.fspath(p))) for p in inputs if p is not None):
        folder = _resolved(candidate if candidate.is_dir() else candidate.parent)
        if candidate.is_dir() and (target == folder or folder in target.parents):
            raise OutputPathError("%s %s is inside the input folder %s; choose another folder"
                                  % (option, shown, candidate))
    return path


def check_outputs(outputs: Sequence, inputs: Sequence) -> None:
    """Check (option, path, suffixes) triples; suffixes None means a folder. Outputs must also differ."""
    done = []  # type: List[Optional[str]]
    for option, path, suffixes in outputs:
        if path is None:
            continue
        if suffixes is None:
            check_output_folder(path, inputs, option)
        else:
            check_output_file(path, suffixes, inputs, option, others=done)
        done.append(path)
