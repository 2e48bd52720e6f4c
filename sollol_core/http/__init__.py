"""The HTTP surface: the Ollama API, OpenAI- and Anthropic-compatible /v1, SOLLOL's own and the operator's.

    app             GatewayDeps and create_app: the FastAPI app, its error handlers, the routers, the fast path
    ports           the Protocols the routes call (never the service object)
    access          who may call each route, declared on the route; the route table
    guard, roles    the one guard that enforces it (before any body is read), and what it checks and finds
    browsers        Host and Origin checks, CORS, the JSON content type
    routes/         the routes, a module per API family and one per concern
    inference       what the inference routes share: the client, the stream flag, the Call
    listings        listings gathered from every host
    fastpath        the hot POST endpoints dispatched from a dict
    clients         client keys, classes and rates
    io, errors      bounded bodies, BadRequest; error answers in each API family's shape
    openapi/        the request and answer models of the OpenAPI document, a module per API family
    metrics_server  the Prometheus exposition on its own port
    server          the gateway's own HTTP/1.1 server (httptools): connections, deadlines, pipelining
    exchange        one request and its answer on such a connection (Inbound, Responder)
    asgi_bridge     the requests the native handlers do not answer, through the ASGI app (FastAPI)
"""
