"""sollol_core.http.routes."""
