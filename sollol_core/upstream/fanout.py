"""One client request acted on by several hosts: one request body read once for many uploads, and many
hosts' progress streams merged into the one stream a client expects from a single Ollama server.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Optional

from ..errors import BodySourceError

_END = object()


class BodyTee:
    """A body read once, handed to `n` uploads as it is read: never held whole.

    Each upload is at most `depth` chunks behind the reader, so the slowest upload sets the pace (and
    through the unread socket, the client's) and memory stays at n × depth chunks, whatever the size.
    An upload that ends early (its host failed or answered) is dropped; the others go on; once none is
    left, the rest of the body is not read.
    """

    def __init__(self, source: AsyncIterator[bytes], n: int, depth: int = 4) -> None:
        self._source = source
        # per upload: chunks, then _END (or a BodySourceError)
        self._queues: list[asyncio.Queue[Any]] = [asyncio.Queue(depth) for _ in range(n)]
        self._open = [True] * n
        self.bytes_read = 0

    def reader(self, i: int) -> AsyncIterator[bytes]:
        return self._read(i)

    async def _read(self, i: int) -> AsyncIterator[bytes]:
        queue = self._queues[i]
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BodySourceError):
                    raise item
                yield item
        finally:
            self.close(i)

    def close(self, i: int) -> None:
        """Upload `i` takes no more: its queue is emptied, so a reader waiting to hand it a chunk goes on."""
        self._open[i] = False
        queue = self._queues[i]
        while not queue.empty():
            queue.get_nowait()

    async def pump(self) -> None:
        """Read the source to its end (or until no upload is left), handing each chunk to every open upload."""
        item: Any = _END
        try:
            async for chunk in self._source:
                if not chunk:
                    continue
                self.bytes_read += len(chunk)
                for i, queue in enumerate(self._queues):
                    if self._open[i]:
                        await queue.put(chunk)
                if not any(self._open):
                    return
        except Exception as e:  # the client went away, or its body was malformed
            item = BodySourceError(f"the upload from the client broke off: {type(e).__name__}: {e}".rstrip(": "))
        for i, queue in enumerate(self._queues):
            if self._open[i]:
                await queue.put(item)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class ProgressMerger:
    """Several hosts' NDJSON progress (pull, create) as one stream, the way the `ollama` command shows it.

    A status without a digest is passed on the first time any host reports it ("pulling manifest" once, not
    once per host); a layer's progress is summed over the hosts (one bar, total = all the bytes the hosts
    fetch); "success" is held back until every host has ended, and then is "success" only when every host
    succeeded, else an error naming the hosts that failed. Either way `hosts` tells each host's outcome.
    """

    def __init__(self, op: str, hosts: list[str], failed: Optional[dict[str, str]] = None,
                 skipped: Optional[dict[str, str]] = None) -> None:
        self.op = op
        self.hosts = list(hosts)
        self.errors: dict[str, str] = dict(failed or {})
        self.skipped = dict(skipped or {})
        self.succeeded: set[str] = set()
        self._layers: dict[str, dict[str, tuple[int, int]]] = {}
        self._statuses: set[str] = set()

    def feed(self, host: str, line: Any) -> Optional[dict[str, Any]]:
        """One host's progress line; the line to pass on, or None."""
        if not isinstance(line, dict):
            return None
        if "error" in line:
            self.errors.setdefault(host, str(line["error"]))
            return None
        status = line.get("status")
        if status == "success":
            self.succeeded.add(host)
            return None
        digest = line.get("digest")
        if isinstance(digest, str) and digest:
            layer = self._layers.setdefault(digest, {})
            layer[host] = (_count(line.get("total")), _count(line.get("completed")))
            out = {"status": status, "digest": digest, "total": sum(t for t, _ in layer.values())}
            completed = sum(c for _, c in layer.values())
            if completed or "completed" in line:
                out["completed"] = completed
            return out
        if isinstance(status, str) and status and status not in self._statuses:
            self._statuses.add(status)
            return {"status": status}
        return None

    def ended(self, host: str, error: Optional[str] = None) -> None:
        """A host's stream ended (with `error` when it broke off)."""
        if error:
            self.errors.setdefault(host, error)
        elif host not in self.succeeded:
            self.errors.setdefault(host, "its progress stream ended without success")

    def outcomes(self) -> dict[str, str]:
        out = {}
        for h in self.hosts:
            if h in self.errors:
                out[h] = f"error: {self.errors[h]}"
            else:
                out[h] = "success" if h in self.succeeded else "running"
        return out | {h: f"skipped: {why}" for h, why in self.skipped.items()}

    def final(self) -> dict[str, Any]:
        """The last line: success on every host, or the error."""
        if not self.errors and self.succeeded >= set(self.hosts):
            return {"status": "success", "hosts": self.outcomes()}
        failed = [h for h in self.hosts if h in self.errors]
        first = self.errors[failed[0]] if failed else "no host answered"
        ok = [h for h in self.hosts if h in self.succeeded and h not in self.errors]
        also = f" (succeeded on {', '.join(ok)})" if ok else ""
        return {"error": f"{self.op} failed on {', '.join(failed)}: {first}{also}", "hosts": self.outcomes()}
