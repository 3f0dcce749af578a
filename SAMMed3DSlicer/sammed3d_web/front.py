"""The front process of ``sammed3d web``: one scene (child process) per browser tab, behind one address.

``GET /`` claims a scene (a pre-started one when free) and redirects the tab to ``/s/<scene id>/``; everything under
that prefix (the page, its files, its websocket ``/s/<id>/ws``) is forwarded to that scene's child on 127.0.0.1 with
the child's internal token.
Reloading the tab keeps its scene; a new tab (``/``) gets a new one. The front checks the user's token (when one is
set) on every request and websocket before anything is forwarded. Beyond ``max_scenes`` the page answers 503.
``GET /status`` tells how many scenes run (JSON) without starting one.
"""
from __future__ import annotations

import asyncio
import signal
from typing import Optional

from aiohttp import ClientError, ClientSession, ClientTimeout, WSMsgType, web

from .auth import add_token_check
from .scenes import Scene, SceneLauncher, SceneLimitError, SceneStartError

#: Request / response headers not forwarded (hop-by-hop, or rewritten here).
DROPPED_REQUEST_HEADERS = {"host", "connection", "keep-alive", "upgrade", "te", "trailer", "transfer-encoding",
                           "proxy-authorization", "authorization", "cookie", "content-length"}
DROPPED_RESPONSE_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "set-cookie"}

BUSY_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>SAM-Med3D: all scenes in use</title></head>
<body style="font-family: sans-serif; margin: 3em;"><h2>All %d scenes are in use</h2>
<p>This <code>sammed3d web</code> server runs at most %d scenes (browser tabs) at once (<code>--max-scenes</code>).
Close another SAM-Med3D tab and try again: a scene is freed %s after its tab closes.</p></body></html>
"""


def describe_seconds(seconds: float) -> str:
    return "%d minute(s)" % round(seconds / 60.0) if seconds >= 120 else "%d seconds" % round(seconds)


class Front(object):
    """The aiohttp application that hands out scenes and forwards each tab's traffic to its scene."""

    def __init__(self, launcher: SceneLauncher, token: Optional[str] = None, reap_interval: Optional[float] = None):
        self.launcher = launcher
        self.token = token
        self.reap_interval = reap_interval or max(0.2, min(5.0, launcher.idle_timeout / 4.0))
        self.session: Optional[ClientSession] = None
        self._reaper = None
        self.app = web.Application(client_max_size=1024 ** 3)
        if token:
            add_token_check(self.app, token)
        self.app.router.add_get("/", self.new_scene, allow_head=False)  # (HEAD probes take no scene)
        self.app.router.add_get("/index.html", self.new_scene, allow_head=False)
        self.app.router.add_get("/status", self.status)
        self.app.router.add_route("*", "/s/{scene}", self.to_scene_root)
        self.app.router.add_route("*", "/s/{scene}/{tail:.*}", self.forward)
        self.app.on_startup.append(self._on_startup)
        self.app.on_cleanup.append(self._on_cleanup)

    # ---- lifecycle ------------------------------------------------------------------------------------------------
    async def _on_startup(self, _app) -> None:
        self.session = ClientSession(auto_decompress=False, timeout=ClientTimeout(total=None, sock_connect=10))
        self.launcher.session = self.session
        self._reaper = asyncio.ensure_future(self._reap_forever())

    async def _on_cleanup(self, _app) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        await self.launcher.stop_all()
        await self.session.close()

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval)
            for scene in await self.launcher.reap():
                print("sammed3d web: scene %d stopped (%s)" % (
                    scene.slot, "its tab has been gone for %s" % describe_seconds(self.launcher.idle_timeout)
                    if scene.process.returncode in (None, 0, -signal.SIGTERM) else
                    "exited with status %s" % scene.process.returncode), flush=True)

    # ---- routes ---------------------------------------------------------------------------------------------------
    async def new_scene(self, request):
        try:
            scene = self.launcher.claim()
        except SceneLimitError:
            limit = self.launcher.max_scenes
            return web.Response(status=503, content_type="text/html", headers={"Retry-After": "30"},
                                text=BUSY_PAGE % (limit, limit, describe_seconds(self.launcher.idle_timeout)))
        print("sammed3d web: scene %d for a new tab (saves to %s)" % (scene.slot, scene.output), flush=True)
        raise web.HTTPFound("/s/%s/" % scene.id)

    async def status(self, request):
        """Scenes in use (for monitoring; starts nothing)."""
        scenes = self.launcher.scenes.values()
        return web.json_response({
            "max_scenes": self.launcher.max_scenes, "scenes": len(self.launcher.scenes),
            "connected": sum(1 for scene in scenes if scene.connections > 0),
            "idle_timeout_s": self.launcher.idle_timeout})

    async def to_scene_root(self, request):
        raise web.HTTPFound("/s/%s/" % request.match_info["scene"])

    def _scene(self, request) -> Scene:
        scene = self.launcher.scenes.get(request.match_info["scene"])
        if scene is None or not scene.alive():
            if request.method == "GET" and request.match_info.get("tail", "") in ("", "index.html"):
                raise web.HTTPFound("/")  # a scene stopped while its tab was away: start a new one
            raise web.HTTPNotFound(text="this scene has stopped; open the page again\n")
        return scene

    async def forward(self, request):
        scene = self._scene(request)
        try:
            await self.launcher.wait_ready(scene)
        except SceneStartError as error:
            return web.Response(status=503, text="the scene could not start: %s\n" % error)
        scene.touch()
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._forward_websocket(request, scene)
        return await self._forward_http(request, scene)

    def _target(self, request, scene: Scene) -> str:
        tail = request.match_info.get("tail", "")
        return "%s/%s%s" % (scene.url, tail, "?" + request.query_string if request.query_string else "")

    def _headers(self, request, scene: Scene) -> dict:
        headers = {key: value for key, value in request.headers.items()
                   if key.lower() not in DROPPED_REQUEST_HEADERS}
        headers["Authorization"] = "Bearer " + scene.token
        return headers

    async def _forward_http(self, request, scene: Scene):
        body = await request.read() if request.can_read_body else None
        try:
            upstream = await self.session.request(request.method, self._target(request, scene), data=body,
                                                  headers=self._headers(request, scene), allow_redirects=False)
        except (ClientError, asyncio.TimeoutError, OSError):
            return web.Response(status=502, text="this scene does not answer; open the page again\n")
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() in DROPPED_RESPONSE_HEADERS:
                    continue
                if key.lower() == "location" and value.startswith("/"):
                    value = "/s/%s%s" % (scene.id, value)
                response.headers.add(key, value)
            if upstream.content_length is not None:  # bytes are passed on as they come (never decompressed)
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(1 << 16):
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _forward_websocket(self, request, scene: Scene):
        browser = web.WebSocketResponse(max_msg_size=0, autoping=True, heartbeat=None)
        await browser.prepare(request)
        scene.connections += 1
        try:
            async with self.session.ws_connect(self._target(request, scene), headers={
                    "Authorization": "Bearer " + scene.token}, max_msg_size=0, autoping=True) as child:
                await asyncio.gather(self._pump(browser, child), self._pump(child, browser))
        except Exception:  # the child went away or refused: close the tab's websocket (it shows "disconnected")
            pass
        finally:
            scene.connections -= 1
            scene.touch()
            if not browser.closed:
                await browser.close()
        return browser

    @staticmethod
    async def _pump(source, sink) -> None:
        """Copy websocket messages from source to sink until either closes; then close the other."""
        try:
            async for message in source:
                if message.type == WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
                else:
                    break
        finally:
            if not sink.closed:
                await sink.close()


async def serve(front: Front, host: str, port: int, on_ready=None, prestart: bool = True) -> None:
    """Run the front until SIGINT / SIGTERM. It listens first (the port is held), then pre-starts one scene (its model
    loads before the first tab opens; SceneStartError if it cannot start); ``on_ready()`` is called once that scene
    answers. Stops every scene on the way out."""
    runner = web.AppRunner(front.app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        stopping = asyncio.Event()
        loop = asyncio.get_event_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stopping.set)
            except (NotImplementedError, RuntimeError):
                pass
        await web.TCPSite(runner, host, port).start()
        stop_waiter = asyncio.ensure_future(stopping.wait())
        if prestart:
            first = asyncio.ensure_future(front.launcher.wait_ready(front.launcher.start_scene()))
            await asyncio.wait([first, stop_waiter], return_when=asyncio.FIRST_COMPLETED)
            if not first.done():
                first.cancel()
            elif first.exception() is not None:
                raise first.exception()
        if on_ready is not None and not stopping.is_set():
            on_ready()
        await stop_waiter
    finally:
        await runner.cleanup()
