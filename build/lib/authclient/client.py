"""AuthClient: sign in, send the access token with every call, and answer any number of
simultaneous 401s with one refresh.

State and its invariant: `_tokens` is the current pair (or `None` when signed out), and
`_epoch` counts sign-ins and sign-outs. Within one epoch the tokens change only by a
refresh adopting its successor pair, so a call can tell "my token was already refreshed"
(same epoch, different access token: retry with the current one) from "my sign-in is over"
(another epoch: give up). That comparison is what the seeds' Axios interceptors lack: a
call whose 401 arrives after the refresh finished refreshes again there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, NoReturn, Self

import aiohttp
from multidict import CIMultiDict

from authclient.errors import ApiError, AuthClientError, NotSignedIn, SessionExpired
from authclient.models import Response, Tokens, User


class AuthClient:
    """A client of the auth server for one user at a time; asyncio-safe, not
    thread-safe. Use it as `async with AuthClient(url) as client: ...`.

    `session` lets an app share its own `aiohttp.ClientSession` (the client then never
    closes it); without it the client opens one on first use and closes it in `close()`.
    `auth_prefix` is where the auth routes are mounted (`/api/auth` on the standalone
    server). `timeout` applies to the session the client opens itself.
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        auth_prefix: str = "/api/auth",
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._prefix = "/" + auth_prefix.strip("/")
        self._session = session
        self._owns_session = session is None
        self._timeout = timeout
        self._tokens: Tokens | None = None
        self._epoch = 0
        self._refreshing: asyncio.Task[str] | None = None
        # The epoch a refused refresh ended, and the refusal: calls of that sign-in whose
        # 401 arrives later fail with the same error as the ones that waited for it.
        self._refused_epoch: tuple[int, SessionExpired] | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop a refresh in flight and close the session if the client opened it. The
        server session is left alone: call `signout()` first to end it."""
        task, self._refreshing = self._refreshing, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def signed_in(self) -> bool:
        return self._tokens is not None

    @property
    def tokens(self) -> Tokens | None:
        """The current pair, for inspection; the client keeps it in memory only."""
        return self._tokens

    # --- the auth routes -------------------------------------------------------------

    async def signup(
        self,
        username: str,
        email: str,
        password: str,
        *,
        roles: list[str] | None = None,
    ) -> str:
        """Register a user and return its id. Roles above `user` need this client to be
        signed in as an admin (its token goes with the request like any call's)."""
        body: dict[str, Any] = {
            "username": username,
            "email": email,
            "password": password,
        }
        if roles is not None:
            body["roles"] = list(roles)
        response = await self.request("POST", self._prefix + "/signup", json=body)
        return str(response.json()["id"])

    async def signin(
        self,
        *,
        username: str | None = None,
        email: str | None = None,
        password: str,
    ) -> User:
        """Sign in by username or by email and keep the token pair in memory.

        Signing in again replaces the pair without ending the previous server session;
        calls still in flight under the previous sign-in will not be retried with the
        new user's token."""
        if (username is None) == (email is None):
            raise ValueError("give exactly one of username and email")
        body = {"username": username} if username is not None else {"email": email}
        body["password"] = password
        response = await self._send(
            "POST", self._prefix + "/signin", None, {"json": body}
        )
        if response.status != 200:
            raise _error(response)
        data = response.json()
        self._start_epoch(_token_pair(data, previous=None))
        return User(
            id=str(data["id"]),
            username=data["username"],
            email=data["email"],
            roles=tuple(data["roles"]),
        )

    async def refresh(self) -> None:
        """Exchange the refresh token for a new pair now; joins a refresh already in
        flight. Raises `SessionExpired` (and forgets the tokens) if the server refuses."""
        if self._tokens is None:
            raise NotSignedIn("sign in first")
        await self._join_refresh()

    async def signout(self) -> None:
        """Revoke this session at the server and forget the tokens. Idempotent. The
        tokens are forgotten even when the request fails (the error is then raised and
        the server session lasts until its refresh token expires)."""
        if self._refreshing is not None:
            # Let a refresh in flight settle so the token revoked is the latest one.
            await asyncio.wait([self._refreshing])
        tokens = self._tokens
        if tokens is None:
            return
        self._start_epoch(None)
        body = {"refreshToken": tokens.refresh}
        response = await self._send(
            "POST", self._prefix + "/signout", None, {"json": body}
        )
        if response.status != 200:
            raise _error(response)

    # --- any call ----------------------------------------------------------------------

    async def request(self, method: str, path: str, **kwargs: Any) -> Response:
        """Send `method path` (path from the server root, e.g. `/api/users/me`) with
        the access token, refresh once on a 401 and retry once. `kwargs` go to aiohttp
        (`json=`, `params=`, `headers=`, ...); a body must be re-sendable (not a
        stream) for the retry. Returns the response read in full; raises `ApiError`
        for a status of 400 or more and `SessionExpired` when the sign-in is over."""
        tokens, epoch = self._tokens, self._epoch
        used = tokens.access if tokens is not None else None
        response = await self._send(method, path, used, kwargs)
        if response.status == 401 and used is not None:
            fresh = await self._access_after_401(used, epoch, response)
            response = await self._send(method, path, fresh, kwargs)
        if response.status >= 400:
            raise _error(response)
        return response

    async def get(self, path: str, **kwargs: Any) -> Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Response:
        return await self.request("POST", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> Response:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Response:
        return await self.request("DELETE", path, **kwargs)

    # --- the single-flight refresh -----------------------------------------------------

    async def _access_after_401(self, used: str, epoch: int, answer: Response) -> str:
        """The access token to retry with: the current one if a refresh already
        replaced `used`, else the result of the one refresh in flight."""
        if epoch != self._epoch:
            # Signed out, signed in again, or a refresh failed while this call ran.
            ended = self._refused_epoch
            error = ended[1] if ended and ended[0] == epoch else _error(answer)
            raise SessionExpired(error.status, error.code, error.message)
        assert self._tokens is not None  # same epoch as a call made with a token
        if self._tokens.access != used:
            return self._tokens.access
        return await self._join_refresh()

    async def _join_refresh(self) -> str:
        if self._refreshing is None:
            task = asyncio.create_task(self._run_refresh())
            task.add_done_callback(_retrieve)
            self._refreshing = task
        # Shielded: a caller that is cancelled must not cancel the others' refresh.
        return await asyncio.shield(self._refreshing)

    async def _run_refresh(self) -> str:
        try:
            tokens, epoch = self._tokens, self._epoch
            if tokens is None:
                raise NotSignedIn("sign in first")
            body = {"refreshToken": tokens.refresh}
            path = self._prefix + "/refreshtoken"
            response = await self._send("POST", path, None, {"json": body})
            if response.status != 200:
                self._refused(response, epoch)
            fresh = _token_pair(response.json(), previous=tokens.refresh)
            if epoch != self._epoch:
                raise SessionExpired(401, None, "signed out or in during the refresh")
            self._tokens = fresh
            return fresh.access
        finally:
            if self._refreshing is asyncio.current_task():
                self._refreshing = None

    def _refused(self, response: Response, epoch: int) -> NoReturn:
        """Every refusal of a refresh token in the contract is a 403 (`refresh_*`): the
        session is over. Anything else (429, 503, ...) may pass: keep the tokens."""
        error = _error(response)
        if response.status != 403:
            raise error
        expired = SessionExpired(error.status, error.code, error.message)
        if epoch == self._epoch:
            self._start_epoch(None)
            self._refused_epoch = (epoch, expired)
        raise expired

    def _start_epoch(self, tokens: Tokens | None) -> None:
        """A sign-in or a sign-out: calls and refreshes of the previous one are detached
        (they finish on their own and adopt nothing)."""
        self._tokens = tokens
        self._epoch += 1
        self._refreshing = None

    # --- HTTP --------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = self._timeout or aiohttp.ClientTimeout(total=30)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def _send(
        self, method: str, path: str, token: str | None, kwargs: Mapping[str, Any]
    ) -> Response:
        if not path.startswith("/"):
            # Never a full URL: the bearer token must not go to another host.
            raise ValueError(f"path must start with '/': {path!r}")
        options = dict(kwargs)
        headers = CIMultiDict(options.pop("headers", None) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        url = self._base_url + path
        async with self._http().request(
            method, url, headers=headers, **options
        ) as answer:
            body = await answer.read()
            return Response(
                answer.status, answer.headers, body, answer.charset or "utf-8"
            )


def _error(response: Response) -> ApiError:
    return ApiError.from_body(response.status, response.body)


def _token_pair(data: Any, previous: str | None) -> Tokens:
    """The pair of a sign-in or refresh body; a server that does not rotate answers the
    same refresh token (or, behind some proxies, none: keep the previous one)."""
    access = data.get("accessToken") if isinstance(data, dict) else None
    refresh = data.get("refreshToken", previous) if isinstance(data, dict) else None
    if not isinstance(access, str) or not isinstance(refresh, str):
        raise AuthClientError("the server's answer has no accessToken/refreshToken")
    return Tokens(access=access, refresh=refresh)


def _retrieve(task: asyncio.Task[str]) -> None:
    """Mark the refresh's outcome as seen when every waiter was cancelled (no
    'exception was never retrieved' log)."""
    if not task.cancelled():
        task.exception()
