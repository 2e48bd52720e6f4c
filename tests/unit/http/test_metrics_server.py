"""The metrics server: the exposition on /metrics and / of its own port; a taken port is reported, not raised."""

from __future__ import annotations

import socket

import httpx

from sollol_core.http.metrics_server import MetricsServer
from sollol_core.observability.metrics import CONTENT_TYPE

BODY = b"# HELP sollol_up 1\nsollol_up 1.0\n"


async def test_it_serves_the_exposition_and_reports_ready():
    reports: list[tuple[str, str, str]] = []
    server = MetricsServer(lambda: BODY, "127.0.0.1", 0, lambda *r: reports.append(r))
    url = await server.start()
    try:
        assert url is not None and url == server.url
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        assert reports == [("metrics", "ready", url)]
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            for address in (url, url.removesuffix("metrics")):
                r = await http.get(address)
                assert r.status_code == 200 and r.content == BODY
                assert r.headers["content-type"] == CONTENT_TYPE
    finally:
        await server.stop()
    await server.stop()  # twice is harmless


async def test_a_taken_port_is_reported_as_failed():
    reports: list[tuple[str, str, str]] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server = MetricsServer(lambda: BODY, "127.0.0.1", port, lambda *r: reports.append(r))
        assert await server.start() is None
    assert server.url == ""
    [(component, state, detail)] = reports
    assert (component, state) == ("metrics", "failed") and str(port) in detail
    await server.stop()
