"""The HTTP API of `sammed3d serve` (FastAPI): volumes, sessions on them, and clicks that answer with mask patches.

Protocol (see :mod:`sammed3d.remote.wire` for the byte formats):

1. ``GET /volumes/{sha256}``: 200 if the server holds that volume, else 404; ``PUT /volumes/{sha256}`` uploads it.
2. ``POST /sessions`` opens a session on a volume (optionally seeded with a mask): an unguessable id, owned by the
   client (``X-Client-Id``) that opened it.
3. ``POST /sessions/{id}/clicks | points | box | undo | redo | reset | seed`` change it; each answer holds the
   session's state (version, clicks) and the patch of the mask that changed since ``base_version``. A box (two
   opposite RAS corners) is MedSAM's prompt on a MedSAM server (``/info`` says ``"family": "medsam"``; clicks are
   refused there) and a positive click at its centre on a SAM-Med3D server. ``if_version`` makes a
   request conditional (409 if the session moved on), so a client never applies a patch to the wrong mask.

Computations run one at a time on a single worker thread (one device, one model); uploads, decoding and small
requests are served meanwhile by the event loop and its thread pool.
"""
import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Optional

import numpy as np
import SimpleITK as sitk
from fastapi import FastAPI, Path, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import SamMed3DError
from ..image_io import image_on_grid
from ..remote.wire import WireError, decode_volume, make_patch, unpack_mask
from .guard import Guard
from .schemas import AddPoint, Edit, OpenSession, SetBox, SetClicks, SetSeed
from .store import SessionEntry, Store


_bearer = HTTPBearer(auto_error=False, description="the server's token (`sammed3d serve --token`)")
_SECURED = [Security(_bearer)]
_VOLUME = Path(..., pattern="^[0-9a-f]{64}$", description="SHA-256 content hash of the volume")
_SESSION = Path(..., min_length=1, max_length=64, pattern="^[A-Za-z0-9_-]+$")


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class ServerSettings(object):
    """Limits and policies of one server process."""

    def __init__(self, token: str, max_sessions: int = 64, memory_mb: float = 4096, ttl: float = 3600.0,
                 max_upload_mb: float = 1024, max_voxels: int = 1024 ** 3):
        self.token = token
        self.max_sessions = int(max_sessions)
        self.memory_budget = int(memory_mb * 2 ** 20)
        self.ttl = float(ttl)
        self.max_upload_bytes = int(max_upload_mb * 2 ** 20)
        self.max_voxels = int(max_voxels)


class Engine(object):
    """The model, and the single worker thread that runs every computation on its device, one at a time."""

    def __init__(self, model, label: str = ""):
        self.model = model
        self.label = label
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sammed3d-inference")

    @property
    def device(self):
        return self.model.device

    @property
    def family(self) -> str:
        """"medsam" (a box model: SAM 2D / MedSAM) or "sam-med3d"."""
        return "medsam" if hasattr(self.model, "decode_boxes") else "sam-med3d"

    async def run(self, work: Callable):
        """(result, seconds waited in the queue) of `work()` run on the inference worker."""
        submitted = time.perf_counter()

        def timed():
            waited = time.perf_counter() - submitted
            try:
                return work(), waited
            except (MemoryError, RuntimeError) as error:
                if isinstance(error, RuntimeError) and "out of memory" not in str(error):
                    raise
                raise ApiError(503, "the server ran out of memory; try again later", "out_of_memory") from None

        return await asyncio.wrap_future(self.executor.submit(timed))

    def new_session(self, volume, mapping: str, max_rois: int, precision: str):
        """An InteractiveSession sharing the volume's ROIs and cached embeddings with the other sessions on it."""
        from ..devices import autocast
        from ..session import InteractiveSession

        autocast(self.device, precision)  # SamMed3DError now (400) for a precision this device lacks
        if self.family == "medsam":
            from ..medsam.session import MedSamSession

            return MedSamSession(self.model, volume.image, modality="auto", precision=precision)
        return InteractiveSession(self.model, volume.image, mapping=mapping, max_rois=max_rois, precision=precision,
                                  roi_cache=volume.rois, embedding_cache=volume.embeddings.setdefault(precision, {}))


def _state(entry: SessionEntry, patch: Optional[Dict] = None, base_version: Optional[int] = None,
           timings: Optional[Dict] = None) -> Dict:
    session = entry.session
    return {
        "session": entry.key,
        "volume": entry.volume.key,
        "version": entry.version,
        "clicks": [[list(ras), positive] for ras, positive in getattr(session, "clicks", [])],
        "box": [list(session.box.corner1), list(session.box.corner2)] if getattr(session, "box", None) else None,
        "redo": len(getattr(session, "_redo", [])),
        "rois": len(getattr(session, "rois", ())),
        "base_version": base_version,
        "patch": patch,
        "timings": timings or {},
    }


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status)


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        location = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        parts.append(("%s: %s" % (location, item.get("msg", "invalid"))) if location else item.get("msg", "invalid"))
    return "invalid request: " + ("; ".join(parts) or "malformed body")


def create_app(engine: Engine, settings: ServerSettings, clock: Callable[[], float] = time.monotonic) -> FastAPI:
    """The ASGI application (token and size guard included) serving `engine` under `settings`."""
    store = Store(settings.max_sessions, settings.memory_budget, settings.ttl, clock=clock)

    async def sweep():
        while True:  # idle sessions expire even when no request comes
            await asyncio.sleep(min(60.0, max(1.0, settings.ttl / 4)))
            store.expire()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        sweeper = asyncio.ensure_future(sweep())
        try:
            yield
        finally:
            sweeper.cancel()
            engine.executor.shutdown(wait=False)

    app = FastAPI(title="SAM-Med3D server", version=__version__, lifespan=lifespan,
                  description="Interactive 3D segmentation sessions (sammed3d serve). Every operation but /health "
                              "and the API description needs `Authorization: Bearer <token>`.")
    app.state.store, app.state.engine, app.state.settings = store, engine, settings

    @app.exception_handler(ApiError)
    async def _api_error(request, error: ApiError):
        return _error(error.status, error.message, error.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, error: RequestValidationError):
        return _error(422, _validation_message(error), "bad_request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, error: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return _error(error.status_code, str(error.detail), code)

    @app.exception_handler(WireError)
    async def _wire(request, error: WireError):
        return _error(400, str(error), "bad_request")

    @app.exception_handler(SamMed3DError)
    async def _user(request, error: SamMed3DError):
        return _error(400, str(error), "bad_request")

    def owner(request: Request) -> str:
        return request.headers.get("x-client-id", "")[:128]

    def session_or_404(request: Request, key: str) -> SessionEntry:
        entry = store.session(owner(request), key)
        if entry is None:
            raise ApiError(404, "no session %s (expired, evicted, closed, or the server restarted)" % key[:12],
                           "unknown_session")
        return entry

    # ---- public ------------------------------------------------------------------------------------------------
    @app.get("/health")
    async def health():
        """Liveness (no token needed)."""
        return {"status": "ok", "version": __version__}

    # ---- server --------------------------------------------------------------------------------------------------
    @app.get("/info", dependencies=_SECURED)
    async def info():
        """The model, device and limits of this server."""
        from ..devices import describe_device

        return {"version": __version__, "model": engine.label, "family": engine.family,
                "config": str(getattr(engine.model, "config", "")),
                "device": describe_device(engine.device), "counts": store.counts(), "memory": store.memory(),
                "evicted": dict(store.evicted),
                "limits": {"max_sessions": settings.max_sessions, "memory_budget": settings.memory_budget,
                           "ttl": settings.ttl, "max_upload_bytes": settings.max_upload_bytes,
                           "max_voxels": settings.max_voxels}}

    # ---- volumes -------------------------------------------------------------------------------------------------
    @app.get("/volumes/{volume}", dependencies=_SECURED)
    async def volume_exists(volume: str = _VOLUME):
        """Whether the server holds this volume (ask before uploading)."""
        entry = store.volume(volume)
        if entry is None:
            raise ApiError(404, "no volume %s on this server: upload it" % volume[:12], "unknown_volume")
        return {"volume": volume, "size": entry.size}

    @app.put("/volumes/{volume}", status_code=201, dependencies=_SECURED, openapi_extra={"requestBody": {
        "required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "MAGIC 'SM3DVOL1', uint32 header length, JSON header, zlib chunks of the "
                       "byte-shuffled voxels (see sammed3d.remote.wire)"}})
    async def upload_volume(request: Request, volume: str = _VOLUME):
        """Upload a volume under its content hash (checked)."""
        entry = store.volume(volume)
        if entry is None:
            body = await request.body()
            if len(body) > settings.max_upload_bytes:
                raise ApiError(413, "the upload exceeds %d bytes" % settings.max_upload_bytes, "too_large")
            image = await run_in_threadpool(decode_volume, body, volume, settings.max_voxels)
            voxel_bytes = int(np.prod(image.GetSize())) * image.GetSizeOfPixelComponent()
            if voxel_bytes > settings.memory_budget:
                raise ApiError(413, "the volume needs %d MiB, more than this server's memory budget"
                               % (voxel_bytes >> 20), "too_large")
            entry = store.add_volume(volume, image)
        return {"volume": volume, "size": entry.size}

    # ---- sessions ------------------------------------------------------------------------------------------------
    @app.post("/sessions", status_code=201, dependencies=_SECURED)
    async def open_session(request: Request, body: OpenSession):
        """Open a session on an uploaded volume, optionally seeded with a mask; answers with the whole mask."""
        volume = store.volume(body.volume)
        if volume is None:
            raise ApiError(404, "no volume %s on this server: upload it first" % body.volume[:12], "unknown_volume")
        seed = None
        if body.seed is not None:
            seed = await run_in_threadpool(unpack_mask, body.seed, volume.size[::-1])

        def work():
            session = engine.new_session(volume, body.mapping, body.max_rois, body.precision)
            if seed is not None and hasattr(session, "seed"):  # MedSAM: a box's result replaces any content
                session.seed(image_on_grid(seed, volume.image))
            return session, session.mask_array()

        (session, mask), _ = await engine.run(work)
        entry = store.open_session(owner(request), volume, session)
        entry.mask = mask
        return _state(entry, make_patch(None, mask), None)

    @app.get("/sessions/{session}", dependencies=_SECURED)
    async def session_state(request: Request, session: str = _SESSION):
        """The session's version and clicks (no mask)."""
        entry = session_or_404(request, session)

        def read():
            with entry.lock:  # waits for a computation on this session, in a pool thread (not the event loop)
                return _state(entry)

        return await run_in_threadpool(read)

    @app.get("/sessions/{session}/mask", dependencies=_SECURED)
    async def session_mask(request: Request, session: str = _SESSION):
        """The session's whole mask (a patch from an empty mask)."""
        entry = session_or_404(request, session)

        def read():
            with entry.lock:
                mask, answer = entry.mask, _state(entry)
            answer["patch"] = make_patch(None, mask)
            return answer

        return await run_in_threadpool(read)

    @app.delete("/sessions/{session}", status_code=204, dependencies=_SECURED)
    async def close_session(request: Request, session: str = _SESSION):
        """Forget the session (its volume and cached embeddings stay for other sessions)."""
        if not store.drop_session(owner(request), session):
            raise ApiError(404, "no session %s" % session[:12], "unknown_session")
        return Response(status_code=204)

    async def edit(request: Request, key: str, body: Edit, change: Callable, clicks: bool = True) -> Dict:
        entry = session_or_404(request, key)
        if clicks and not hasattr(entry.session, "set_clicks"):
            raise ApiError(400, "this server runs MedSAM: it takes a box (POST /sessions/{id}/box), not clicks",
                           "bad_request")
        start = time.perf_counter()

        def work():
            with entry.lock:
                if body.if_version is not None and body.if_version != entry.version:
                    raise ApiError(409, "the session is at version %d, not %d" % (entry.version, body.if_version),
                                   "version_conflict")
                if body.max_rois is not None:
                    entry.session.max_rois = body.max_rois
                old, base = entry.mask, entry.version
                result = change(entry.session)
                mask = sitk.GetArrayFromImage(result) if result is not None else entry.session.mask_array()
                entry.mask, entry.version = mask, entry.version + 1
                timings = dict(entry.session.last_timings)
                patch = make_patch(None if body.full else old, mask)
                return _state(entry, patch, None if body.full else base, timings)

        answer, waited = await engine.run(work)
        answer["timings"].update(queue=waited, server=time.perf_counter() - start)
        store.enforce(keep=entry)
        return answer

    @app.post("/sessions/{session}/clicks", dependencies=_SECURED)
    async def set_clicks(request: Request, body: SetClicks, session: str = _SESSION):
        """Make the session's clicks equal these (an appended click refines; anything else replays)."""
        clicks = [(tuple(point), positive) for point, positive in body.clicks]
        return await edit(request, session, body, lambda s: s.set_clicks(clicks))

    @app.post("/sessions/{session}/points", dependencies=_SECURED)
    async def add_point(request: Request, body: AddPoint, session: str = _SESSION):
        """Add one click (RAS mm, positive or negative)."""
        return await edit(request, session, body, lambda s: s.add_point(tuple(body.point), body.positive))

    @app.post("/sessions/{session}/box", dependencies=_SECURED)
    async def set_box(request: Request, body: SetBox, session: str = _SESSION):
        """A box prompt (two opposite corners, RAS mm): MedSAM segments the box's slices (replacing the mask);
        SAM-Med3D takes a positive click at its centre (replacing the clicks)."""
        from ..prompts import Box

        box = Box(tuple(body.corner1), tuple(body.corner2))
        return await edit(request, session, body, lambda s: s.set_box(box), clicks=False)

    @app.post("/sessions/{session}/undo", dependencies=_SECURED)
    async def undo(request: Request, body: Edit, session: str = _SESSION):
        """Remove the last click (kept for redo)."""
        return await edit(request, session, body, lambda s: s.undo())

    @app.post("/sessions/{session}/redo", dependencies=_SECURED)
    async def redo(request: Request, body: Edit, session: str = _SESSION):
        """Re-apply the last undone click."""
        return await edit(request, session, body, lambda s: s.redo())

    @app.post("/sessions/{session}/reset", dependencies=_SECURED)
    async def reset(request: Request, body: Edit, session: str = _SESSION):
        """Forget clicks, redo history and seed (cached embeddings stay)."""
        return await edit(request, session, body, lambda s: s.reset(), clicks=False)

    @app.post("/sessions/{session}/seed", dependencies=_SECURED)
    async def seed(request: Request, body: SetSeed, session: str = _SESSION):
        """Replace the seed mask (or remove it with null); the clicks are replayed on top."""
        entry = session_or_404(request, session)
        mask = None
        if body.mask is not None:
            mask = await run_in_threadpool(unpack_mask, body.mask, entry.volume.size[::-1])

        def change(s):
            s.seed(None if mask is None else image_on_grid(mask, entry.volume.image))

        return await edit(request, session, body, change)

    app.add_middleware(Guard, token=settings.token, max_body_bytes=settings.max_upload_bytes)
    return app
