"""sollol_core.prompt_cache."""
