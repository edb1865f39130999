"""glibc's allocator, told to keep the memory a full sync frees for the next page.

Why: a list page is a body of a megabyte or two (500 Pods), read, joined and decoded into
buffers as large. glibc serves such a block with a fresh `mmap` while its threshold is
below the block's size, and gives the top of the heap back to the kernel once more than
the trim threshold of it is free. Both thresholds follow the largest block freed so far,
up to 32 MiB, which suits one large cluster listed page after page: its pages reuse the
heap. A fleet's first sync lists many clusters at once; the heap grows by several pages
and shrinks again, each time past the trim threshold, and every page then lands on memory
the kernel must map and zero anew, one 4 KiB fault at a time. 200 clusters of 500 Pods
took 190,000-250,000 minor faults in the instance against 47,000-49,000 with the values
below; the first sync was shorter in five alternated pairs of six, by 1.35 s in the median
(docs/benchmarks.md, "Eighth pass").

Fixed values (which also end glibc's adjusting them): blocks below `MMAP_THRESHOLD` come
from the heap; up to `TRIM_THRESHOLD` of free heap top stays mapped, and the heap grows by
`TOP_PAD` more than asked. RSS after a fleet's first sync reads about 10 MiB higher
(what the heap keeps).

An operator's own `MALLOC_*_` or `GLIBC_TUNABLES` settings win: then nothing is changed.
Elsewhere than glibc (musl, macOS) `mallopt` is missing and nothing is changed either.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
"""`mallopt` parameters, from glibc's malloc.h."""

MMAP_THRESHOLD = 16 << 20
TRIM_THRESHOLD = 64 << 20
TOP_PAD = 16 << 20

_OPERATOR_KNOBS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                   "GLIBC_TUNABLES")


def tune(environ: dict[str, str] | None = None) -> bool:
    """Set the three thresholds unless the operator set any of theirs; True when set."""
    environ = dict(os.environ) if environ is None else environ
    if any(knob in environ for knob in _OPERATOR_KNOBS):
        log.debug("malloc: the operator's settings are kept")
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = [mallopt(param, value) for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (M_TOP_PAD, TOP_PAD))]
    return all(done)
