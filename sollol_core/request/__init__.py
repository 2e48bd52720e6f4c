"""sollol_core.request."""
