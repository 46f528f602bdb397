"""WebSockets that end with their session.

A WebSocket outlives the access token that opened it, so the token check at the upgrade is
not enough: `SessionSocket` closes the socket with code 4401 when the session is revoked
(sign-out, reuse, password change, ... on any instance: it waits on the in-memory revocation
set that polling or a database push keeps current) or when the access token expires without
the client having sent `{"type": "reauth", "accessToken": "<newer token>"}`.

    @auth.requires()
    async def live(request):
        socket = await auth.websocket(request)
        async for message in socket:          # text and binary frames; reauth is handled
            if message.type is WSMsgType.TEXT:
                await socket.send_json({"got": message.data})
        return socket.response

Each process holds at most `server.max_websockets_per_user` open sockets per user and
`server.max_websockets_per_address` per client address (`OpenSockets`), so that one
account or one address cannot hold the connections everyone else needs; beyond, the
upgrade is refused with 429 `rate_limited`. At shutdown every open socket is closed
with 1001 (going away), so that clients reconnect to another instance at once instead
of waiting for a dropped connection to time out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator

from aiohttp import WSCloseCode, WSMsgType, web

from . import clock, errors, keys
from .clientaddr import client_key
from .errors import ApiError
from .middleware import ConflictingTokens, read_access_token, render_error
from .service import AuthService
from .tokens import AccessClaims

CLOSE_CODE = 4401
QUERY_TOKEN = "access_token"
HEARTBEAT_SECONDS = 30
SHUTDOWN_CODE = WSCloseCode.GOING_AWAY  # 1001
SHUTDOWN_REASON = "server shutdown"
# Retry-After of a refused upgrade: sockets end at no predictable time.
QUOTA_RETRY_SECONDS = 5


def read_socket_token(request: web.BaseRequest) -> str | None:
    """Headers as usual, else `?access_token=`: browsers cannot set headers on a
    WebSocket."""
    token = read_access_token(request)
    if token is None:
        token = request.query.get(QUERY_TOKEN, "").strip() or None
    return token


class OpenSockets:
    """The session sockets open in this process, counted per user and per client
    address against their quotas, and closed together at shutdown."""

    def __init__(self, per_user: int, per_address: int) -> None:
        self.per_user = per_user
        self.per_address = per_address
        self._owners: dict[SessionSocket, tuple[str, str]] = {}
        self._counts: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._owners)

    def count(self, owner: str) -> int:
        """Open sockets of `user:<id>` or `address:<rate-limit key>`."""
        return self._counts[owner]

    def reserve(self, socket: SessionSocket, user_id: str, address: str) -> None:
        """Count `socket` for its user and address, or raise 429 `rate_limited` when
        either is at its quota (before the upgrade: nothing is held)."""
        owners = (f"user:{user_id}", f"address:{address}")
        if (
            self._counts[owners[0]] >= self.per_user
            or self._counts[owners[1]] >= self.per_address
        ):
            raise errors.rate_limited(QUOTA_RETRY_SECONDS)
        self._owners[socket] = owners
        self._counts.update(owners)

    def release(self, socket: SessionSocket) -> None:
        """Give the socket's places back (once, however often called)."""
        owners = self._owners.pop(socket, ())
        self._counts.subtract(owners)
        for owner in owners:
            if self._counts[owner] <= 0:
                del self._counts[owner]

    async def close_all(self) -> None:
        """Close every open socket with 1001 (going away): at app shutdown."""
        sockets = [socket for socket in self._owners if socket.response.prepared]
        await asyncio.gather(
            *(socket.close(SHUTDOWN_CODE, SHUTDOWN_REASON) for socket in sockets),
            return_exceptions=True,
        )


class SessionSocket:
    """An upgraded WebSocket bound to one session; iterate it for the client's frames."""

    def __init__(
        self,
        service: AuthService,
        claims: AccessClaims,
        poll: float,
        sockets: OpenSockets | None = None,
    ) -> None:
        self.response = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS)
        self.claims = claims
        self._service = service
        self._poll = poll
        self._sockets = sockets
        self._expires_at = claims.expires_at
        self._watcher: asyncio.Task[None] | None = None

    async def prepare(self, request: web.Request) -> None:
        """Upgrade within the quotas (429 before the upgrade when over one)."""
        if self._sockets is not None:
            self._sockets.reserve(self, self.claims.user_id, client_key(request))
        try:
            await self.response.prepare(request)
        except BaseException:
            self._release()
            raise
        self._watcher = asyncio.ensure_future(self._watch())
        handler = asyncio.current_task()
        if handler is not None:  # the socket ends with its handler, however it ends
            handler.add_done_callback(self._handler_done)

    def _handler_done(self, _handler: asyncio.Task) -> None:
        """A handler that returned, raised or was cancelled holds no place any more:
        aiohttp does not always mark the response closed (a handler that raised after
        the upgrade), so the watcher would hold it until the token expired."""
        if self._watcher is not None:
            self._watcher.cancel()
        self._release()

    def _release(self) -> None:
        if self._sockets is not None:
            self._sockets.release(self)

    async def send_str(self, data: str) -> None:
        await self.response.send_str(data)

    async def send_json(self, data: object) -> None:
        await self.response.send_str(json.dumps(data))

    async def close(self, code: int = CLOSE_CODE, reason: str = "") -> None:
        await self.response.close(code=code, message=reason.encode())

    async def __aiter__(self) -> AsyncIterator[web.WSMessage]:
        try:
            async for message in self.response:
                if message.type is WSMsgType.TEXT and await self._reauthed(message):
                    continue
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    yield message
        finally:
            await self._stop_watching()

    async def _reauthed(self, message: web.WSMessage) -> bool:
        """Handle a `reauth` frame (True), or leave the frame to the caller (False)."""
        try:
            frame = json.loads(message.data)
        except ValueError:
            return False
        if not isinstance(frame, dict) or frame.get("type") != "reauth":
            return False
        token = frame.get("accessToken")
        try:
            claims = await self._service.authenticate_async(
                token if isinstance(token, str) else None
            )
        except ApiError:
            await self.close(reason="invalid token")
            return True
        if claims.session_id != self.claims.session_id:
            await self.close(reason="token of another session")
            return True
        self.claims = claims
        self._expires_at = max(self._expires_at, claims.expires_at)
        return True

    async def _watch(self) -> None:
        """Close at revocation (at once) or expiry (checked every poll interval, on the
        server clock). The socket counts as open while this runs."""
        revocations = self._service.revocations
        session_id = self.claims.session_id
        revoked = revocations.revoked(session_id)
        metrics = self._service.metrics
        metrics.socket_opened()
        try:
            while not self.response.closed:
                if revoked.is_set():
                    await self.close(reason="session revoked")
                    return
                left = self._expires_at - clock.now()
                if left <= 0:
                    await self.close(reason="token expired")
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(revoked.wait(), min(left, self._poll))
        finally:
            revocations.forget_waiter(session_id, revoked)
            metrics.socket_closed()
            self._release()

    async def _stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        self._release()  # also when the watcher was cancelled before it ran


async def open_session_socket(
    request: web.Request,
    service: AuthService,
    poll: float,
    sockets: OpenSockets | None = None,
) -> SessionSocket:
    """Authenticate (unless a guard already did) and upgrade, for a host's handler. A
    refused token or a full quota raises an HTTP error carrying the contract's JSON
    body, before any upgrade."""
    try:
        return await _open(request, service, poll, sockets)
    except ApiError as error:
        raise ContractHttpError(request, error) from None


async def _open(
    request: web.Request,
    service: AuthService,
    poll: float,
    sockets: OpenSockets | None,
) -> SessionSocket:
    """`open_session_socket` raising ApiError: on our own route the middleware renders
    it (and logs and counts a 429 like any other)."""
    claims = request.get(keys.CLAIMS)
    if claims is None:
        try:
            claims = await service.authenticate_async(read_socket_token(request))
        except ConflictingTokens:
            raise errors.token_invalid() from None
    socket = SessionSocket(service, claims, poll, sockets)
    await socket.prepare(request)
    return socket


class ContractHttpError(web.HTTPException):
    """An HTTP error whose status and body are the contract's."""

    def __init__(self, request: web.Request, error: ApiError) -> None:
        self.status_code = error.status
        response = render_error(request, error)
        super().__init__(
            text=response.text, content_type="application/json", headers=error.headers
        )


async def echo(request: web.Request) -> web.WebSocketResponse:
    """`GET /api/ws`: hello, then an echo of every text frame, until the session ends."""
    auth = request.app[keys.AUTH]
    socket = await _open(
        request, auth.service, auth.settings.tokens.revocation_poll, auth.sockets
    )
    claims = socket.claims
    await socket.send_json(
        {"type": "hello", "userId": claims.user_id, "sessionId": claims.session_id}
    )
    async for message in socket:
        if message.type is WSMsgType.TEXT:
            await socket.send_json({"type": "echo", "data": message.data})
    return socket.response
