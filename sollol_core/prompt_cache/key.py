"""PromptKey: a canonical prompt reduced to its chained block hashes, and how two keys are compared.

Block hashes are chained: ``blocks[i] = hash((blocks[i-1], text[i*B:(i+1)*B]))``, so ``blocks[i]`` identifies
the whole prefix ``text[:(i+1)*B]`` and the longest common prefix of two keys is found by binary search
(common_blocks). The hash is Python's own string hash (SipHash, 64 bits): measured 3x faster than
hashlib.blake2b with a digest per block (bench/bench_prompt_hash.py), and the shadow never leaves the process.
It is randomised per process (PYTHONHASHSEED): keys must not be stored or compared across processes. The
conversation's anchor is the exception: a stable hash (see conversation_anchor).
"""

from __future__ import annotations

import asyncio
import hashlib
from array import array
from dataclasses import dataclass
from typing import Optional, Sequence

#: The conversation's identity is read from at most this much of its start.
ANCHOR_MAX_CHARS = 65536


@dataclass(frozen=True, slots=True)
class PromptKey:
    """A canonical prompt reduced to what placement needs: its chained block hashes and its length.

    ``tail`` is the text of the final partial block ("" when the text ends on a block boundary): with it,
    ``extended`` continues the chain without the rest of the text.
    """

    model: str  # model_key of the request's model
    blocks: array[int]  # array('q'): chained hashes; blocks[i] identifies text[:(i+1)*block_chars]; last may be partial
    chars: int  # len(canonical text)
    block_chars: int
    anchor: int  # hash of the text up to the end of the first user message: the conversation, stable as it grows
    session: Optional[str] = None  # explicit session key from the client (header, user, metadata.user_id)
    tail: str = ""

    def __repr__(self) -> str:  # the blocks of a long prompt would fill a log line
        return (f"PromptKey(model={self.model!r}, chars={self.chars}, blocks={len(self.blocks)}, "
                f"block_chars={self.block_chars}, anchor={self.anchor:#x}, session={self.session!r})")

    def __hash__(self) -> int:  # the array is not hashable; the last chained block stands for all of them
        return hash((self.model, self.chars, self.blocks[-1] if self.blocks else 0, self.session))

    def common_chars(self, other_blocks: "Sequence[int] | PromptKey | None") -> int:
        """Characters of the longest common prefix with `other_blocks` (a PromptKey or its blocks), in whole
        blocks; the final partial block counts when both texts end there. Binary search: chained hashes
        agree up to the first difference and never after it."""
        other = other_blocks.blocks if isinstance(other_blocks, PromptKey) else other_blocks
        if other is None:
            return 0
        return min(common_blocks(self.blocks, other) * self.block_chars, self.chars)

    def common_blocks(self, other_blocks: "Sequence[int] | PromptKey | None") -> int:
        """Blocks of the longest common prefix (see common_chars)."""
        other = other_blocks.blocks if isinstance(other_blocks, PromptKey) else other_blocks
        return common_blocks(self.blocks, other) if other is not None else 0

    def chars_of(self, nblocks: int) -> int:
        """Characters covered by the first `nblocks` blocks of this key."""
        return min(nblocks * self.block_chars, self.chars)

    def extended(self, more: str) -> PromptKey:
        """The key of this prompt followed by the text `more`. Costs the length of `more`, not the prompt's:
        the chain continues from the last whole block with the key's tail."""
        bc = self.block_chars
        rest = self.tail + more
        if self.tail:
            whole = self.blocks[:-1]
            h = whole[-1] if whole else 0
        else:
            whole = self.blocks
            h = whole[-1] if len(whole) else 0
        head = array("q", whole)
        head.extend(chain_blocks(rest, bc, h))
        return PromptKey(self.model, head, self.chars - len(self.tail) + len(rest), bc, self.anchor, self.session,
                         _tail(rest, bc))


def common_blocks(a: Sequence[int], b: Sequence[int]) -> int:
    """Blocks of the longest common prefix of two chains of block hashes (binary search: chained hashes agree
    up to the first difference and never after it)."""
    n = min(len(a), len(b))
    if n == 0 or a[0] != b[0]:
        return 0
    if a[n - 1] == b[n - 1]:
        return n
    lo, hi = 1, n - 1  # a[lo-1] == b[lo-1]; the answer is in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if a[mid - 1] == b[mid - 1]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def chain_blocks(text: str, bc: int, h: int = 0, start: int = 0, out: Optional[list[int]] = None,
                 stop: Optional[int] = None) -> list[int]:
    """Chained block hashes of text[start:stop] (start on a block boundary), continuing from chain state `h`,
    appended to `out` (a new list when None)."""
    if out is None:
        out = []
    ap = out.append
    end = len(text) if stop is None else min(stop, len(text))
    for i in range(start, end, bc):
        h = hash((h, text[i:i + bc]))
        ap(h)
    return out


def conversation_anchor(text: str, end: int) -> int:
    """A stable hash of text[:end] (the conversation up to its first user message).

    Unlike the block chain (Python's per-process string hash, fast, compared only inside one gateway), the
    anchor must be the same in every process: the rendezvous hash on it is what makes two gateways place a
    conversation alike, and a restarted gateway send it home."""
    head = text[:min(end, len(text), ANCHOR_MAX_CHARS)]
    return int.from_bytes(hashlib.blake2b(head.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big",
                          signed=True)


def key_of_text(text: str, anchor_end: int, model: str, bc: int, session: Optional[str]) -> PromptKey:
    """The key of a canonical text whose first user message ends at `anchor_end`, in blocks of `bc`."""
    blocks = array("q", chain_blocks(text, bc))
    return PromptKey(model, blocks, len(text), bc, conversation_anchor(text, anchor_end), session, _tail(text, bc))


async def key_of_text_async(text: str, anchor_end: int, model: str, bc: int, session: Optional[str],
                            chunk: int) -> PromptKey:
    """key_of_text, letting the event loop run after every `chunk` characters hashed (chunk >= bc)."""
    out: list[int] = []
    step = (chunk // bc) * bc
    h = 0
    for start in range(0, len(text), step):
        chain_blocks(text, bc, h, start, out, start + step)
        h = out[-1]
        if start + step < len(text):
            await asyncio.sleep(0)
    return PromptKey(model, array("q", out), len(text), bc, conversation_anchor(text, anchor_end), session,
                     _tail(text, bc))


def _tail(text: str, bc: int) -> str:
    """The text of the final partial block ("" when the text ends on a block boundary)."""
    rem = len(text) % bc
    return text[len(text) - rem:] if rem else ""
