"""A connection to a `sammed3d serve` server: JSON and byte requests with a bearer token (standard library only).

Every failure becomes a :class:`RemoteError` with one line fit for a dialog: the server cannot be reached, did not
answer in time, refused the token, or refused the request (with the server's reason).
"""
from __future__ import annotations

import http.client
import json
import socket
import ssl
import uuid
from typing import Dict, Optional, Tuple
from urllib.parse import urlsplit

from ..errors import SamMed3DError

#: Seconds a request may take before the client gives up (an upload or a first click on a CPU server can be slow).
DEFAULT_TIMEOUT = 120.0


class RemoteError(SamMed3DError):
    """The server could not be used (unreachable, timed out, refused the request); ``status`` is the HTTP status."""

    def __init__(self, message: str, status: Optional[int] = None, code: Optional[str] = None):
        super().__init__(message)
        self.status = status
        self.code = code


class AuthenticationError(RemoteError):
    """The server refused the token (HTTP 401/403)."""


class ServerUnavailable(RemoteError):
    """No answer: connection refused or lost, or a timeout. The request may or may not have been applied."""


def check_server_url(url: str) -> str:
    """The URL without a trailing slash; SamMed3DError (one line) unless it is http(s)://host[:port][/path]."""
    text = (url or "").strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise SamMed3DError("%r is not a valid server URL (expected e.g. http://gpu-box:8000)" % url) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SamMed3DError("%r is not a valid server URL (expected http://host:port or https://host)" % url)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise SamMed3DError("the server URL must not contain a query, fragment or user name: %r" % url)
    del port
    return text.rstrip("/")


class ServerConnection(object):
    """Requests to one server with one token. Thread-safe (one HTTP connection per request).

    url: ``http://host:port`` (or https, optionally with a path prefix behind a reverse proxy); token: the server's
    bearer token; timeout: seconds per request; cafile: a CA bundle for https with a private CA.
    """

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT,
                 cafile: Optional[str] = None):
        self.url = check_server_url(url)
        parts = urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self.token = token or ""
        self.timeout = float(timeout)
        self.client_id = uuid.uuid4().hex
        self._ssl = ssl.create_default_context(cafile=cafile) if self._https else None
        self.info = {}  # type: Dict

    def _connection(self, timeout: float):
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def request(self, method: str, path: str, payload=None, body: Optional[bytes] = None,
                ok=(200, 201, 204), timeout: Optional[float] = None) -> Tuple[int, Dict]:
        """(status, JSON answer) of one request; RemoteError for anything but the `ok` statuses."""
        timeout = self.timeout if timeout is None else float(timeout)
        headers = {"Authorization": "Bearer " + self.token, "X-Client-Id": self.client_id,
                   "Accept": "application/json"}
        if payload is not None:
            body = json.dumps(payload, allow_nan=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif body is not None:
            headers["Content-Type"] = "application/octet-stream"
        connection = self._connection(timeout)
        try:
            connection.request(method, self._prefix + path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            status = response.status
        except socket.timeout:
            raise ServerUnavailable("the SAM-Med3D server at %s did not answer within %.0f s"
                                    % (self.url, timeout)) from None
        except ssl.SSLError as error:
            raise ServerUnavailable("TLS error talking to %s: %s" % (self.url, error.reason or error)) from None
        except (ConnectionError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "strerror", None) or type(error).__name__
            raise ServerUnavailable("cannot reach the SAM-Med3D server at %s (%s); is `sammed3d serve` running?"
                                    % (self.url, reason)) from None
        finally:
            connection.close()
        answer = {}
        if data:
            try:
                answer = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                answer = {"error": data[:200].decode("utf-8", "replace")}
        if status in ok:
            return status, answer
        message = answer.get("error") if isinstance(answer, dict) else None
        code = answer.get("code") if isinstance(answer, dict) else None
        if status in (401, 403):
            raise AuthenticationError("the SAM-Med3D server at %s refused the token (%s): check the token in the "
                                      "engine settings" % (self.url, message or status), status, code)
        raise RemoteError("the SAM-Med3D server refused the request: %s" % (message or "HTTP %d" % status),
                          status, code)

    def check(self, timeout: float = 15.0) -> Dict:
        """Ask the server who it is (needs a valid token): model, device, limits. Raises RemoteError otherwise."""
        _, self.info = self.request("GET", "/info", timeout=min(timeout, self.timeout))
        return self.info

    def __repr__(self):
        return "ServerConnection(%r)" % self.url


def connect(url: str, token: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT,
            cafile: Optional[str] = None) -> ServerConnection:
    """A checked connection: the server answers and accepts the token (RemoteError with the reason otherwise)."""
    connection = ServerConnection(url, token, timeout=timeout, cafile=cafile)
    connection.check()
    return connection
