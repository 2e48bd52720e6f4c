"""sollol_core.http."""
