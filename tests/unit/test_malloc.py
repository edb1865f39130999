"""`synchronizer.malloc`: the allocator's thresholds, set once, unless the operator set
theirs."""

from __future__ import annotations

import subprocess
import sys

from synchronizer import malloc


def test_an_operators_settings_are_kept() -> None:
    for knob in ("MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        assert malloc.tune({knob: "1"}) is False


def test_tuned_allocations_below_the_threshold_come_from_the_heap() -> None:
    """In a fresh interpreter (the thresholds are the process's), a 12 MiB block comes
    from the heap once tuned (`mallinfo2`'s count of mmapped blocks does not grow while
    it is held), and from a mapping of its own without (glibc's threshold starts at
    128 KiB and rises only to the largest mapped block freed so far: start-up frees
    none that large)."""
    code = """
import ctypes
from synchronizer import malloc
assert malloc.tune({}) is True
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
before = libc.mallinfo2().hblks
block = bytearray(12 << 20)
print(libc.mallinfo2().hblks - before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["0"]
    untuned = subprocess.run([sys.executable, "-c", code.replace(
        "assert malloc.tune({}) is True", "")], capture_output=True, text=True, check=True,
        env={"PATH": "/usr/bin:/bin"})
    assert untuned.stdout.split() == ["1"]
