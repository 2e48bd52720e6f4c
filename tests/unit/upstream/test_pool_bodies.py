"""The upstream client's request bodies beyond JSON: another content type, a body streamed from a source
(Content-Length or chunked, at the pace the host reads), a host that answers before the body ended, and
HEAD answers (no body, whatever their headers say)."""

from __future__ import annotations

import asyncio

import pytest

from sollol_core.errors import UpstreamFailure
from sollol_core.upstream.pool import HttpPool, StreamBody

from helpers.raw_server import RawServer, ok, read_request


async def read_chunked(reader) -> bytes:
    out = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            return out
        out += data[:-2]


async def source(parts: list[bytes], log: list[str] | None = None):
    for part in parts:
        if log is not None:
            log.append(f"read {len(part)}")
        yield part


async def test_content_type_goes_upstream():
    seen = {}

    async def handler(reader, writer, n):
        head, body = await read_request(reader)
        seen["head"], seen["body"] = head, body
        writer.write(ok(b"{}"))
        await writer.drain()

    async with RawServer(handler) as srv:
        pool = HttpPool()
        resp = await pool.request(srv.address, "POST", "/v1/audio/transcriptions", b"--b\r\n...", 5,
                                  content_type="multipart/form-data; boundary=b")
        await resp.read()
        await resp.close()
        await pool.close()
    assert b"Content-Type: multipart/form-data; boundary=b\r\n" in seen["head"] and seen["body"] == b"--b\r\n..."


async def test_stream_body_with_a_length_and_chunked():
    got = []

    async def handler(reader, writer, n):
        head, body = await read_request(reader)
        if b"chunked" in head.lower():
            body = await read_chunked(reader)
        got.append((head, body))
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with RawServer(handler) as srv:
        pool = HttpPool()
        parts = [b"a" * 70000, b"b" * 5, b"", b"c" * 100000]
        resp = await pool.request(srv.address, "POST", "/api/blobs/x", StreamBody(source(parts), 170005), 5)
        assert resp.status == 201
        await resp.close()
        resp = await pool.request(srv.address, "POST", "/api/blobs/y", StreamBody(source(parts)), 5)
        assert resp.status == 201
        await resp.close()
        await pool.close()
    (head1, body1), (head2, body2) = got
    assert b"Content-Length: 170005" in head1 and body1 == b"".join(parts)
    assert b"Transfer-Encoding: chunked" in head2 and body2 == b"".join(parts)
    assert b"Content-Type: application/octet-stream" in head1


async def test_stream_body_shorter_or_longer_than_declared_fails():
    async def handler(reader, writer, n):
        await reader.read(1 << 20)

    async with RawServer(handler) as srv:
        pool = HttpPool()
        with pytest.raises(UpstreamFailure, match="ended after 3 of its declared 10 bytes"):
            await pool.request(srv.address, "POST", "/p", StreamBody(source([b"abc"]), 10), 5)
        with pytest.raises(UpstreamFailure, match="longer than its declared 2 bytes"):
            await pool.request(srv.address, "POST", "/p", StreamBody(source([b"abc"]), 2), 5)
        await pool.close()


async def test_stream_body_is_read_only_as_fast_as_the_host_takes_it():
    """A host that reads nothing: the client stops pulling from its source once the socket buffers are full,
    instead of reading all of it into memory, and fails after `timeout` without news."""
    pulled = {"bytes": 0}
    release = asyncio.Event()

    async def endless():
        while True:
            pulled["bytes"] += 65536
            yield b"z" * 65536

    async def handler(reader, writer, n):
        await release.wait()  # reads nothing

    async with RawServer(handler) as srv:
        pool = HttpPool()
        with pytest.raises(UpstreamFailure, match="read none of the upload for 0.5 s"):
            await pool.request(srv.address, "POST", "/p", StreamBody(endless()), 0.5)
        release.set()
        await pool.close()
    # kernel buffers (a few MB at most on loopback) and the transport's high-water mark, not the whole source
    print(f"pulled {pulled['bytes'] / 1e6:.1f} MB from the source before the host read anything")
    assert pulled["bytes"] < 32 * 1024 * 1024


async def test_a_host_that_answers_before_the_body_ended_is_heard():
    pulled = []

    async def handler(reader, writer, n):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n'
                     b'{"error": "nope"}')
        await writer.drain()
        await asyncio.sleep(0.5)

    async def slow_source():
        for i in range(200):
            pulled.append(i)
            await asyncio.sleep(0.01)
            yield b"q" * 1000

    async with RawServer(handler) as srv:
        pool = HttpPool()
        resp = await pool.request(srv.address, "POST", "/p", StreamBody(slow_source(), 200000), 5)
        assert resp.status == 400 and await resp.read() == b'{"error": "nope"}'
        await resp.close()
        assert not pool._idle.get(srv.address)  # a connection with half a body sent is not kept
        await pool.close()
    assert len(pulled) < 200  # it stopped sending once the answer came


async def test_head_answer_without_a_length_does_not_wait_for_a_body():
    async def handler(reader, writer, n):
        await reader.readuntil(b"\r\n\r\n")
        # like Go's net/http for HEAD: no Content-Length, no chunked, and the connection stays open
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with RawServer(handler) as srv:
        pool = HttpPool()
        resp = await pool.request(srv.address, "HEAD", "/api/blobs/sha256:x", None, 2)
        assert resp.status == 200 and await asyncio.wait_for(resp.read(), 1) == b""
        await resp.close()
        await pool.close()


async def test_head_answer_with_a_length_has_no_body_either():
    async def handler(reader, writer, n):
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 19\r\n\r\n")
            await writer.drain()

    async with RawServer(handler) as srv:
        pool = HttpPool()
        for _ in range(2):  # the second on a new connection: a HEAD answer's connection is not reused
            resp = await pool.request(srv.address, "HEAD", "/api/blobs/sha256:x", None, 2)
            assert resp.status == 404 and await asyncio.wait_for(resp.read(), 1) == b""
            await resp.close()
        await pool.close()
        assert srv.connections == 2
