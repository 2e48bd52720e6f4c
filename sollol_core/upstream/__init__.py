"""sollol_core.upstream: how a call reaches a host. executor (the Executor and UpstreamResponse protocols), pool
(the keep-alive HTTP client), inloop (AsyncExecutor: calls in the core loop), ray_actors (calls on Ray actors),
fanout (one call to every host)."""
