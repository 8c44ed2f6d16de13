"""Threads for the DSP core's long offline work: how many, and running parts on them.

The hot loops release the GIL (FFTW's ``execute``, the numba kernels are
compiled ``nogil``), so plain threads run them on separate cores; the Python
between the calls is short.  Live paths never use these: a frame at a time
is too little work to share.
"""

from __future__ import annotations

import os
import threading

__all__ = ["default_workers", "run_parts"]


def default_workers() -> int:
    """Threads for long offline work: ``SPECSTREAM_BLOCK_THREADS``, else the
    CPUs this process may use, at most 4 (beyond, memory bandwidth)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        n = int(os.environ.get("SPECSTREAM_BLOCK_THREADS", "0"))
    except ValueError:
        n = 0
    return max(1, n if n > 0 else min(cpus, 4))


def run_parts(parts) -> list:
    """Call each of ``parts`` (callables of no argument): the first on this
    thread, the others on threads of their own; their results in order.  The
    first exception any raised is raised here, after all have ended."""
    parts = list(parts)
    results = [None] * len(parts)
    errors = []

    def call(i):
        try:
            results[i] = parts[i]()
        except BaseException as e:      # re-raised on the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=call, args=(i,), name="specstream-part", daemon=True)
               for i in range(1, len(parts))]
    for th in threads:
        th.start()
    try:
        if parts:
            call(0)
    finally:
        for th in threads:
            th.join()
    if errors:
        raise errors[0]
    return results
