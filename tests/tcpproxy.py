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
    done = proxy.cut_reply(MyTrigger, count=1)  # see below; `await done.wait()`
    await proxy.close()

New connections made during a fault get the same fault (accepted, then held or dropped).
It runs on the test's event loop; clients in other threads (kazoo) are fine.

`cut_reply` makes an ambiguous request: the client's request reaches the server, the
server acts on it and answers, and the answer is lost with the connection (an RST both
ways). Which request is decided by a `Trigger`, one per connection, fed every byte the
client sends; it understands the protocol (see `dbfaults.CommitAfterWrite` for MySQL's
COMMIT of a write transaction). The chunk that completes the request is forwarded, the
next bytes the server sends on that connection are dropped, and both sides are aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

Direction = Literal["both", "upstream", "downstream"]


class Trigger(Protocol):
    """Reads one connection's client-to-server bytes; says when a chosen request is done."""

    def feed(self, data: bytes) -> bool:
        """Take the next bytes; True once they complete the request whose reply to cut."""
        ...


@dataclass(eq=False)
class _Conn:
    """One proxied connection: its two sides and the state of an armed `cut_reply`."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    trigger: Trigger | None = None
    cut_pending: bool = False
    pumps: list[asyncio.Task[None]] = field(default_factory=list)


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
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0
        self._cut_factory: Callable[[], Trigger] | None = None
        self._cuts_left = 0
        self._cut_done = asyncio.Event()
        self.cut = 0
        """Replies cut so far."""

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
        for conn in list(self._conns):
            _abort(conn.client)
            _abort(conn.server)
        self._conns.clear()

    def cut_reply(self, trigger: Callable[[], Trigger], *, count: int = 1) -> asyncio.Event:
        """Cut the server's reply to the next `count` requests that `trigger` (a factory:
        one per connection, open ones included) picks out; returns an event set once the
        last of them is cut. See the module docstring."""
        self._cut_factory = trigger
        self._cuts_left = count
        self._cut_done = asyncio.Event()
        for conn in self._conns:
            conn.trigger = trigger()
        return self._cut_done

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
            conn = _Conn(client=c_writer, server=s_writer,
                         trigger=self._cut_factory() if self._cuts_left else None)
            self._conns.add(conn)
            conn.pumps = [
                asyncio.create_task(self._pump(conn, c_reader, s_writer, "upstream")),
                asyncio.create_task(self._pump(conn, s_reader, c_writer, "downstream")),
            ]
            try:
                await asyncio.wait(conn.pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in conn.pumps:
                    pump.cancel()
                await asyncio.gather(*conn.pumps, return_exceptions=True)
                self._conns.discard(conn)
                for writer in (conn.client, conn.server):
                    writer.close()
        finally:
            self._tasks.discard(task)

    async def _pump(self, conn: _Conn, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, direction: str) -> None:
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
                if direction == "downstream" and conn.cut_pending:
                    conn.cut_pending = False
                    if self._cuts_left > 0:
                        self._cut(conn)  # the reply is lost with the connection
                        return
                if direction == "upstream" and conn.trigger is not None and self._cuts_left \
                        and conn.trigger.feed(data):
                    conn.cut_pending = True
                writer.write(data)
                await writer.drain()

    def _cut(self, conn: _Conn) -> None:
        _abort(conn.client)
        _abort(conn.server)
        self._conns.discard(conn)
        self.cut += 1
        self._cuts_left -= 1
        if self._cuts_left <= 0:
            self._cut_factory = None
            for other in self._conns:
                other.trigger = None
            self._cut_done.set()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), not a FIN: the peer sees 'connection reset'."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
