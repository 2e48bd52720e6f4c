"""What every model of the document shares: a body that may carry more than its fields, and the model field."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["OpenBody", "model_field"]


class OpenBody(BaseModel):
    """A body that may carry more than the fields shown (passed through to the host)."""

    model_config = ConfigDict(extra="allow")


def model_field() -> Any:
    return Field(..., min_length=1, description="Model name, e.g. llama3.2 or llama3.2:latest.",
                 examples=["llama3.2"])
