"""What the web server refuses: requests without the token, cross-origin requests, foreign Host names.

The rules, checked on every request before any handler runs:

- A token always: loopback is not private (every local user can connect to it), and
  a recording holds prompts and answers. Without one given (``--server-token``, the
  ``AGENTSIGHT_TOKEN`` environment variable, which ``ps`` does not show, or a sink's
  ``token``), :func:`resolve_token` uses the one stored in
  ``~/.config/agentsight/web-token`` (0600, made on first use), and the server says
  its URL once with the token in it, ready to open.
- Binding: a non-loopback ``host`` needs a token given explicitly (:func:`check_binding`),
  so nothing reaches the server from another machine unless the user asked for both.
- Token (when set): ``Authorization: Bearer <token>``, or ``?token=<token>`` once,
  which sets an HttpOnly SameSite=Strict cookie and redirects to the same URL
  without it, so the token does not stay in the address bar or in history.
- Same origin only: a request whose ``Origin`` is not this server's own origin, or
  that the browser marks ``Sec-Fetch-Site: cross-site``, gets 403. No CORS headers
  are ever sent, so other sites cannot read responses either.
- Host: on a loopback binding, the ``Host`` header must name a loopback address, so a
  page on another site cannot reach the server through DNS rebinding.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:  # aiohttp (~11 MB) only where a server runs: the collector's supervisor reads TOKEN_ENV here
    from aiohttp import web
    from aiohttp.typedefs import Middleware

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

__all__ = ["is_loopback", "check_binding", "guard_middleware", "COOKIE", "TOKEN_ENV", "TokenError",
           "token_path", "stored_token", "resolve_token"]

COOKIE = "agentsight_token"
TOKEN_ENV = "AGENTSIGHT_TOKEN"             # the token, kept out of the command line
TOKEN_FILE_ENV = "AGENTSIGHT_TOKEN_FILE"   # where the generated token is stored (tests use a private one)


class TokenError(ValueError):
    """The stored token cannot be used (a file that is not the user's, or readable by others)."""


def token_path() -> Path:
    if os.environ.get(TOKEN_FILE_ENV):
        return Path(os.environ[TOKEN_FILE_ENV])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "agentsight" / "web-token"


def stored_token() -> str:
    """The user's web UI token: read from :func:`token_path`, or made (0600) on first use."""
    path = token_path()
    try:
        st = path.lstat()
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = secrets.token_urlsafe(24)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            return stored_token()  # another process made it first
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token
    if not path.is_file() or path.is_symlink() or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise TokenError(f"{path} must be a file of yours that only you can read (chmod 600 {path}), "
                         "or give a token with --server-token / $AGENTSIGHT_TOKEN")
    token = path.read_text().strip()
    if not token:
        raise TokenError(f"{path} is empty: delete it to make a new token")
    return token


def resolve_token(token: str) -> str:
    """The token to require: the one given, else $AGENTSIGHT_TOKEN, else the stored one."""
    return token or os.environ.get(TOKEN_ENV, "") or stored_token()

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
    from aiohttp import web

    resp = web.json_response({"error": message}, status=status)
    resp.headers.update(SECURITY_HEADERS)
    return resp


def guard_middleware(token: str, check_host: bool = True) -> Middleware:
    """The aiohttp middleware applying the rules above (``token`` empty: none required, tests of the rules only).

    ``check_host``: the server listens on loopback only, so a Host header must name loopback
    (a page on another site reaching it through DNS rebinding is refused before the token).
    """
    from aiohttp import web

    secret = token.encode()

    def token_ok(candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), secret)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if (check_host or not token) and not is_loopback(_host_name(host)):
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
