"""Request ids + structured access logs, the body-size limit, and Bearer-token checks.

Every response carries `X-Request-ID` (the client's, when it sent a sane one) and one JSON log line:
    {"event": "request", "request_id": "...", "method": "POST", "path": "/v1/completions",
     "status": 200, "latency_ms": 812.4, "client": "127.0.0.1"}
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
import uuid
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("serving.requests")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp, enabled: bool = True, metrics=None):
        self.app, self.enabled, self.metrics = app, enabled, metrics  # metrics: serving/metrics.ServerMetrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        scope["state"]["arrived"] = time.monotonic()  # time to first token counts from here
        started, status, domain = time.perf_counter(), 0, None

        async def send_with_id(message: Message) -> None:
            nonlocal status, domain
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.setdefault("headers", [])
                domain = next((v.decode("latin-1") for k, v in headers if k.lower() == b"x-domain-llm-domain"), None)
                headers.append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.metrics is not None:
                route = getattr(scope.get("route"), "path", None) or "unmatched"  # the template: bounded labels
                self.metrics.request_done(route, scope["method"], status or 499, domain,
                                          time.perf_counter() - started)
            if self.enabled:
                log.info(json.dumps({
                    "event": "request", "request_id": request_id, "method": scope["method"],
                    "path": scope["path"], "status": status or 499,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                    "client": (scope.get("client") or ("", 0))[0]}))


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413 before any handler parses them. Bodies are read up to the
    limit here (so a chunked upload without Content-Length cannot get past it) and replayed to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(send)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # later calls watch for the client disconnecting

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        message = f"request body larger than {self.max_bytes} bytes (serve.max_body_bytes)"
        body = json.dumps({"detail": message, "error": {"message": message, "type": "invalid_request_error",
                                                        "code": "body_too_large"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


bearer = HTTPBearer(auto_error=False, description="serve.api_key (or DOMAIN_LLM_API_KEY) when one is set")


BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def token_matches(credentials: HTTPAuthorizationCredentials | None, expected: str) -> bool:
    return credentials is not None and secrets.compare_digest(credentials.credentials.encode(), expected.encode())


# The web UI's session: a browser cannot add a Bearer header to a page load, so /ui/login turns the API key into
# this cookie (HttpOnly, SameSite=Strict: never sent by another site's page, so no cross-site request forgery;
# Secure when the page came over https). It expires, and /ui/logout revokes it on this server.
UI_COOKIE = "domain_llm_ui"
MAX_REVOKED = 10_000  # bounded memory: the oldest revocations go first (they expire anyway)


class UISessions:
    """Sign-in cookies of the web UI: `<expiry>.<nonce>.<hmac>`, keyed by the API key (the key itself never sits
    in the browser; a new key invalidates every cookie), refused after its expiry or once logged out."""

    def __init__(self, api_key: str | None, hours: float = 12.0):
        self.api_key, self.lifetime_s = api_key, int(hours * 3600)
        self._revoked: dict[str, float] = {}  # nonce -> expiry
        self._lock = threading.Lock()

    def _mac(self, payload: str) -> str:
        return hmac.new(self.api_key.encode(), f"domain-llm web UI session {payload}".encode(),
                        hashlib.sha256).hexdigest()

    def issue(self) -> str:
        payload = f"{int(time.time()) + self.lifetime_s}.{secrets.token_hex(16)}"
        return f"{payload}.{self._mac(payload)}"

    def valid(self, token: str) -> bool:
        if not self.api_key or token.count(".") != 2:
            return False
        expiry, nonce, mac = token.split(".")
        if not secrets.compare_digest(mac.encode(), self._mac(f"{expiry}.{nonce}").encode()):
            return False
        with self._lock:
            revoked = nonce in self._revoked
        return expiry.isdigit() and int(expiry) > time.time() and not revoked

    def revoke(self, token: str) -> None:
        if self.valid(token):
            expiry, nonce, _ = token.split(".")
            with self._lock:
                now = time.time()
                self._revoked = {n: e for n, e in self._revoked.items() if e > now}
                while len(self._revoked) >= MAX_REVOKED:
                    self._revoked.pop(next(iter(self._revoked)))
                self._revoked[nonce] = float(expiry)


def authorised(request: Request, credentials: HTTPAuthorizationCredentials | None, api_key: str,
               sessions: UISessions | None = None) -> bool:
    """The Bearer key, or a valid web UI session cookie."""
    if token_matches(credentials, api_key):
        return True
    cookie = request.cookies.get(UI_COOKIE, "")
    return bool(cookie) and sessions is not None and sessions.valid(cookie)


def api_key_check(api_key: str | None, sessions: UISessions | None = None):
    """A dependency: no-op without a configured key, else 401 unless `Authorization: Bearer <key>` (or a valid
    web UI session cookie). Without a key the OpenAPI spec declares no security scheme (clients and fuzzers see
    the truth)."""
    async def open_access() -> None:
        return None

    if api_key is None:
        return open_access

    async def check(request: Request, credentials: BearerCredentials) -> None:
        if not authorised(request, credentials, api_key, sessions):
            raise HTTPException(401, "missing or invalid API key: send `Authorization: Bearer <serve.api_key>`",
                                headers={"WWW-Authenticate": "Bearer"})
    return check


def admin_check(admin_token: str | None):
    """Admin endpoints are off (403) unless serve.admin_token is set; then its Bearer token is required."""
    async def check(credentials: BearerCredentials) -> None:
        if admin_token is None:
            raise HTTPException(403, "admin endpoints are disabled: set serve.admin_token "
                                     "(or DOMAIN_LLM_ADMIN_TOKEN) to enable them")
        if not token_matches(credentials, admin_token):
            raise HTTPException(401, "missing or invalid admin token: send `Authorization: Bearer "
                                     "<serve.admin_token>`", headers={"WWW-Authenticate": "Bearer"})
    return check
