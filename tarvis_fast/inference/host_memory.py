"""Host memory that stays with the process: on the CPU, a clip's network allocates and frees the same large
buffers (feature maps of tens to hundreds of MB) clip after clip, and glibc's malloc hands every buffer above its
mmap threshold (at most 32 MiB) back to the kernel when it is freed, so the next clip page-faults it in again, a
zeroed 4 KiB page at a time.

Measured (ResNet-50 fine-tuning model, random weights, VOS forward of 2 frames at 480x854 on the CPU, 3-5 times
in one process, glibc 2.36): by default 1.4-1.8 M minor page faults and 2.4-3.4 s of system time per forward
against 18-20 s of user time, peak RSS 1.53 GiB; with the freed memory kept (`retain_freed_memory`) none after
the second forward, 0.0-0.1 s of system time, RSS 1.82 GiB and flat from the second forward on. Keeping only
buffers up to 32 MiB (the largest mmap threshold glibc takes) still faulted 0.6-1.3 M pages per forward, and
PyTorch's transparent huge pages (THP_MEM_ALLOC_ENABLE=1, measured on an earlier state of the model that
faulted 3.4 M pages and spent 6.5 s in the kernel per forward) cut the faults to 0.1 M but spent more system
time, 11-15 s, zeroing and compacting huge pages.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

logger = logging.getLogger(__name__)

# mallopt's parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER = 2**31 - 1  # the largest value mallopt takes (an int): the heap's free top is never handed back

_retained = False
_libc: ctypes.CDLL | None = None


def retain_freed_memory() -> bool:
    """Make glibc's malloc serve every allocation of this process from its heap, and keep what is freed there for
    the next allocations instead of returning it to the kernel. Returns whether that is in effect (glibc only;
    elsewhere nothing changes).

    For the rest of the process, until `release_freed_memory`: its resident size no longer shrinks after a peak.
    Allocations in threads other than the main one keep glibc's defaults for buffers over 64 MiB (their arenas
    cannot grow that far); PyTorch allocates a forward's tensors in the calling thread.

    The price is fragmentation: PyTorch asks for 64-byte aligned buffers, and a freed buffer whose neighbour has
    been taken by a small allocation can be a few bytes too small for the next buffer of its size, so the heap
    grows instead. In the runs measured the heap settled after the first forwards (a fixed pattern of sizes per
    clip), but one buffer size allocated and freed alone has been seen to grow it by that size a round; hence
    `release_freed_memory` after each video.
    """
    global _retained, _libc
    if _retained:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    # mallopt returns 1 on success; no mmap'd chunks at all, and no trimming of the heap's top.
    if libc.mallopt(_M_MMAP_MAX, 0) != 1 or libc.mallopt(_M_TRIM_THRESHOLD, _NEVER) != 1:
        logger.warning("mallopt refused the settings that keep freed memory; large buffers will page-fault")
        return False
    _retained, _libc = True, libc
    return True


def release_freed_memory() -> None:
    """Hand the free memory of the heap back to the kernel (malloc_trim: its free pages, wherever they lie), so
    that what one video's clips kept does not stay with the process; the next video's first clip faults its
    buffers in once more. Nothing unless `retain_freed_memory` is in effect."""
    if _libc is not None:
        _libc.malloc_trim(0)
