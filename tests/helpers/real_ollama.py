"""Finding the real-ollama tool, and skipping (or failing, when required) without it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from . import REPO


def _tool() -> Path:
    explicit = os.environ.get("REAL_OLLAMA")
    return Path(explicit) if explicit else REPO.parent / "shared" / "real-ollama" / "real-ollama"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unavailable(reason: str) -> None:
    if os.environ.get("SOLLOL_REQUIRE_REAL_OLLAMA") == "1":
        pytest.fail(f"real Ollama required (SOLLOL_REQUIRE_REAL_OLLAMA=1) but {reason}")
    pytest.skip(reason)


