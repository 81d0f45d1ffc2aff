"""The process tuning the service and the echo floor apply at start-up (`service.tuning`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import anyio
import pytest
from anyio import to_thread

from research.settings import REPO_ROOT
from service.app import create_app
from service.settings import ServiceSettings

# A request's pattern of allocations on the main thread (arrays of 5,000 candidates, the answer's
# bytes, a concatenation of them), repeated: minor page faults per repetition, after a first one.
ALLOCATION_PATTERN = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from service.tuning import retain_freed_memory

    retain = int(sys.argv[1])
    if retain:
        assert retain_freed_memory(retain)
    sizes = (5_000 * 64 * 4, 5_000 * 8, 221_000, 5_000 * 64 * 4, 40_000)

    def one_request():
        parts = [np.ones(size // 8) for size in sizes]
        return float(np.concatenate(parts).sum())

    one_request()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        one_request()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
    """
)
RETAIN_BYTES = 128 * 1024 * 1024
# Far apart on this machine: glibc's adaptive defaults fault about 1,400 pages per repetition of
# the pattern (its memory is given back and mapped anew each time), the tuned allocator none.
MAX_FAULTS_RETAINED = 20
MIN_FAULTS_DEFAULT = 200


def faults_per_request(retain_bytes: int) -> float:
    run = subprocess.run(
        [sys.executable, "-c", ALLOCATION_PATTERN, str(retain_bytes)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(run.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_retained_memory_is_not_page_faulted_in_again() -> None:
    assert faults_per_request(0) > MIN_FAULTS_DEFAULT  # the control: the fault pattern is real
    assert faults_per_request(RETAIN_BYTES) < MAX_FAULTS_RETAINED


@pytest.mark.parametrize("threads", [0, 3])
def test_the_service_start_up_sets_its_thread_pool(threads: int) -> None:
    """The lifespan tunes the process (no model is needed for that)."""
    settings = ServiceSettings(use_redis=False, bundle_dir=None, request_threads=threads)
    app = create_app(settings)

    async def start_and_read() -> float:
        async with app.router.lifespan_context(app):
            return to_thread.current_default_thread_limiter().total_tokens

    assert anyio.run(start_and_read) == max(threads, 1)
