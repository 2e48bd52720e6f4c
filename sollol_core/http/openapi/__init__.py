"""The request bodies and answers of every endpoint, as models for the OpenAPI document (/docs, fuzzers):
a module per API family (errors, ollama, openai, anthropic, sollol), and document (doc, install_openapi).

Documentation only: the routes read their bodies themselves (the hot path never validates with these; a
body is forwarded byte for byte), so each route gets its schema through `openapi_extra` (see `doc`), and
`install_openapi` puts the models into the document's components. Fields are the ones Ollama, OpenAI and
Anthropic document; bodies allow more (they pass through to the host as they are).
"""

from __future__ import annotations

from .anthropic import *  # noqa: F403
from .base import *  # noqa: F403
from .document import *  # noqa: F403
from .errors import *  # noqa: F403
from .ollama import *  # noqa: F403
from .openai import *  # noqa: F403
from .sollol import *  # noqa: F403
