"""sollol_core.upstream."""
