"""The operator's endpoints: add and remove hosts, drain and undrain them, their priority and weight, the
routing strategy and weights. The same actions as the dashboard's (ports.OperatorActions). Each is an
operator route: the guard lets only the operator in (guard.py)."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from ...cluster.hosts import HostRegistry
from ...cluster.routing import Router
from ...config import STRATEGIES, SollolConfig, normalize_host
from ...errors import BadRequest
from .. import openapi as am
from ..access import OPERATOR, GatewayRouter
from ..io import float_field, int_field, json_response, read_json
from ..ports import OperatorActions


def host_param(registry: HostRegistry, host: str) -> str:
    """The registered address a path's {host} names: 400 when it is not host:port, 404 when unknown."""
    try:
        address = normalize_host(host)
    except ValueError as e:
        raise BadRequest(400, str(e)) from None
    if address not in registry:
        raise BadRequest(404, f"no such host {address}; see /api/stats")
    return address


def operator_routes(config: SollolConfig, registry: HostRegistry, router: Router,
                    operator: OperatorActions) -> GatewayRouter:
    routes = GatewayRouter()

    @routes.declare(OPERATOR, "POST", "/api/hosts", summary="operator: add a host",
                    openapi_extra=am.doc(am.AddHost, am.HostAnswer, answer_status=201, errors=(400, 401, 403, 409)))
    async def add_host(request: Request) -> Response:
        data = await read_json(request, config.max_body_bytes)
        if not isinstance(data.get("host"), str):
            raise BadRequest(400, "host is required, as host:port")
        try:
            address = operator.add_host(data["host"], priority=int_field(data, "priority", 0),
                                        weight=float_field(data, "weight", 1.0))
        except (ValueError, TypeError) as e:
            raise BadRequest(400 if "already" not in str(e) else 409, str(e)) from None
        return json_response({"status": "added", "host": address}, 201)

    @routes.declare(OPERATOR, "DELETE", "/api/hosts/{host}", summary="operator: remove a host",
                    openapi_extra=am.doc(answer=am.HostAnswer, errors=(400, 401, 403, 404)))
    async def remove_host(host: str) -> Response:
        address = host_param(registry, host)
        operator.remove_host(address)
        return json_response({"status": "removed", "host": address})

    @routes.declare(OPERATOR, "POST", "/api/hosts/{host}/drain", summary="operator: send the host nothing new",
                    openapi_extra=am.doc(answer=am.HostAnswer, errors=(400, 401, 403, 404)))
    async def drain(host: str) -> Response:
        address = host_param(registry, host)
        operator.drain_host(address)
        return json_response({"status": "draining", "host": address})

    @routes.declare(OPERATOR, "POST", "/api/hosts/{host}/undrain", summary="operator: send the host requests again",
                    openapi_extra=am.doc(answer=am.HostAnswer, errors=(400, 401, 403, 404)))
    async def undrain(host: str) -> Response:
        address = host_param(registry, host)
        operator.undrain_host(address)
        return json_response({"status": "healthy", "host": address})

    @routes.declare(OPERATOR, "PATCH", "/api/hosts/{host}", summary="operator: change a host's priority or weight",
                    openapi_extra=am.doc(am.HostChange, am.HostAnswer, errors=(400, 401, 403, 404)))
    async def patch_host(host: str, request: Request) -> Response:
        address = host_param(registry, host)
        data = await read_json(request, config.max_body_bytes)
        unknown = set(data) - {"priority", "weight"}
        if unknown:
            raise BadRequest(400, f"unknown field(s) {', '.join(sorted(unknown))}; use priority and weight")
        try:
            if "priority" in data:
                operator.set_priority(address, int_field(data, "priority", 0))
            if "weight" in data:
                operator.set_weight(address, float_field(data, "weight", 1.0))
        except (ValueError, TypeError) as e:
            raise BadRequest(400, str(e)) from None
        h = registry.get(address)
        return json_response({"host": address, "priority": h.priority, "weight": h.weight})

    @routes.declare(OPERATOR, "PUT", "/api/routing", summary="operator: routing strategy and weights",
                    openapi_extra=am.doc(am.RoutingChange, am.RoutingAnswer, errors=(400, 401, 403)))
    async def put_routing(request: Request) -> Response:
        data = await read_json(request, config.max_body_bytes)
        unknown = set(data) - {"strategy", "weights"}
        if unknown:
            raise BadRequest(400, f"unknown field(s) {', '.join(sorted(unknown))}; use strategy and weights")
        if "strategy" in data and data["strategy"] not in STRATEGIES:
            raise BadRequest(400, f"strategy must be one of {', '.join(STRATEGIES)}")
        weights = data.get("weights", {})
        if not isinstance(weights, dict):
            raise BadRequest(400, "weights must be an object, e.g. {\"latency\": 0.5}")
        try:
            if weights:
                operator.set_weights(**weights)
            if "strategy" in data:
                operator.set_strategy(data["strategy"])
        except ValueError as e:
            raise BadRequest(400, f"weights: {e}") from None
        return json_response({"strategy": router.strategy_name, "weights": router.weights.model_dump()})

    return routes
