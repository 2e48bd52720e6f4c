"""AsyncExecutor: upstream calls in the core event loop through one keep-alive connection pool (pool.HttpPool:
a lean client, chosen for the latency it adds)."""

from __future__ import annotations

from typing import Optional

import orjson

from ..errors import UpstreamFailure
from .executor import UpstreamResponse
from .pool import Body, HttpPool

__all__ = ["AsyncExecutor"]


class AsyncExecutor:
    """Upstream calls in the core event loop through one keep-alive connection pool."""

    kind = "async"

    def __init__(self, connect_timeout: float = 5.0) -> None:
        self.connect_timeout = connect_timeout
        self._pool: Optional[HttpPool] = None

    async def start(self) -> None:
        self._pool = HttpPool(self.connect_timeout)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def open(self, host: str, method: str, path: str, body: Body,
                   timeout: float, stream: bool = True, content_type: Optional[str] = None) -> UpstreamResponse:
        if self._pool is None:
            raise RuntimeError("executor not started")
        return await self._pool.request(host, method, path, body, timeout, content_type)

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
