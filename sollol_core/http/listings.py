"""Listings gathered from every host that serves (Ollama's /api/tags and /api/ps, OpenAI's /v1/models)."""

from __future__ import annotations

import asyncio

from ..cluster.hosts import HostRegistry
from ..errors import UpstreamFailure
from .inference import META_TIMEOUT_S
from .ports import Upstream

SERVING = ("healthy", "draining")  # a draining host still has its models


async def host_answers(registry: HostRegistry, upstream: Upstream, path: str) -> list[tuple[str, object]]:
    """(address, JSON answer) of every serving host, asked at once; None for a host that did not answer."""
    hosts = [h.address for h in registry.hosts() if h.state.value in SERVING]

    async def one(address: str) -> tuple[str, object]:
        try:
            return address, await upstream.get_json(address, path, META_TIMEOUT_S)
        except UpstreamFailure:
            return address, None

    return list(await asyncio.gather(*(one(a) for a in hosts)))
