"""The `sammed3d` command line: `segment`, `evaluate`, `train`, `serve` and `web` sub-commands.

Each sub-command lives in its own module exposing ``add_parser(subparsers)`` (which registers the arguments and sets
``func``). User errors (:class:`sammed3d.errors.SamMed3DError`) and usage errors print one line and exit with status 2; no
traceback.
"""
import argparse
import importlib
import os
import sys

from ..errors import SamMed3DError

SUBCOMMANDS = ("segment", "evaluate", "train", "serve", "web")


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors in one line with a --help hint (argparse prints the whole usage block), exit status 2."""

    def error(self, message):
        self.exit(2, "%s: error: %s (see %s --help)\n" % (self.prog, message, self.prog))


def build_parser():
    parser = OneLineErrorParser(
        prog="sammed3d", description="SAM-Med3D promptable 3D segmentation: segment, evaluate, fine-tune, serve."
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version="sammed3d " + __version__)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module("." + name, __name__)
        except ImportError as exc:  # a sub-command not built yet, or missing optional dependency
            if getattr(exc, "name", "") and exc.name.endswith("cli." + name):
                continue
            raise
        module.add_parser(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SamMed3DError as exc:
        print("sammed3d %s: error: %s" % (args.command, exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sammed3d %s: interrupted" % args.command, file=sys.stderr)
        return 130
    except OSError as exc:  # disk full, a folder removed mid-run, ...: one line, never a temporary file's name
        where = getattr(exc, "filename", None)
        shown = "" if not where or ".tmp" in os.path.basename(str(where)) else ": %s" % where
        print("sammed3d %s: error: %s%s" % (args.command, exc.strerror or exc, shown), file=sys.stderr)
        return 2
    except MemoryError:
        print("sammed3d %s: error: out of memory" % args.command, file=sys.stderr)
        return 2
