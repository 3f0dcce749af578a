"""A minimal scene process for the launcher tests (Testing/test_web_scenes.py): what the front needs from a scene
(HTTP and a websocket on 127.0.0.1:PORT, its internal token, exit when the front's pipe closes), without Slicer.

Usage: python web_scene_child.py PORT OUTPUT
"""
import os
import sys

from aiohttp import web

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "SAMMed3DSlicer"))
from sammed3d_web.scenes import TOKEN_ENV, exit_with_parent  # noqa: E402


def main():
    port, output = int(sys.argv[1]), sys.argv[2]
    token = os.environ[TOKEN_ENV]
    exit_with_parent()

    @web.middleware
    async def internal_token(request, handler):
        if request.headers.get("Authorization") != "Bearer " + token:
            return web.Response(status=401, text="no token")
        return await handler(request)

    async def page(request):
        return web.Response(text="scene pid=%d output=%s path=%s query=%s" % (
            os.getpid(), output, request.path, request.query_string))

    async def moved(request):
        raise web.HTTPFound("/index.html")

    async def echo(request):
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            if message.type == web.WSMsgType.TEXT:
                await socket.send_str("%d:%s" % (os.getpid(), message.data))
            elif message.type == web.WSMsgType.BINARY:
                await socket.send_bytes(message.data[::-1])
        return socket

    app = web.Application(middlewares=[internal_token])
    app.router.add_get("/", page)
    app.router.add_get("/index.html", page)
    app.router.add_get("/moved", moved)
    app.router.add_get("/ws", echo)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
