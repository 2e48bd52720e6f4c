"""How an upstream call is carried out.

The gateway decides where a request goes; an executor only performs the HTTP call to that host and hands
back the status and the body as chunks. `AsyncExecutor` does it in the core loop with one pooled aiohttp
session (httpx's pool throttles a proxy at concurrency; see the runtime notes).
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Optional, Protocol

import aiohttp
import orjson

JSON_HEADERS = {"Content-Type": "application/json"}


class UpstreamFailure(Exception):
    """The host could not be reached or did not answer in time (nothing reached the client yet)."""


class UpstreamResponse(Protocol):
    status: int
    content_type: str

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


class Executor(Protocol):
    kind: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def open(self, host: str, method: str, path: str, body: Optional[bytes],
                   timeout: float) -> UpstreamResponse: ...


class _AiohttpResponse:
    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.content_type = resp.headers.get("Content-Type", "application/json")

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise UpstreamFailure(describe_error(e)) from e

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise UpstreamFailure(describe_error(e)) from e
        if not self._resp.content.is_eof() or self._resp.content.exception() is not None:
            raise UpstreamFailure("connection closed before the answer was complete")

    async def close(self) -> None:
        self._resp.release()


def describe_error(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "timed out waiting for the host"
    if isinstance(e, aiohttp.ClientConnectorError):
        return f"cannot connect: {e.os_error.strerror if e.os_error else e}"
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return "host closed the connection"
    if isinstance(e, aiohttp.ClientPayloadError):
        return "connection closed before the answer was complete"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class AsyncExecutor:
    """Upstream calls in the core event loop through one pooled aiohttp session."""

    kind = "async"

    def __init__(self, connect_timeout: float = 5.0) -> None:
        self.connect_timeout = connect_timeout
        self._session: Optional[aiohttp.ClientSession] = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30, ttl_dns_cache=60)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                              skip_auto_headers=("User-Agent",))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("executor not started")
        return self._session

    async def open(self, host: str, method: str, path: str, body: Optional[bytes],
                   timeout: float) -> UpstreamResponse:
        t = aiohttp.ClientTimeout(total=None, connect=self.connect_timeout, sock_read=timeout)
        try:
            resp = await self.session.request(method, f"http://{host}{path}", data=body,
                                              headers=JSON_HEADERS if body is not None else None, timeout=t)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise UpstreamFailure(describe_error(e)) from e
        return _AiohttpResponse(resp)

    async def get_json(self, host: str, path: str, timeout: float) -> object:
        """Small GET used by health checks and adaptive metrics; raises UpstreamFailure."""
        resp = await self.open(host, "GET", path, None, timeout)
        try:
            data = await resp.read()
            if resp.status != 200:
                raise UpstreamFailure(f"HTTP {resp.status} from {path}")
        finally:
            await resp.close()
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise UpstreamFailure(f"{path} answered invalid JSON") from e
