"""A real `sammed3d serve` application under uvicorn in a thread, on 127.0.0.1 only."""
import socket
import threading
import time

import uvicorn

from sammed3d.server import Engine, ServerSettings, create_app

TOKEN = "test-token-5f2a9c"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerThread(object):
    """uvicorn serving create_app(...) on 127.0.0.1:port in a daemon thread; stop() ends it (sessions are lost)."""

    def __init__(self, model, port=None, token=TOKEN, clock=time.monotonic, ssl=None, **settings):
        self.port = port or free_port()
        self.url = "%s://127.0.0.1:%d" % ("https" if ssl else "http", self.port)
        self.app = create_app(Engine(model, label="test"), ServerSettings(token, **settings), clock=clock)
        tls = {"ssl_keyfile": ssl[0], "ssl_certfile": ssl[1]} if ssl else {}
        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error",
                                                     lifespan="on", **tls))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self):
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self):
        self._server.should_exit = True
        self._thread.join(timeout=20)

    @property
    def store(self):
        return self.app.state.store

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
