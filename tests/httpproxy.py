"""A forward HTTP proxy for tests: what a kubeconfig's `proxy-url` points at.

A client configured with a proxy sends each plain-http request to the proxy in absolute
form (`GET http://host:port/path HTTP/1.1`); the proxy opens a connection to that host,
forwards the request in origin form and pipes both ways until either side closes. Enough
for aiohttp's proxied requests (lists and, behind a proxy, watches); no CONNECT, no TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


class HttpProxy:
    """Listens on loopback; `requests` is every request line it forwarded."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> HttpProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._forward(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                       ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line, _, rest = head.partition(b"\r\n")
        method, target, version = line.decode("latin-1").split(" ")
        url = urlsplit(target)
        self.requests.append(f"{method} {url.path}")
        up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port or 80)
        origin = url.path + (f"?{url.query}" if url.query else "")
        up_writer.write(f"{method} {origin} {version}\r\n".encode("latin-1") + rest)
        try:
            pumps = [asyncio.ensure_future(_pump(reader, up_writer)),
                     asyncio.ensure_future(_pump(up_reader, writer))]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            up_writer.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
