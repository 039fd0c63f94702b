"""What the web server refuses: other hosts without a token, cross-origin requests, foreign Host names.

The rules, checked on every request before any handler runs:

- Binding: a non-loopback ``host`` needs a token (:func:`check_binding`), so nothing
  reaches the server from another machine unless the user asked for both.
- Token (when set): ``Authorization: Bearer <token>``, or ``?token=<token>`` once,
  which sets an HttpOnly SameSite=Strict cookie and redirects to the same URL
  without it, so the token does not stay in the address bar or in history.
- Same origin only: a request whose ``Origin`` is not this server's own origin, or
  that the browser marks ``Sec-Fetch-Site: cross-site``, gets 403. No CORS headers
  are ever sent, so other sites cannot read responses either.
- Host: without a token, the ``Host`` header must name a loopback address, so a
  page on another site cannot reach the server through DNS rebinding.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

__all__ = ["is_loopback", "check_binding", "guard_middleware", "COOKIE"]

COOKIE = "agentsight_token"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    # vis-timeline and uPlot set inline styles, hence 'unsafe-inline' for styles only.
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data:; font-src 'self'; connect-src 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    h = host.strip().strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str) -> str | None:
    """The problem with serving on ``host`` with ``token``, or None."""
    if not host:
        return "host is empty"
    if not is_loopback(host) and not token:
        return (f"refusing to serve on {host} without a token: anyone who can reach it would see the "
                "captured prompts and data (set a token, or bind 127.0.0.1)")
    return None


def _host_name(host_header: str) -> str:
    """The name part of a Host header (``[::1]:7395`` -> ``::1``, ``localhost:80`` -> ``localhost``)."""
    h = host_header.strip()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def _refuse(status: int, message: str) -> web.Response:
    resp = web.json_response({"error": message}, status=status)
    resp.headers.update(SECURITY_HEADERS)
    return resp


def guard_middleware(token: str) -> Middleware:
    """The aiohttp middleware applying the rules above; ``token`` empty means no token."""
    secret = token.encode()

    def token_ok(candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), secret)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if not token and not is_loopback(_host_name(host)):
            return _refuse(403, f"Host {host!r} is not a loopback name; open http://127.0.0.1:<port>/")
        origin = request.headers.get("Origin")
        if origin is not None and origin != "null":
            parts = urlsplit(origin)
            if parts.netloc.lower() != host.lower() or parts.scheme not in ("http", "https"):
                return _refuse(403, "cross-origin requests are refused")
        elif origin == "null":
            return _refuse(403, "cross-origin requests are refused")
        if request.headers.get("Sec-Fetch-Site", "") == "cross-site":
            return _refuse(403, "cross-origin requests are refused")
        if token:
            given = request.query.get("token")
            if given is not None:
                if not token_ok(given):
                    return _refuse(401, "wrong token")
                # Trade the token in the URL for a cookie, and drop it from the address bar.
                rest = [(k, v) for k, v in request.query.items() if k != "token"]
                redirect = web.HTTPSeeOther(location=str(request.rel_url.with_query(rest)))
                redirect.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
                raise redirect
            auth = request.headers.get("Authorization", "")
            bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
            if not (token_ok(bearer) or token_ok(request.cookies.get(COOKIE))):
                return _refuse(401, "this server needs a token: open the URL with ?token=... once, "
                                    "or send Authorization: Bearer <token>")
        resp = await handler(request)
        if not resp.prepared:  # a stream (SSE) sets its headers itself before it starts
            resp.headers.update(SECURITY_HEADERS)
        return resp

    return guard
