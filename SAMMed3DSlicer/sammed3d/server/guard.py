"""The server's front door (an ASGI middleware): bearer token and body size, checked before any routing or parsing.

Every path except the public ones (health and the API description) needs ``Authorization: Bearer <token>``,
compared in constant time; a missing or wrong token gets 401 whatever the body. Bodies need a Content-Length no
larger than the limit (413 otherwise, 411 without a length), so no request can make the server buffer more.
"""
import hmac
import ipaddress
import json

#: Paths anyone may read: liveness and the API description.
PUBLIC_PATHS = frozenset(["/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"])


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (binding there exposes the server to this machine only)."""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_matches(header_value: bytes, token: str) -> bool:
    scheme, _, given = header_value.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8"))


async def _reply(send, status: int, message: str, code: str, headers=()):
    body = json.dumps({"error": message, "code": code}).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                + list(headers)})
    await send({"type": "http.response.body", "body": body})


class Guard(object):
    """ASGI middleware: token and body-size checks in front of `app`."""

    def __init__(self, app, token: str, max_body_bytes: int):
        if not token:
            raise ValueError("the server needs a token")
        self.app = app
        self.token = token
        self.max_body_bytes = int(max_body_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict((k.lower(), v) for k, v in scope.get("headers", []))
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        if path not in PUBLIC_PATHS:
            authorization = headers.get(b"authorization")
            if authorization is None:
                return await _reply(send, 401, "this server needs a token: send 'Authorization: Bearer <token>'",
                                    "unauthorized", [(b"www-authenticate", b"Bearer")])
            if not token_matches(authorization, self.token):
                return await _reply(send, 401, "wrong token", "unauthorized",
                                    [(b"www-authenticate", b'Bearer error="invalid_token"')])
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            length = headers.get(b"content-length")
            if length is None:
                if headers.get(b"transfer-encoding"):
                    return await _reply(send, 411, "send a Content-Length (chunked bodies are not accepted)",
                                        "length_required")
            else:
                try:
                    size = int(length)
                except ValueError:
                    return await _reply(send, 400, "invalid Content-Length", "bad_request")
                if size > self.max_body_bytes:
                    return await _reply(send, 413, "the request body has %d bytes; this server accepts at most %d"
                                        % (size, self.max_body_bytes), "too_large")
        return await self.app(scope, receive, send)
