"""`LineFramer`: a watch stream's chunks, cut anywhere, give back exactly its lines."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from synchronizer.kube.lines import LineFramer

LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"x"))


def frame(chunks: list[bytes], max_line: int = 1 << 20) -> tuple[list[bytes], int]:
    dropped = []
    framer = LineFramer(max_line=max_line, on_oversized=lambda: dropped.append(1))
    out = [line for chunk in chunks for line in framer.feed(chunk)]
    return out + framer.end(), len(dropped)


@given(st.lists(LINE, max_size=12), st.lists(st.integers(0, 600), max_size=12),
       st.booleans())
def test_lines_survive_any_chunking(lines: list[bytes], cuts: list[int], torn: bool) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    if torn and lines:
        stream = stream[:-1]  # the server closed before the last newline
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    got, dropped = frame(chunks)
    assert got == [line for line in lines if line and not line.isspace()]
    assert dropped == 0


def test_an_oversized_line_is_dropped_as_it_streams_and_reported() -> None:
    got, dropped = frame([b'{"a":1}\n', b"x" * 30, b"y" * 30, b'z\n{"b":2}\n'], max_line=40)
    assert (got, dropped) == ([b'{"a":1}', b'{"b":2}'], 1)
    got, dropped = frame([b"ok\n", b"x" * 50], max_line=40)  # still too long at the end
    assert (got, dropped) == ([b"ok"], 1)
