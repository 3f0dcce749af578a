"""`sammed3d serve`: serve interactive segmentation sessions over HTTP (FastAPI + uvicorn) from one device."""
from __future__ import annotations

import os
import secrets
import socket

from ..errors import SamMed3DError

DESCRIPTION = """Serve SAM-Med3D to clients on other computers (3D Slicer with the engine set to a server,
`sammed3d segment --server URL`). One process serves one device: for several GPUs, run one process per GPU
(CUDA_VISIBLE_DEVICES) behind a reverse proxy. Every request but /health and /openapi.json needs the token; without
a token the server only listens on this computer and makes one up. Use TLS (--ssl-keyfile/--ssl-certfile or a reverse
proxy) on any network you do not trust."""


def add_parser(subparsers) -> None:
    from ..devices import DEVICE_CHOICES

    parser = subparsers.add_parser("serve", help="serve segmentation sessions over HTTP", description=DESCRIPTION)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0: every network)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--checkpoint", default="turbo",
                        help="turbo (default, downloaded once), demo, medsam (MedSAM: box prompts, downloaded once), "
                             "or a path (SAM-Med3D or MedSAM weights)")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--token", default=None,
                        help="the bearer token clients must send (default: $SAMMED3D_TOKEN; prefer the variable: "
                             "command lines are visible to other users)")
    parser.add_argument("--max-sessions", type=int, default=64, help="sessions kept before the least recently used "
                                                                     "is dropped (its client reopens it)")
    parser.add_argument("--max-upload-mb", type=float, default=1024, help="largest request body (MiB)")
    parser.add_argument("--max-voxels", type=int, default=1024 ** 3, help="largest volume (voxels)")
    parser.add_argument("--memory-mb", type=float, default=4096,
                        help="memory budget for volumes, cached embeddings and sessions (MiB)")
    parser.add_argument("--session-ttl", type=float, default=3600, help="seconds before an idle session expires")
    parser.add_argument("--ssl-keyfile", help="TLS private key (PEM) to serve https")
    parser.add_argument("--ssl-certfile", help="TLS certificate (PEM) to serve https")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.set_defaults(func=run)


def resolve_token(host: str, token) -> tuple:
    """(token, generated?) for a server on `host`; SamMed3DError when a non-local address has no token."""
    from ..server.guard import is_loopback

    token = token or os.environ.get("SAMMED3D_TOKEN") or ""
    if token:
        return token, False
    if not is_loopback(host):
        raise SamMed3DError("refusing to listen on %s without a token: set --token or SAMMED3D_TOKEN "
                            "(or listen on 127.0.0.1)" % host)
    return secrets.token_urlsafe(24), True


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        raise SamMed3DError("cannot listen on %s:%d (%s)" % (host, port, error.strerror or error)) from None
    return sock


def run(args) -> int:
    if not 0 < args.port < 65536:
        raise SamMed3DError("--port must be between 1 and 65535")
    if bool(args.ssl_keyfile) != bool(args.ssl_certfile):
        raise SamMed3DError("--ssl-keyfile and --ssl-certfile go together")
    for path in (args.ssl_keyfile, args.ssl_certfile):
        if path and not os.path.isfile(path):
            raise SamMed3DError("TLS file %s does not exist" % path)
    if min(args.max_sessions, args.max_upload_mb, args.memory_mb, args.session_ttl, args.max_voxels) <= 0:
        raise SamMed3DError("--max-sessions, --max-upload-mb, --max-voxels, --memory-mb and --session-ttl must be "
                            "positive")
    token, generated = resolve_token(args.host, args.token)
    try:
        import uvicorn

        from ..server import Engine, ServerSettings, create_app
    except ImportError as error:
        raise SamMed3DError("sammed3d serve needs FastAPI and uvicorn (%s): pip install 'sammed3d[server]'"
                            % error) from None
    sock = _listen(args.host, args.port)

    from .. import load_model
    from ..devices import describe_device

    model = load_model(args.checkpoint, device=args.device)
    settings = ServerSettings(token, max_sessions=args.max_sessions, memory_mb=args.memory_mb, ttl=args.session_ttl,
                              max_upload_mb=args.max_upload_mb, max_voxels=args.max_voxels)
    app = create_app(Engine(model, label=str(args.checkpoint)), settings)
    scheme = "https" if args.ssl_certfile else "http"
    host = "[%s]" % args.host if ":" in args.host else args.host
    print("model: %s on %s" % (args.checkpoint, describe_device(model.device)))
    print("serving on %s://%s:%d (API description: /openapi.json)" % (scheme, host, args.port), flush=True)
    if generated:
        print("token: %s (made up for this run; set --token or SAMMED3D_TOKEN to choose one)" % token, flush=True)
    config = uvicorn.Config(app, log_level=args.log_level, ssl_keyfile=args.ssl_keyfile,
                            ssl_certfile=args.ssl_certfile, timeout_keep_alive=30)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
