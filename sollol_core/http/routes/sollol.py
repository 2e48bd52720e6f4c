"""SOLLOL's own: health, stats and the Prometheus exposition on the gateway's port."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import PlainTextResponse, Response

from ...observability.metrics import CONTENT_TYPE, Metrics
from .. import openapi as am
from ..access import OPERATOR, PUBLIC, GatewayRouter, caller_of
from ..io import json_response
from ..ports import StatsSource


def sollol_routes(stats_source: StatsSource, gateway_metrics: Metrics) -> GatewayRouter:
    routes = GatewayRouter()

    @routes.declare(PUBLIC, "GET", "/api/health", summary="ok / degraded / down (503 when no host is available)",
                    openapi_extra=am.doc(answer=am.HealthResponse, errors=()))
    async def health(request: Request) -> Response:
        """Liveness for anyone: {"status"}; the hosts and their states too for the operator."""
        body = stats_source.get_health()
        status = 200 if body["status"] != "down" else 503
        return json_response(body if caller_of(request).operator else {"status": body["status"]}, status)

    @routes.declare(OPERATOR, "GET", "/api/stats",
                    summary="every host's state, measurements and score; routing; executor",
                    openapi_extra=am.doc(answer=am.StatsResponse, errors=()))
    async def stats() -> Response:
        return json_response(stats_source.get_stats())

    @routes.declare(OPERATOR, "GET", "/metrics", summary="Prometheus exposition", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(gateway_metrics.exposition(), media_type=CONTENT_TYPE)

    return routes
