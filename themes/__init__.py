"""Dashboard themes as TOML data files (loaded by ``sollol_tui.themes``)."""
