"""Framing of a watch stream: network chunks in, one JSON line per event out.

The lowest layer of the watch (kopf's `_iter_jsonlines`): it knows nothing of HTTP, events
or deadlines, only that the API server writes one JSON document per line and that a chunk
may end anywhere, even in the middle of a line. A line longer than `max_line` (an etcd
object is at most about 1.5 MB, so such a line is not an object) is dropped as it streams,
without being held in memory, and reported through `on_oversized`. A last line without
its newline (the server closed mid-stream) is still yielded: a whole event is usable, a
torn one fails to parse one layer up and is skipped there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable


async def iter_lines(
    chunks: AsyncIterator[bytes], *, max_line: int, on_oversized: Callable[[], None]
) -> AsyncIterator[bytes]:
    """Yield the non-blank lines of a stream of byte chunks (without their newlines)."""
    pending: list[bytes] = []
    pending_size = 0
    oversized = False
    async for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                rest = len(chunk) - start
                if rest and not oversized:
                    pending.append(chunk[start:] if start else chunk)
                    pending_size += rest
                    if pending_size > max_line:
                        oversized = True
                        pending.clear()
                break
            if oversized:
                oversized = False
                pending_size = 0
                on_oversized()
                start = end + 1
                continue
            if pending:
                pending.append(chunk[start:end])
                line = b"".join(pending)
                pending.clear()
                pending_size = 0
            else:
                line = chunk[start:end]
            start = end + 1
            if line and not line.isspace():
                yield line
    if oversized:
        on_oversized()
    elif pending:
        line = b"".join(pending)
        if not line.isspace():
            yield line
