"""A fix for Ray Data 2.60's batch iterator, which can make an interrupted catalogue job exit 1.

`Dataset.iter_batches` prefetches blocks in a "Prefetcher" thread (a `WaitBlockPrefetcher` calling
`ray.wait`) that is stopped only when the iteration runs to its end (no try/finally in
`ray/data/_internal/block_batching/iter_batches.py`): a consumer that stops early leaves it running.
If it is inside `ray.wait` when the driver shuts Ray down, the core worker ends the process with
status 1: an interrupted job exited 1 instead of 130/143 in about one run in four on a 2-core machine.

`settle_iterator_threads` stops those prefetchers and waits, bounded, for the iterator's threads to
end. It can go when Ray stops the prefetcher on an early exit too: tests/test_catalogue.py says so
by failing `test_the_prefetcher_is_left_running_by_an_early_stop`.
"""
from __future__ import annotations

import threading
import time

THREADS = ("Prefetcher", "iter_threaded")  # the names Ray Data gives its iterator's threads


def iterator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name in THREADS and t.is_alive()]


def settle_iterator_threads(timeout: float = 10.0) -> list[str]:
    """Stop Ray Data's left-running block prefetchers and wait up to `timeout` seconds for its
    iterator threads to end. Returns the names of those still alive (none, normally)."""
    for t in iterator_threads():
        owner = getattr(getattr(t, "_target", None), "__self__", None)  # the WaitBlockPrefetcher
        if t.name == "Prefetcher" and callable(getattr(owner, "stop", None)):
            owner.stop()
    deadline = time.monotonic() + timeout
    for t in iterator_threads():
        t.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in iterator_threads()]
