"""How an upstream call is carried out: the Executor protocol.

The gateway decides where a request goes; an executor only performs the HTTP call to that host and hands
back the status and the body as chunks. The executors: inloop.AsyncExecutor (in the core loop, with one
keep-alive connection pool) and ray_actors.RayExecutor (on Ray actors, falling back to the in-loop one).
"""

from __future__ import annotations

from typing import AsyncIterator, Optional, Protocol

from .pool import Body, StreamBody

__all__ = ["Body", "Executor", "StreamBody", "UpstreamResponse"]


class UpstreamResponse(Protocol):
    """An upstream answer whose status is known; its body is read whole or as chunks, then closed."""

    status: int
    content_type: str

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


class Executor(Protocol):
    """Carries upstream calls; `kind` names it ("async", "ray") in stats and on the dashboard."""

    kind: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def open(self, host: str, method: str, path: str, body: Body,
                   timeout: float, stream: bool = True, content_type: Optional[str] = None) -> UpstreamResponse:
        """Send the call; returns once the status is known. stream=False says the caller will read the
        whole body at once (an executor may then fetch it in one round trip). content_type: the body's,
        when it is not JSON (a multipart form); a StreamBody is sent as it is read (blob uploads)."""

    async def get_json(self, host: str, path: str, timeout: float) -> object:
        """A host's small JSON answer (listings, version); UpstreamFailure when it gives none."""
        ...
