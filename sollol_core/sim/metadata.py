"""Plausible, deterministic facts about a model from its name alone (family, size, digest), Ollama's name
rule, Go's time format, and the deterministic embedding vectors."""

from __future__ import annotations

import hashlib
import math
import re
import time
from functools import lru_cache
from typing import NamedTuple

MODIFIED_AT = "2024-12-17T10:21:07.123456789Z"
CREATED = 1734430867  # MODIFIED_AT as unix time (/v1/models "created")

# family, default parameter size, quantization; first matching prefix wins
_FAMILIES = (
    ("nomic-embed", "nomic-bert", "137M", "F16"),
    ("all-minilm", "bert", "23M", "F16"),
    ("mxbai-embed", "bert", "334M", "F16"),
    ("llama", "llama", "3.2B", "Q4_K_M"),
    ("qwen", "qwen2", "7.6B", "Q4_K_M"),
    ("gemma3", "gemma3", "4.3B", "Q4_K_M"),
    ("gemma", "gemma", "9.2B", "Q4_K_M"),
    ("mistral", "llama", "7.2B", "Q4_K_M"),
    ("phi", "phi3", "3.8B", "Q4_K_M"),
)
_EMBEDDING_FAMILIES = frozenset({"nomic-bert", "bert"})
_SIZE_RE = re.compile(r"(?:^|[-:_])(\d+(?:\.\d+)?)([bm])(?:$|[-_])")


def norm(name: str) -> str:
    """Ollama's name rule: a name without a tag means ``name:latest``."""
    name = name.strip()
    return name if not name or ":" in name.rsplit("/", 1)[-1] else name + ":latest"


class Meta(NamedTuple):
    digest: str
    size: int
    params: int
    family: str
    details: dict


@lru_cache(maxsize=1024)
def meta(name: str) -> Meta:
    """Plausible, deterministic metadata for a model name (family, size, digest)."""
    base, _, tag = name.rpartition("/")[2].partition(":")
    letters = re.match(r"[a-z]*", base)  # always matches, perhaps nothing
    family, psize, quant = (letters.group() if letters else "") or "llama", "1B", "Q4_K_M"
    for prefix, fam, default_size, q in _FAMILIES:
        if base.startswith(prefix):
            family, psize, quant = fam, default_size, q
            break
    m = _SIZE_RE.search(tag) or _SIZE_RE.search(base)
    if m:
        psize = m.group(1) + m.group(2).upper()
    params = int(float(psize[:-1]) * (1e9 if psize.endswith("B") else 1e6))
    size = params * 2 if quant == "F16" else int(params * 0.6)
    details = {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": psize,
        "quantization_level": quant,
    }
    return Meta(hashlib.sha256(name.encode()).hexdigest(), size, params, family, details)


def is_embedding_model(name: str) -> bool:
    """True for the BERT-family embedding models (Ollama gives them one slot whatever OLLAMA_NUM_PARALLEL says)."""
    return meta(name).family in _EMBEDDING_FAMILIES


def iso(t: float) -> str:
    """RFC 3339 with nanoseconds, as Go (and so Ollama) writes times."""
    s = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{int((t - s) * 1e9):09d}Z"


@lru_cache(maxsize=8192)
def embedding(text: str, dim: int) -> tuple[float, ...]:
    seed = hashlib.sha256(text.encode("utf-8")).digest()
    raw = bytearray()
    block = 0
    while len(raw) < dim:
        raw += hashlib.sha256(seed + block.to_bytes(4, "big")).digest()
        block += 1
    values = [(b - 127.5) / 127.5 for b in raw[:dim]]  # never 0, so the norm is never 0
    length = math.sqrt(sum(v * v for v in values))
    return tuple(v / length for v in values)


def sim_embedding(text: str, dim: int = 16) -> list[float]:
    """Deterministic unit-length vector from sha256 of the text (tests compare exact values)."""
    return list(embedding(text, dim))
