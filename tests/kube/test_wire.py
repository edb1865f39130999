"""The watch transport (`wire`, design 010) against servers that answer byte by byte.

Each test runs a loopback TCP server that reads the request and writes an exact answer
— any chunking, any framing (chunked, Content-Length, until close), a cut, a refusal,
bytes that are not HTTP, silence — and checks what a `KubeSource` watch makes of it. The
simulated API server (tests/kube/test_source.py) covers the Kubernetes behaviour; this
covers the HTTP a real server or a proxy in between may send.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field

import orjson
import pytest
from watchlines import added, bookmark

from reconciler import Bookmark, Event, Record, SourceUnavailable, Stalled
from synchronizer.kinds import PODS
from synchronizer.kube import AccessDenied, ClusterClient, ClusterEndpoint, KubeSource

BOUND = 20.0
"""Seconds after which a test is presumed hung (never reached when things work)."""
Reply = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Scripted:
    """A server that answers every request with `reply`; what it was asked."""

    url: str
    requests: list[str] = field(default_factory=list)


@asynccontextmanager
async def scripted(reply: Reply, *, prefix: str = "") -> AsyncIterator[Scripted]:
    done = asyncio.Event()
    state = Scripted(url="")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            state.requests.append(head.decode("latin-1"))
            await reply(writer)
            await done.wait()  # the client closes first (or the test ends)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}{prefix}"
    try:
        yield state
    finally:
        done.set()
        server.close()
        await server.wait_closed()


def source(url: str, *, token: str | None = None, inactivity: float = 30.0) -> KubeSource:
    client = ClusterClient(ClusterEndpoint(id="c1", server=url, token=token))
    return KubeSource(client, kind=PODS, biz_id=1, watch_timeout=60, inactivity=inactivity,
                      bookmark_every=0.0, owns_client=True)


async def watch(src: KubeSource, since: int = 5) -> list[Event]:
    async with src, asyncio.timeout(BOUND), aclosing(src.watch(since)) as events:
        return [e async for e in events]






BODY = added("a", 6) + added("b", 7) + bookmark(9)
EXPECTED = [("a", 6), ("b", 7), ("bookmark", 9)]


def seen(events: list[Event]) -> list[tuple[str, int]]:
    return [(e.fields["name"] if isinstance(e, Record) else "bookmark", e.version)
            for e in events if isinstance(e, Record | Bookmark)]


def chunked(body: bytes, sizes: int = 100) -> bytes:
    """`body` as HTTP chunks of `sizes` bytes, then the last chunk."""
    parts = [body[n:n + sizes] for n in range(0, len(body), sizes)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def answer(body: bytes, *, framing: str = "chunked", status: str = "200 OK",
           headers: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{headers}"
    if framing == "chunked":
        return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunked(body)
    if framing == "length":
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    return (head + "Connection: close\r\n\r\n").encode() + body


def writes(data: bytes, size: int, *, close: bool = False) -> Reply:
    async def reply(writer: asyncio.StreamWriter) -> None:
        for n in range(0, len(data), size):
            writer.write(data[n:n + size])
            await writer.drain()
        if close:
            writer.close()
    return reply


async def test_the_request_is_a_watch_under_the_base_path_without_compression() -> None:
    async with scripted(writes(answer(BODY), 1 << 16), prefix="/gw/clusters/c1") as server:
        events = await watch(source(server.url, token="tok-1"))
    assert seen(events) == EXPECTED
    (request,) = server.requests
    line, *headers = request.strip().split("\r\n")
    assert line == ("GET /gw/clusters/c1/api/v1/pods?watch=1&allowWatchBookmarks=true"
                    "&resourceVersion=5&timeoutSeconds=60 HTTP/1.1")
    port = server.url.split(":")[2].split("/")[0]
    assert {f"Host: 127.0.0.1:{port}", "Accept-Encoding: identity",
            "Authorization: Bearer tok-1", "Connection: close"} <= set(headers)


@pytest.mark.parametrize("size", [1, 7, 150, 1 << 16])
@pytest.mark.parametrize("framing", ["chunked", "length", "until-close"])
async def test_any_framing_cut_anywhere_gives_the_same_events(framing: str, size: int) -> None:
    data = answer(BODY, framing=framing)
    async with scripted(writes(data, size, close=framing == "until-close")) as server:
        assert seen(await watch(source(server.url))) == EXPECTED


async def test_a_stream_cut_before_its_end_hands_over_what_came_then_fails() -> None:
    data = answer(BODY)[:-len(b"0\r\n\r\n")]
    async with scripted(writes(data, 1 << 16, close=True)) as server:
        got: list[Event] = []
        with pytest.raises(SourceUnavailable, match=r"cluster c1: watch pods: .*before the end"):
            async with source(server.url) as src, asyncio.timeout(BOUND), \
                    aclosing(src.watch(5)) as events:
                async for event in events:
                    got.append(event)
    assert seen(got) == EXPECTED


@pytest.mark.parametrize(("status", "raised"), [
    ("503 Service Unavailable", SourceUnavailable), ("403 Forbidden", AccessDenied)])
async def test_a_refusal_is_one_line_with_the_servers_message_and_retry_after(
    status: str, raised: type[Exception]
) -> None:
    body = orjson.dumps({"kind": "Status", "code": int(status[:3]),
                         "message": "etcd is busy"})
    data = answer(body, framing="length", status=status, headers="Retry-After: 7\r\n")
    async with scripted(writes(data, 5)) as server:
        with pytest.raises(raised) as info:
            await watch(source(server.url))
    message = str(info.value)
    assert message.startswith(f"cluster c1: watch pods: HTTP {status}")
    assert "etcd is busy" in message and "\n" not in message
    assert info.value.retry_after == 7.0  # type: ignore[attr-defined]


async def test_an_answer_that_is_not_http_is_unavailable_in_one_line() -> None:
    async with scripted(writes(b"SSH-2.0-OpenSSH_9.2\r\n\r\n", 64)) as server:
        with pytest.raises(SourceUnavailable, match="unreadable HTTP answer") as info:
            await watch(source(server.url))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("headers_sent", [False, True])
async def test_silence_before_or_after_the_headers_is_a_stall(headers_sent: bool) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" if headers_sent else b""
    async with scripted(writes(head, 64)) as server:
        with pytest.raises(Stalled, match=r"no event or bookmark for 0\.2 s"):
            await watch(source(server.url, inactivity=0.2))
