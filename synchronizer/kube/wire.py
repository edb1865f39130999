"""One watch request on a connection of its own, read in `data_received` (httptools).

The transport of the watch (design 010). A watch is a GET whose chunked answer lasts for
minutes and, in an idle fleet, carries little but a bookmark a second. Read through
aiohttp's streams, every chunk wakes the reading task; here the response is parsed by
httptools (llhttp, the parser uvicorn uses) inside the protocol's `data_received` and
handed straight to the stream's `feed.WatchFeed`, which frames and decodes it there and
wakes the reader only when it has something to hand over. Lists, probes and clusters
behind an HTTP proxy stay on aiohttp (`client.ClusterClient.request`).

The request is written once: `Accept-Encoding: identity` (a watch is never worth
compressing), `Connection: close` (the connection ends with the stream), the
Authorization header the caller got from the credentials. TLS, when the server is
https, uses the credentials' context (CA, client certificate) and server name.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlencode, urlsplit

import httptools
from multidict import CIMultiDict

from .connection import USER_AGENT
from .feed import WatchFeed

MAX_ERROR_BODY = 64 * 1024
"""Bytes of a refused answer's body kept for its error message."""


class ProtocolError(ConnectionError):
    """The server's answer is not HTTP we can read, or it ended before its end."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The status line and headers of a response; the body too unless it is a 200."""

    status: int
    reason: str
    headers: CIMultiDict[str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes: the address to connect to and what to say there."""

    host: str
    port: int
    ssl: ssl.SSLContext | None
    server_hostname: str | None
    authority: str
    path: str

    @classmethod
    def of(cls, base_url: str, path: str, params: Mapping[str, str], *,
           ssl_context: ssl.SSLContext | None, sni_hostname: str | None) -> Target:
        """The target of `path` (with `params`) under an API server's base URL."""
        url = urlsplit(base_url)
        secure = url.scheme == "https"
        host = url.hostname or ""
        query = f"?{urlencode(params)}" if params else ""
        return cls(
            host=host, port=url.port or (443 if secure else 80),
            ssl=(ssl_context or ssl.create_default_context()) if secure else None,
            server_hostname=(sni_hostname or host) if secure else None,
            authority=url.netloc.rpartition("@")[2],
            path=f"{url.path.rstrip('/')}{path}{query}",
        )

    def request(self, authorization: str | None) -> bytes:
        """The bytes of a GET of this target."""
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {self.authority}",
            f"User-Agent: {USER_AGENT}",
            "Accept: application/json",
            "Accept-Encoding: identity",
            "Connection: close",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class WatchProtocol(asyncio.Protocol):
    """Sends one GET; a 200's body goes to the feed as it arrives, anything else is
    collected into the `answer` (see the module docstring)."""

    def __init__(self, request: bytes, feed: WatchFeed) -> None:
        self._request = request
        self._feed = feed
        self._parser = httptools.HttpResponseParser(self)
        loop = asyncio.get_running_loop()
        self.answer: asyncio.Future[Answer] = loop.create_future()
        """Resolved at a 200's headers, or with a whole other answer, or failed."""
        self._reason = ""
        self._headers: CIMultiDict[str] = CIMultiDict()
        self._body: list[bytes] = []
        self._kept = 0
        self._ok = False
        self._complete = False
        self._until_close = False
        self._waiter: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        feed.wake = self._wake

    # -- asyncio ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only alike
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self._feed.pause = transport.pause_reading
        self._feed.resume = transport.resume_reading
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"unreadable HTTP answer: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport: the answer can only end now

    def connection_lost(self, exc: Exception | None) -> None:
        self._feed.pause = self._feed.resume = None
        if self._complete:
            return
        if exc is None and self._until_close:  # the end of an answer without a length
            if self._ok:
                self._complete = True
                self._feed.finish(None)
                self._wake()
                return
            if not self.answer.done() and self._parser.get_status_code():
                self.on_message_complete()
                return
        self._fail(exc if exc is not None
                   else ProtocolError("the server closed the connection before the end"
                                      " of its answer"))

    # -- httptools callbacks ----------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self._reason = status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        headers = self._headers
        self._until_close = ("Content-Length" not in headers
                             and "chunked" not in headers.get("Transfer-Encoding", "").lower())
        if self._parser.get_status_code() == 200 and not self.answer.done():  # (not given up)
            self._ok = True
            self.answer.set_result(Answer(200, self._reason, headers))

    def on_body(self, body: bytes) -> None:
        if self._ok:
            if self._feed.data(body):
                self._wake()
        elif self._kept < MAX_ERROR_BODY:
            self._body.append(body)
            self._kept += len(body)

    def on_message_complete(self) -> None:
        self._complete = True
        if self._ok:
            self._feed.finish(None)
            self._wake()
        elif not self.answer.done():
            self.answer.set_result(Answer(self._parser.get_status_code(), self._reason,
                                          self._headers, b"".join(self._body)))
        if self.transport is not None:
            self.transport.close()

    # -- the reader's side ------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        self._complete = True
        if not self.answer.done():
            self.answer.set_exception(exc)
        else:
            self._feed.finish(exc)
            self._wake()
        if self.transport is not None:
            self.transport.abort()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def prompt(self, version: int) -> None:
        """Someone waits for `version`: hand a held bookmark over now."""
        self._feed.prompt(version)
        self._wake()

    async def more(self) -> None:
        """Wait until the feed may have something to hand over."""
        if self._feed.over:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        """Drop the connection (the stream is abandoned or stalled)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()
        if not self.answer.done():
            self.answer.cancel()


async def open_watch(target: Target, authorization: str | None, feed: WatchFeed, *,
                     connect_timeout: float, answer_timeout: float
                     ) -> tuple[WatchProtocol, Answer]:
    """Connect, send the GET, and wait for the answer's head (a 200) or whole answer.

    Raises `OSError` (refused, unreachable, TLS), `ProtocolError`, or `TimeoutError` when
    connecting takes `connect_timeout` or the answer `answer_timeout` seconds. On a
    non-200 answer the connection is already closed.
    """
    loop = asyncio.get_running_loop()
    request = target.request(authorization)
    async with asyncio.timeout(connect_timeout):
        _, protocol = await loop.create_connection(
            lambda: WatchProtocol(request, feed), target.host, target.port,
            ssl=target.ssl, server_hostname=target.server_hostname)
    try:
        async with asyncio.timeout(answer_timeout):
            answer = await protocol.answer
    except BaseException:
        protocol.close()
        raise
    return protocol, answer
