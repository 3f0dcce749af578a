"""`sammed3d web`: annotate in a browser on Slicer's views (needs the ``web`` extra); the app is ``sammed3d_web``."""
from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path

from ..errors import SamMed3DError

DESCRIPTION = """Annotate in a browser: Slicer's slice and 3D views, positive/negative clicks, SAM-Med3D updates,
several segments, save to OUT (.seg.nrrd) plus one <segment>.mrk.json per segment. Each browser tab gets its own
scene (a child process with its own model, unless --server); the first saves to OUT, scene k to
<OUT folder>/<stem>-scene<k>/. Listens on 127.0.0.1 unless --host says otherwise; any other address requires --token
(open http://HOST:PORT/?token=T)."""


def add_parser(subparsers) -> None:
    from ..devices import DEVICE_CHOICES

    parser = subparsers.add_parser("web", help="annotate in a browser (needs the [web] extra)",
                                   description=DESCRIPTION)
    parser.add_argument("image", nargs="?", help="image file (.nii.gz, .nrrd, .mha, ...) or DICOM series folder; "
                                                 "or upload one from the page")
    parser.add_argument("-o", "--output", default="segmentation.seg.nrrd",
                        help="where Save writes (.seg.nrrd; default: segmentation.seg.nrrd); "
                             "<segment name>.mrk.json files go beside it. The first scene (tab) saves here, "
                             "scene k to <OUT folder>/<stem>-scene<k>/")
    parser.add_argument("--segmentation", metavar="FILE",
                        help="existing segmentation to refine (.seg.nrrd or a label image); "
                             "default: OUT when it exists")
    parser.add_argument("--checkpoint", default="turbo",
                        help="turbo (default, downloaded once), demo, medsam (box prompts, downloaded once), or a "
                             "path (SAM-Med3D or MedSAM weights)")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--max-rois", type=int, default=1,
                        help="ROIs one object may span: 1 (default, the official single ROI, as `sammed3d segment`); "
                             "e.g. 6 follows larger objects (a liver)")
    parser.add_argument("--server", metavar="URL", help="use a remote `sammed3d serve` engine instead of a local model")
    parser.add_argument("--server-token", metavar="T", help="token of the remote engine (default: --token)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--token", help="require this token from the browser (required unless --host is local)")
    parser.add_argument("--max-scenes", type=int, default=4,
                        help="browser tabs served at once, each its own scene and process (default 4); "
                             "more get a 'busy' page (HTTP 503)")
    parser.add_argument("--scene-idle-timeout", type=float, default=600.0, metavar="SECONDS",
                        help="stop a scene this long after its tab closed (default 600; unsaved clicks go with it)")
    parser.add_argument("--single-scene", action="store_true",
                        help="one process, one scene shared by every tab (no child processes)")
    parser.add_argument("--scene-child", action="store_true", help=argparse.SUPPRESS)  # a scene of a front process
    parser.set_defaults(func=run)


def _logic(args):
    from SAMMed3DSlicerLib.interactive_logic import InteractiveSegmentationLogic

    if not args.server:
        return InteractiveSegmentationLogic(args.checkpoint, args.device, max_rois=args.max_rois)
    parameters = inspect.signature(InteractiveSegmentationLogic.__init__).parameters
    if "server" not in parameters:
        raise SamMed3DError("this installation has no remote engine support (--server); run without --server")
    return InteractiveSegmentationLogic(server=args.server, token=args.server_token or args.token,
                                        max_rois=args.max_rois)


def _check_port_free(host: str, port: int) -> None:
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise SamMed3DError("cannot listen on %s: %s" % (host, error)) from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(address)
        except OSError as error:
            raise SamMed3DError("cannot listen on %s:%d: %s" % (host, port, error.strerror or error)) from None


def _check_arguments(args):
    """Checks shared by the front and a single scene; returns the output path."""
    from sammed3d_web.auth import is_local
    from sammed3d_web.output_path import check_output_path

    if not is_local(args.host) and not args.token:
        raise SamMed3DError("listening on %s needs --token (anyone who can reach the port could use it)" % args.host)
    if args.max_rois < 1:
        raise SamMed3DError("--max-rois must be at least 1")
    if not 0 < args.port < 65536:
        raise SamMed3DError("--port must be between 1 and 65535")
    if args.max_scenes < 1:
        raise SamMed3DError("--max-scenes must be at least 1")
    if not args.scene_idle_timeout > 0:
        raise SamMed3DError("--scene-idle-timeout must be positive")
    _check_port_free(args.host, args.port)
    output = check_output_path(args.output)
    if args.segmentation is not None and not Path(args.segmentation).exists():
        raise SamMed3DError("segmentation file not found: %s" % args.segmentation)
    if args.image is not None and not Path(args.image).exists():
        raise SamMed3DError("image not found: %s" % args.image)
    return output


def _scene_command(args):
    """argv of a scene child: these arguments, bound to 127.0.0.1:PORT, saving to the scene's output."""
    def command(port, output):
        argv = [sys.executable, "-m", "sammed3d", "web"]
        if args.image:
            argv.append(str(Path(args.image).absolute()))
        argv += ["-o", str(Path(output).absolute()), "--checkpoint", args.checkpoint, "--device", args.device,
                 "--max-rois", str(args.max_rois), "--host", "127.0.0.1", "--port", str(port),
                 "--single-scene", "--scene-child"]
        if args.checkpoint not in ("turbo", "demo") and Path(args.checkpoint).exists():
            argv[argv.index("--checkpoint") + 1] = str(Path(args.checkpoint).absolute())
        if args.segmentation:
            argv += ["--segmentation", str(Path(args.segmentation).absolute())]
        if args.server:
            argv += ["--server", args.server]
            if args.server_token or args.token:
                argv += ["--server-token", args.server_token or args.token]
        return argv
    return command


def run_front(args) -> int:
    """Several tabs: this process forwards each tab to its own scene process (sammed3d_web.front)."""
    import asyncio

    from sammed3d_web.front import Front, serve
    from sammed3d_web.scenes import SceneLauncher, SceneStartError

    output = _check_arguments(args)
    launcher = SceneLauncher(_scene_command(args), output, max_scenes=args.max_scenes,
                             idle_timeout=args.scene_idle_timeout, reuse_saved_slots=bool(args.image))
    front = Front(launcher, token=args.token)
    url = "http://%s:%d/" % (args.host, args.port) + ("?token=%s" % args.token if args.token else "")

    def ready():
        print("sammed3d web: open %s (each tab its own scene, at most %d)" % (url, args.max_scenes), flush=True)

    try:
        asyncio.run(serve(front, args.host, args.port, on_ready=ready))
    except SceneStartError as error:
        raise SamMed3DError("the first scene did not start (%s; see its message above)" % error) from None
    except OSError as error:
        raise SamMed3DError("cannot listen on %s:%d: %s" % (args.host, args.port, error.strerror or error)) from None
    except KeyboardInterrupt:
        pass
    return 0


def run(args) -> int:
    import importlib.util

    missing = [name for name in ("trame_slicer", "aiohttp") if importlib.util.find_spec(name) is None]
    if missing:
        raise SamMed3DError("the web app needs its extra: pip install \"sammed3d[web]\" (missing %s)"
                            % ", ".join(missing))
    if not (args.scene_child or args.single_scene):
        return run_front(args)  # the front loads neither Slicer nor a model: its scenes do
    try:
        from sammed3d_web.app import WebApp
        from sammed3d_web.scene_io import read_image_path
    except ImportError as error:
        raise SamMed3DError("the web app needs its extra: pip install \"sammed3d[web]\" (%s)" % error) from None
    if args.scene_child:
        from sammed3d_web.scenes import TOKEN_ENV, exit_with_parent

        at_exit = []  # the scene's unsaved-work save, once the scene exists
        exit_with_parent(before_exit=lambda: [hook() for hook in at_exit])
        args.token = os.environ.get(TOKEN_ENV) or None
        if not args.token:
            raise SamMed3DError("a scene process needs its token in %s" % TOKEN_ENV)
    output = _check_arguments(args)
    segmentation = args.segmentation
    if segmentation is None and args.image and output.exists():
        segmentation = str(output)
    image = read_image_path(args.image) if args.image else None

    logic = _logic(args)
    model = logic.load_model()  # local weights, or a check that the remote engine answers (and accepts the token)
    if args.server:
        print("engine: %s" % args.server, flush=True)
    else:
        from ..devices import describe_device

        print("model: %s on %s" % (args.checkpoint, describe_device(model.device)), flush=True)
    import vtk

    vtk.vtkObject.GlobalWarningDisplayOff()  # trame-slicer's views warn about VTK 9.6 interactor events
    app = WebApp(logic, output, token=args.token)
    if args.scene_child:
        at_exit.append(app.save_unsaved_from_thread)
    if image is not None:
        app.load(image, segmentation, name=Path(args.image.rstrip("/")).name.split(".")[0] or "Image")
    if not args.scene_child:
        url = "http://%s:%d/" % (args.host, args.port) + ("?token=%s" % args.token if args.token else "")
        print("sammed3d web: open %s (one scene shared by every tab)" % url, flush=True)
    try:
        app.start(args.host, args.port)
    finally:  # Ctrl+C on a single scene: what was not saved goes to a folder beside the output
        if not args.scene_child:
            try:
                saved = app.save_unsaved()
            except SamMed3DError as error:
                print("sammed3d web: the unsaved work could not be saved: %s" % error, flush=True)
            else:
                if saved is not None:
                    print("sammed3d web: unsaved work saved to %s" % saved.parent, flush=True)
    return 0
