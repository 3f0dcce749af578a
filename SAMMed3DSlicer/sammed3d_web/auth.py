"""Token check for every HTTP request and websocket of the web app (required when it listens beyond localhost).

Open the page once as ``http://HOST:PORT/?token=T``: the token is then kept in a cookie (HttpOnly, SameSite=Strict)
that the page's own requests and its websocket send back. Anything else gets 401.
"""
from __future__ import annotations

import hmac

COOKIE = "sammed3d_web_token"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS


def _matches(given, token: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).encode("utf-8"), token.encode("utf-8"))


def add_token_check(app, token: str) -> None:
    """Make the aiohttp ``app`` refuse requests without the token (query ``?token=``, header or cookie)."""
    from aiohttp import web

    @web.middleware
    async def check_token(request, handler):
        header = request.headers.get("Authorization", "")
        bearer = header[7:] if header.lower().startswith("bearer ") else None
        from_query = request.query.get("token")
        if not (_matches(from_query, token) or _matches(bearer, token) or _matches(request.cookies.get(COOKIE), token)):
            return web.Response(status=401, text="401: this sammed3d web server needs its token: open "
                                                 "http://HOST:PORT/?token=YOUR_TOKEN\n")
        remember = _matches(from_query, token)
        try:
            response = await handler(request)
        except web.HTTPException as redirect:  # "/" redirects to index.html: keep the token across it
            if remember:
                redirect.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
            raise
        if remember and isinstance(response, web.StreamResponse) and not response.prepared:
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response

    app.middlewares.append(check_token)
