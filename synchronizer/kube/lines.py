"""Framing of a watch stream: network chunks in, one JSON line per event out.

The lowest layer of the watch (kopf's `_iter_jsonlines`): it knows nothing of HTTP, events
or deadlines, only that the API server writes one JSON document per line and that a chunk
may end anywhere, even in the middle of a line. A line longer than `max_line` (an etcd
object is at most about 1.5 MB, so such a line is not an object) is dropped as it streams,
without being held in memory, and reported through `on_oversized`. A last line without
its newline (the server closed mid-stream) is still given out: a whole event is usable, a
torn one fails to parse one layer up and is skipped there.

A plain object fed chunk by chunk, not an async generator: an idle fleet's watches each
deliver a bookmark a second, one chunk apiece, and every generator layer a chunk passes
through is a resumption per bookmark (docs/benchmarks.md, "Fleet").
"""

from __future__ import annotations

from collections.abc import Callable


class LineFramer:
    """Cuts a byte stream into its non-blank lines (without their newlines)."""

    __slots__ = ("_max_line", "_on_oversized", "_oversized", "_pending", "_pending_size")

    def __init__(self, *, max_line: int, on_oversized: Callable[[], None]) -> None:
        self._max_line = max_line
        self._on_oversized = on_oversized
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._oversized = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines this chunk completes."""
        if not self._pending and not self._oversized and chunk.endswith(b"\n") \
                and chunk.count(b"\n") == 1:
            return [chunk[:-1]] if len(chunk) > 1 and not chunk.isspace() else []
        lines: list[bytes] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                rest = len(chunk) - start
                if rest and not self._oversized:
                    self._pending.append(chunk[start:] if start else chunk)
                    self._pending_size += rest
                    if self._pending_size > self._max_line:
                        self._oversized = True
                        self._pending.clear()
                return lines
            if self._oversized:
                self._oversized = False
                self._pending_size = 0
                self._on_oversized()
                start = end + 1
                continue
            if self._pending:
                self._pending.append(chunk[start:end])
                line = b"".join(self._pending)
                self._pending.clear()
                self._pending_size = 0
            else:
                line = chunk[start:end]
            start = end + 1
            if line and not line.isspace():
                lines.append(line)

    def end(self) -> list[bytes]:
        """What is left when the stream ends: a last line without its newline."""
        if self._oversized:
            self._oversized = False
            self._on_oversized()
            return []
        line = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        return [line] if line and not line.isspace() else []
