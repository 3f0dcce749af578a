"""`sammed3d web`: annotate in a browser on Slicer's views (needs the ``web`` extra); the app is ``sammed3d_web``."""
from __future__ import annotations

import inspect
from pathlib import Path

from ..errors import SamMed3DError

DESCRIPTION = """Annotate in a browser: Slicer's slice and 3D views, positive/negative clicks, SAM-Med3D updates,
several segments, save to OUT (.seg.nrrd) plus one <segment>.mrk.json per segment. Listens on 127.0.0.1 unless
--host says otherwise; any other address requires --token (open http://HOST:PORT/?token=T)."""


def add_parser(subparsers) -> None:
    from ..devices import DEVICE_CHOICES

    parser = subparsers.add_parser("web", help="annotate in a browser (needs the [web] extra)",
                                   description=DESCRIPTION)
    parser.add_argument("image", nargs="?", help="image file (.nii.gz, .nrrd, .mha, ...) or DICOM series folder; "
                                                 "or upload one from the page")
    parser.add_argument("-o", "--output", default="segmentation.seg.nrrd",
                        help="where Save writes (.seg.nrrd; default: segmentation.seg.nrrd); "
                             "<segment name>.mrk.json files go beside it")
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


def run(args) -> int:
    try:
        import trame_slicer  # noqa: F401
        from sammed3d_web.app import WebApp
        from sammed3d_web.auth import is_local
        from sammed3d_web.saving import check_output_path
        from sammed3d_web.scene_io import read_image_path
    except ImportError as error:
        raise SamMed3DError("the web app needs its extra: pip install \"sammed3d[web]\" (%s)" % error) from None
    if not is_local(args.host) and not args.token:
        raise SamMed3DError("listening on %s needs --token (anyone who can reach the port could use it)" % args.host)
    if args.max_rois < 1:
        raise SamMed3DError("--max-rois must be at least 1")
    if not 0 < args.port < 65536:
        raise SamMed3DError("--port must be between 1 and 65535")
    _check_port_free(args.host, args.port)
    output = check_output_path(args.output)
    segmentation = args.segmentation
    if segmentation is not None and not Path(segmentation).exists():
        raise SamMed3DError("segmentation file not found: %s" % segmentation)
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
    if image is not None:
        app.load(image, segmentation, name=Path(args.image.rstrip("/")).name.split(".")[0] or "Image")
    url = "http://%s:%d/" % (args.host, args.port) + ("?token=%s" % args.token if args.token else "")
    print("sammed3d web: open %s" % url, flush=True)
    app.start(args.host, args.port)
    return 0
