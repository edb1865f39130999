"""A small asyncio TCP fault proxy for tests: pause, black-hole, reset, latency.

Put it between a client and a server (ZooKeeper, MariaDB, the fake apiserver) and break
the network on purpose, on one machine, without root:

    proxy = await TcpProxy("127.0.0.1", server_port).start()
    client connects to proxy.address            # "127.0.0.1:PORT"
    proxy.pause(); ...; proxy.resume()          # bytes held (both ways), then delivered
    proxy.blackhole(); ...; proxy.heal()        # bytes silently dropped; connections stay up
    proxy.blackhole("downstream")               # only server -> client dropped (replies lost)
    proxy.reset()                               # every open connection aborted with an RST
    proxy.latency = 0.2                         # each chunk delayed (order kept)
    await proxy.close()

New connections made during a fault get the same fault (accepted, then held or dropped).
It runs on the test's event loop; clients in other threads (kazoo) are fine.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Literal

Direction = Literal["both", "upstream", "downstream"]


class TcpProxy:
    """Forwards `host:port` (listening) to `target_host:target_port`, with faults on demand."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self._port = port
        self.latency = 0.0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._dropping: set[str] = set()
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0

    @property
    def port(self) -> int:
        """The listening port (known after `start`)."""
        return self._port

    @property
    def address(self) -> str:
        """`host:port` to give the client."""
        return f"{self.host}:{self._port}"

    @property
    def connections(self) -> int:
        """Connections open right now."""
        return len(self._conns)

    async def start(self) -> TcpProxy:
        """Start listening; returns self."""
        self._server = await asyncio.start_server(self._handle, self.host, self._port)
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        """Stop listening and abort every connection; wait for the handlers to finish."""
        if self._server is not None:
            self._server.close()
        self.heal()
        self.reset()  # the pumps see the aborted connections and end by themselves
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        if self._server is not None:
            await self._server.wait_closed()

    # -- faults ------------------------------------------------------------------------------

    def pause(self) -> None:
        """Hold every byte in both directions until `resume` (a stalled network)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Deliver what was held and flow again."""
        self._flowing.set()

    def blackhole(self, direction: Direction = "both") -> None:
        """Drop bytes silently (connections stay open): a partition, or lost replies."""
        self._dropping = {"upstream", "downstream"} if direction == "both" else {direction}

    def heal(self) -> None:
        """End every fault: flow, drop nothing, no latency."""
        self._dropping = set()
        self.latency = 0.0
        self._flowing.set()

    def reset(self) -> None:
        """Abort every open connection with a TCP RST (new connections are accepted)."""
        for client, server in list(self._conns):
            _abort(client)
            _abort(server)
        self._conns.clear()

    # -- plumbing ----------------------------------------------------------------------------

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        try:
            try:
                s_reader, s_writer = await asyncio.open_connection(*self.target)
            except OSError:
                _abort(c_writer)
                return
            pair = (c_writer, s_writer)
            self._conns.add(pair)
            pumps = [
                asyncio.create_task(self._pump(c_reader, s_writer, "upstream")),
                asyncio.create_task(self._pump(s_reader, c_writer, "downstream")),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                self._conns.discard(pair)
                for writer in pair:
                    writer.close()
        finally:
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: str) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                await self._flowing.wait()
                if self.latency:
                    await asyncio.sleep(self.latency)
                if direction in self._dropping:
                    continue
                writer.write(data)
                await writer.drain()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), not a FIN: the peer sees 'connection reset'."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
