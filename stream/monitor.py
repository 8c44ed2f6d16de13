"""Who is connected to a socket: ZeroMQ's socket monitor, read by the socket's owner.

A sender asks :class:`PeerMonitor` whether a receiver is there
(:attr:`~PeerMonitor.peers`), waits for one (:meth:`~PeerMonitor.wait`) or
for room to send (:meth:`~PeerMonitor.wait_writable`), and the monitor logs
when the receiver goes away ("receiver at ENDPOINT went away; waiting"),
comes back ("reconnected"), or turns our CURVE key away.

The events are read in the thread that owns the socket, whenever it asks
(and while it waits): a ZeroMQ socket must not be used by two threads, and a
context that is destroyed closes every socket of it at once.

A peer counts once its handshake (ZMTP, with CURVE if used) has succeeded,
until its connection drops.  ZeroMQ's handshake events do not name the
connection, so with several peers connecting at once they are matched to
connections oldest first: exact for one peer, the common case.
"""

from __future__ import annotations

import logging
import time

__all__ = ["PeerMonitor"]

log = logging.getLogger("specstream")


class PeerMonitor:
    """Follow the connections of ``sock`` (a ``zmq.Socket``).

    Parameters
    ----------
    sock : zmq.Socket
        The socket to watch; make the monitor before the socket binds or
        connects (so that no event is missed), :meth:`stop` it before closing.
    peer : str
        What the log calls the other side ('receiver').

    Counters (up to the last :meth:`poll`): :attr:`peers` (up now),
    :attr:`handshakes` (ever), :attr:`disconnects` (peers lost),
    :attr:`refused` (handshakes refused because of our CURVE key),
    :attr:`failed` (other failed handshakes).
    """

    def __init__(self, sock, peer: str = "receiver"):
        import zmq
        self._zmq = zmq
        self.peer = peer
        self.peers = 0
        self.handshakes = 0
        self.disconnects = 0
        self.refused = 0
        self.failed = 0
        self._pending = []        # connections whose handshake has not ended, oldest first
        self._up = set()          # connections whose handshake succeeded
        self._lost = False        # every peer has gone away since the last one came
        self._complained = False  # a failed handshake was logged since the last success
        self._sock = sock
        events = (zmq.EVENT_CONNECTED | zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
                  | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                  | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        self._pipe = sock.get_monitor_socket(events)
        self._poller = zmq.Poller()
        self._poller.register(self._pipe, zmq.POLLIN)
        self._poller.register(sock, zmq.POLLOUT)

    # ----------------------------------------------------------------- api
    def poll(self) -> int:
        """Read the events that have come (without waiting); returns :attr:`peers`."""
        if not self._pipe.closed:
            while self._pipe.poll(0):
                self._read()
        return self.peers

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (None: forever) for a peer; True if one is up.

        A handshake that fails meanwhile (a key refused, no CURVE on one side)
        ends the wait at once: retrying would fail the same way."""
        deadline = None if timeout is None else time.monotonic() + timeout
        failures = self.refused + self.failed
        while self.poll() == 0:
            left = _ms_left(deadline)
            if left == 0 or self._pipe.closed or self.refused + self.failed > failures:
                return False
            self._pipe.poll(left)
        return True

    def wait_writable(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (None: forever) until the socket can
        send a message without blocking, reading events meanwhile."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ready = dict(self._poller.poll(_ms_left(deadline)))
            if self._pipe in ready:
                self.poll()
            if self._sock in ready:
                return True
            if _ms_left(deadline) == 0:
                return False

    def stop(self):
        """Stop watching; call it before the socket closes."""
        if self._pipe.closed:
            return
        self.poll()
        try:
            self._sock.disable_monitor()
        except self._zmq.ZMQError:
            pass
        self._pipe.close(linger=0)

    # ----------------------------------------------------------- internals
    def _read(self):
        from zmq.utils.monitor import recv_monitor_message
        ev = recv_monitor_message(self._pipe)
        self._on(ev["event"], ev["value"], ev["endpoint"].decode(errors="replace"))

    def _on(self, event, value, where):
        zmq = self._zmq
        peer = self.peer
        if event in (zmq.EVENT_CONNECTED, zmq.EVENT_ACCEPTED):
            self._pending.append(value)                    # value: the connection's fd
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            if self._pending:
                self._up.add(self._pending.pop(0))
            self.handshakes += 1
            self._complained = False
            if self._lost:
                log.warning("%s at %s reconnected", peer, where)
            else:
                log.info("%s at %s connected", peer, where)
            self._lost = False
        elif event == zmq.EVENT_DISCONNECTED:
            if value in self._up:
                self._up.discard(value)
                self.disconnects += 1
                if not self._up:
                    self._lost = True
                    log.warning("%s at %s went away; waiting for it (frames queue up, then "
                                "send blocks)", peer, where)
            elif value in self._pending:
                self._pending.remove(value)
        elif event & (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                      | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
            if self._pending:
                self._pending.pop(0)
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.refused += 1
                why = (f"it refused our CURVE key (status {value}): is our public key among "
                       "the keys it allows?")
            else:
                self.failed += 1
                why = ("do both sides use CURVE, and is curve_server the server's own "
                       "public key?")
            if not self._complained:                      # once until a handshake succeeds
                self._complained = True
                log.warning("handshake with the %s at %s failed: %s", peer, where, why)
        self.peers = len(self._up)


#: Longest single wait in ZeroMQ, in ms.  A signal may land in another thread
#: than the one waiting in zmq_poll, and Python runs its handler (Ctrl-C) only
#: when that wait returns: keep each one short.
_SLICE_MS = 100


def _ms_left(deadline: float | None) -> int:
    """Milliseconds until ``deadline`` (monotonic seconds; None: never), at most a slice."""
    if deadline is None:
        return _SLICE_MS
    return min(_SLICE_MS, max(0, int(1000 * (deadline - time.monotonic()))))
