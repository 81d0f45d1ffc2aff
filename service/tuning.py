"""What a serving process sets about itself at start-up, before it loads a model: its threads
(the request thread pool, numpy's BLAS) and how the C allocator treats a request's freed memory.
The service and the benchmark's echo floor both call `tune_process`, so the floor runs on the
same footing."""

from __future__ import annotations

import ctypes
import logging

from anyio import to_thread
from threadpoolctl import threadpool_limits

from service.settings import ServiceSettings

log = logging.getLogger(__name__)

# mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc refuses a larger mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX: half a heap).
GLIBC_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


def set_thread_limits(settings: ServiceSettings) -> None:
    """The request thread pool (at least one thread: with PRERANK_REQUEST_THREADS=0 /prerank
    computes on the loop, but /clusters still uses the pool) and numpy's BLAS threads. Called
    from the event loop, whose thread limiter this sets."""
    to_thread.current_default_thread_limiter().total_tokens = max(settings.request_threads, 1)
    threadpool_limits(limits=settings.blas_threads)


def retain_freed_memory(retain_bytes: int) -> bool:
    """Keep freed blocks of up to `retain_bytes` in the process for the next request (glibc's
    trim threshold, and its mmap threshold up to glibc's maximum); False where the C library
    has no `mallopt` (not glibc) or refuses the values.

    Why: with glibc's adaptive defaults, a service process could fall into a pattern where every
    request's arrays (a 5,000-candidate request allocates a few MB) were given back to the OS
    when freed and page-faulted in again by the next request: 425 minor faults and about 0.5 ms
    per request at 5,000 candidates, in one process and not in another with the same code
    (docs/benchmarks/speedups.md)."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mmap_threshold = min(retain_bytes, GLIBC_MMAP_THRESHOLD_MAX)
    return bool(mallopt(M_TRIM_THRESHOLD, retain_bytes)) and bool(
        mallopt(M_MMAP_THRESHOLD, mmap_threshold)
    )


def tune_process(settings: ServiceSettings) -> None:
    """Thread limits, and the allocator's retention (PRERANK_MALLOC_RETAIN_BYTES; 0 leaves the C
    library's defaults)."""
    set_thread_limits(settings)
    if settings.malloc_retain_bytes and not retain_freed_memory(settings.malloc_retain_bytes):
        log.warning(
            "PRERANK_MALLOC_RETAIN_BYTES=%d not applied: the C library is not glibc, or refused it",
            settings.malloc_retain_bytes,
        )
