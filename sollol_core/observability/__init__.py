"""sollol_core.observability."""
