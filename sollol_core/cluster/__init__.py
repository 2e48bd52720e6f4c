"""sollol_core.cluster."""
