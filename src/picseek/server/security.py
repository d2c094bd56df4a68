"""Safe by default: Host header check (no DNS rebinding), bounded request bodies, a bearer token and a
same-origin check for writes, and headers that keep browsers from guessing content types."""
from __future__ import annotations

import hmac
import json
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError
from .settings import ServerSettings

bearer = HTTPBearer(auto_error=False, scheme_name="token",
                    description="PICSEEK_TOKEN; needed for writes when the server is reachable from other machines")
BODY_OVERHEAD = 256 * 1024  # multipart boundaries and the small form fields around an upload
# Headers a reverse proxy adds to the requests it relays (the shipped deploy/nginx.conf sets the first three).
PROXY_HEADERS = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "forwarded")
HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
           (b"x-frame-options", b"DENY")]


async def _send_json(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": message, "code": code}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def host_of(value: str) -> str:
    """'example.org:8000' -> 'example.org'; '[::1]:8000' -> '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class GuardMiddleware:
    """Refuses requests for other Host names and bodies over the limit; adds safe headers to every answer."""

    def __init__(self, app: ASGIApp, settings: ServerSettings):
        self.app = app
        self.hosts = {h.lower() for h in settings.effective_allowed_hosts()}
        self.max_body = settings.max_upload_bytes + BODY_OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw = scope.get("headers", [])
        if sum(k.lower() == b"host" for k, _ in raw) > 1:  # which one counts differs between servers and proxies
            return await _send_json(send, 400, "bad_host", "more than one Host header: request refused")
        headers = {k.lower(): v.decode("latin-1") for k, v in raw}
        if "*" not in self.hosts and host_of(headers.get(b"host", "")) not in self.hosts:
            return await _send_json(send, 400, "bad_host", "this server answers only to "
                                    + ", ".join(sorted(self.hosts)) + " (Host header refused)")
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await _send_json(send, 400, "bad_request", "invalid Content-Length header")
            if int(length) > self.max_body:
                return await _send_json(send, 413, "too_large", f"request body too large ({int(length)} bytes; "
                                        f"limit {self.max_body} bytes)")
        await self.app(scope, self._limited(receive), self._with_headers(send))

    def _limited(self, receive: Receive) -> Receive:
        total = 0

        async def limited() -> Message:
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.max_body:
                    raise HTTPException(413, f"request body too large (limit {self.max_body} bytes)")
            return message

        return limited

    @staticmethod
    def _with_headers(send: Send) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in HEADERS if h[0] not in present]
            await send(message)

        return sending


def _same_origin(request: Request, settings: ServerSettings) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin in settings.cors_origins:
        return True
    netloc = urlsplit(origin).netloc.lower()
    return bool(netloc) and netloc == request.headers.get("host", "").lower()


def via_proxy(request: Request) -> bool:
    """True when a reverse proxy relayed the request (it says so in X-Forwarded-For, Forwarded, X-Real-IP, ...)."""
    return any(name in request.headers for name in PROXY_HEADERS)


def token_needed(request: Request) -> bool:
    """Whether a write needs the token. A loopback server trusts only requests made on this machine: one relayed by a
    reverse proxy may come from anywhere, so it needs the token like a request to a server bound beyond loopback."""
    settings: ServerSettings = request.app.state.settings
    return settings.writes_need_token or via_proxy(request)


def write_access(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    """Dependency of every write route: same origin (no cross-site writes), and the token where one is needed."""
    settings: ServerSettings = request.app.state.settings
    if not _same_origin(request, settings):
        raise ApiError(403, "cross_origin", "write requests from other web sites are refused")
    if not token_needed(request):
        return
    if not settings.token:
        raise ApiError(401, "token_required", "writes through a reverse proxy need a token, and this server has "
                       "none: start it with PICSEEK_TOKEN set", headers={"WWW-Authenticate": "Bearer"})
    if cred is None or not cred.credentials:
        raise ApiError(401, "token_required", "this write needs the server's token: send "
                       "'Authorization: Bearer $PICSEEK_TOKEN'", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(cred.credentials.encode(), (settings.token or "").encode()):
        raise ApiError(401, "bad_token", "wrong token", headers={"WWW-Authenticate": "Bearer"})
