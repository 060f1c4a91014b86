"""Hand freed memory back to the system as soon as it is freed (glibc).

glibc serves large allocations with their own ``mmap`` and unmaps them on ``free``, but its
threshold for "large" is dynamic: after a freed mmapped block of N bytes it serves every
allocation up to N (at most 32 MB) from the heap instead, and heap memory stays in the
process once freed there. So after one 12 MP image, every later 1-32 MB array (a 4 MP
image, OpenCV's SIFT pyramid, a mask) comes from the heap and each stage's peak stays
resident on top of the next one's: ``edge-app forensics`` on a 12 MP PNG held 216 MB
where 150 MB were alive (issue 15). A fixed threshold keeps the large arrays mmapped, so
the process' peak is one stage's peak, not their sum; arrays below it (the 0.2 MP
analysis image's planes, reused stage after stage) stay on the fast heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 1 << 20  # bytes; measured: 4 MB kept 10-20 MB more resident, 256 kB no less
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
_done = False


def return_freed_memory(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes; False where libc is not glibc
    (musl, macOS), where nothing changes. Safe to call more than once."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = mallopt(_M_MMAP_THRESHOLD, int(threshold)) == 1
    if not _done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused")
    return _done
