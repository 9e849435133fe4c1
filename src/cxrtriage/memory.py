"""Keep the memory a request frees for the next request, instead of handing it back to the OS each time.

Every ``predict`` allocates and frees a few full-size buffers (the decoded film, float copies for the resizes, the
PIL images of the exposed-field and gate stages). glibc's malloc serves blocks that large with ``mmap`` or returns
them to the OS when the top of its heap is free (its dynamic mmap and trim thresholds), so the next request takes
page faults to get the same memory back, most visibly in the decode and exposed-field stages (docs/MODEL.md,
"Speed on one core", has the measured figures). :func:`keep_freed_memory` raises both thresholds once per process,
so the freed buffers stay in the
heap and are reused. The results are the same by construction (only where memory comes from changes); the process
keeps its peak heap instead of shrinking after each request, which ``MAX_KEPT_BYTES`` bounds.

Linux with glibc only; elsewhere (musl, macOS, Windows) it does nothing and says so by returning False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import threading

#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: blocks below this come from the heap (glibc's own dynamic threshold stops at 32 MiB on 64-bit, its maximum)
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
#: free memory at the top of the heap is given back to the OS only beyond this
MAX_KEPT_BYTES = 128 * 1024 * 1024

_lock = threading.Lock()
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (once per process); True when they are set."""
    global _done
    with _lock:
        if _done is None:
            _done = _set_thresholds()
        return _done


def _set_thresholds() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; fixing the mmap threshold also ends glibc's dynamic adjustment of both
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, MAX_KEPT_BYTES))
