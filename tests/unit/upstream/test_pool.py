"""The lean upstream HTTP client: keep-alive, chunked streaming, stale connections, timeouts, errors."""

import asyncio

import pytest

from sollol_core.errors import UpstreamFailure
from sollol_core.upstream.pool import HttpPool

from helpers.raw_server import RawServer, ok, read_request


async def test_keep_alive_reuses_one_connection():
    async def handler(reader, writer, n):
        while True:
            _, body = await read_request(reader)
            writer.write(ok(b'{"echo": %s}' % body))
            await writer.drain()

    async with RawServer(handler) as srv:
        pool = HttpPool()
        for i in range(5):
            resp = await pool.request(srv.address, "POST", "/api/chat", b"%d" % i, 5)
            assert resp.status == 200 and resp.content_type == "application/json"
            assert await resp.read() == b'{"echo": %d}' % i
            await resp.close()
        assert srv.connections == 1
        await pool.close()


async def test_chunked_stream_arrives_chunk_by_chunk():
    gate = asyncio.Event()

    async def handler(reader, writer, n):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"6\r\n{\"a\":1\r\n")
        await writer.drain()
        await gate.wait()
        writer.write(b"2\r\n}\n\r\n0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with RawServer(handler) as srv:
        pool = HttpPool()
        resp = await pool.request(srv.address, "POST", "/api/chat", b"{}", 5)
        chunks = resp.chunks()
        assert await chunks.__anext__() == b'{"a":1'  # before the server sent the rest
        gate.set()
        assert [c async for c in chunks] == [b"}\n"]
        await resp.close()
        await pool.close()


async def test_stale_keep_alive_connection_is_retried_on_a_fresh_one():
    async def handler(reader, writer, n):
        await read_request(reader)
        if n == 1:
            writer.write(ok(b"first"))
            await writer.drain()
            await read_request(reader)  # the host drops the kept-alive connection instead of answering
            return
        writer.write(ok(b"second"))
        await writer.drain()

    async with RawServer(handler) as srv:
        pool = HttpPool()
        r1 = await pool.request(srv.address, "POST", "/x", b"1", 5)
        assert await r1.read() == b"first"
        await r1.close()
        r2 = await pool.request(srv.address, "POST", "/x", b"2", 5)
        assert await r2.read() == b"second"
        await r2.close()
        assert srv.connections == 2
        await pool.close()


async def test_hung_host_times_out():
    async def handler(reader, writer, n):
        await read_request(reader)
        await asyncio.sleep(5)

    async with RawServer(handler) as srv:
        pool = HttpPool()
        with pytest.raises(UpstreamFailure, match="within 0.2 s"):
            await pool.request(srv.address, "POST", "/x", b"{}", 0.2)
        await pool.close()


async def test_stream_broken_mid_way_raises():
    async def handler(reader, writer, n):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()

    async with RawServer(handler) as srv:
        pool = HttpPool()
        resp = await pool.request(srv.address, "POST", "/x", b"{}", 5)
        got = []
        with pytest.raises(UpstreamFailure, match="before the answer was complete"):
            async for c in resp.chunks():
                got.append(c)
        assert got == [b"abc"]
        await resp.close()
        await pool.close()


async def test_refused_and_garbage():
    pool = HttpPool(connect_timeout=1)
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(UpstreamFailure, match="cannot connect"):
        await pool.request(f"127.0.0.1:{port}", "GET", "/", None, 1)

    async def handler(reader, writer, n):
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    async with RawServer(handler) as srv:
        with pytest.raises(UpstreamFailure, match="invalid HTTP"):
            await pool.request(srv.address, "GET", "/", None, 1)
    await pool.close()


async def test_connection_paused_for_a_slow_reader_is_not_reused():
    from sollol_core.upstream.pool import _Connection

    class Transport:
        paused = False

        def pause_reading(self):
            self.paused = True

        def resume_reading(self):
            self.paused = False

        def write(self, data):
            pass

        def close(self):
            pass

    conn = _Connection()
    transport = Transport()
    conn.connection_made(transport)
    conn.send("POST", "h:1", "/x", b"{}")
    body = b"x" * ((1 << 20) + 20000)
    conn.data_received(ok(body))  # the whole answer in one read, over the pause threshold
    assert conn.complete and transport.paused
    assert not conn.reusable  # nobody would ever read the next answer on it
    conn.take()  # a reader that drains it resumes the transport
    assert not transport.paused and conn.reusable


async def test_abandoned_connections_do_not_pile_up_in_the_pool():
    import gc

    async def handler(reader, writer, n):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with RawServer(handler) as srv:
        pool = HttpPool()
        for _ in range(20):
            resp = await pool.request(srv.address, "POST", "/x", b"{}", 5)
            await resp.chunks().__anext__()
            await resp.close()  # mid-answer: the connection is closed, not pooled
        await asyncio.sleep(0.1)
        gc.collect()
        assert len(pool._all) <= 1
        await pool.close()
