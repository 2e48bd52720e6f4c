"""One request as a hot endpoint sees it, whichever server carried it.

The gateway's own server (http.server) hands its handlers an Inbound straight off the connection; a
request that came through an ASGI server (in-process test clients, FastAPI's own routing) is wrapped in
AsgiInbound. Either way a handler reads the head at once and the body only when it asks for it, after it
checked who is asking.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Mapping, MutableMapping, Protocol


class BodyTooLarge(Exception):
    """The request body is (or says it is) longer than the handler's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit} bytes")
        self.limit = limit


class ClientDisconnected(Exception):
    """The client went away before its request body arrived, or while its answer was being written."""


class Inbound(Protocol):
    method: str
    path: str
    headers: Mapping[str, str]  # names in lower case

    @property
    def client_host(self) -> str: ...

    async def body(self, limit: int) -> bytes:
        """The whole body, at most `limit` bytes (BodyTooLarge beyond; ClientDisconnected)."""
        ...

    async def wait_gone(self) -> None:
        """Returns once the client has gone away."""
        ...


Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class AsgiInbound:
    """An Inbound over an ASGI scope and receive channel."""

    def __init__(self, scope: MutableMapping[str, Any], receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        self.headers: Mapping[str, str] = headers
        client = scope.get("client")
        self._client = str(client[0]) if client else ""
        self._gone = False

    @property
    def client_host(self) -> str:
        return self._client

    async def body(self, limit: int) -> bytes:
        declared = self.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(limit)
        parts: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self._gone = True
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def wait_gone(self) -> None:
        while not self._gone:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self._gone = True
