"""Shared by the tests that run a FrameReceiver in the test's own process."""

import time


def drain(rx, until, timeout=30.0):
    """Poll ``rx`` until ``until(events)`` holds; return the events.  The
    timeout only guards against a hang (it fails the test, it never passes it)."""
    events = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events += rx.poll(0.05)
        if until(events):
            return events
    raise AssertionError(f"receiver did not get there; events: {[type(e).__name__ for e in events]}"
                         f", stats {rx.stats.as_dict()}")
