"""glibc heap settings for a process that reads tens of megabytes per refresh and must give them
back: the chart's memory limit is a peak, so memory freed after a refresh has to leave the process,
not wait in the heap for the next one."""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
LARGE_BYTES = 1 << 20


try:
    LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc (musl, macOS): the defaults stay
    LIBC = None


def tune() -> None:
    """Blocks of 1 MiB and more (answers, decode batches, expositions) get their own mapping,
    returned to the OS when freed. By default glibc raises that threshold to the size of the
    largest block freed so far (up to 32 MiB), after which blocks of a refresh stay in the heap."""
    if LIBC is not None:
        LIBC.mallopt(M_MMAP_THRESHOLD, LARGE_BYTES)


def release() -> None:
    """Hand the heap pages a refresh freed back to the OS (glibc's malloc_trim, every arena)."""
    if LIBC is not None:
        LIBC.malloc_trim(0)
