"""CURVE keys, the ZAP check of senders and the loopback rule, over real sockets on 127.0.0.1.

Nothing here binds anything but loopback: the refusal of other endpoints is
checked on the validation itself (and with ``bind`` made to fail loudly).
"""

import logging
import os
import socket
import stat
import threading
import time

import numpy as np
import pytest
import zmq
import zmq.auth

from programs import run_program
from stream import istft, stft
from stream.errors import InputError, ParameterError, SendError
from stream.security import (SocketSecurity, check_endpoint, create_key_pair, is_local,
                             load_allowed_keys, load_key_pair, load_public_key)
from stream.sinks import SinkError, ZmqSink, open_sink
from stream.spec import STFTSpec
from stream.transport import AudioBlock, FrameReceiver, FrameSender, FramesBlock, StreamEnded

SPEC = STFTSpec(sample_rate=16000, n_fft=256, hop_length=64)


@pytest.fixture(autouse=True)
def _estimate_plans(monkeypatch):
    # Deterministic FFTW plans: the receiver and istft round identically.
    monkeypatch.setenv("SPECSTREAM_FFTW_PLANNER", "estimate")


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


@pytest.fixture
def keys(tmp_path):
    """A player's pair, an allowed sender's pair (in allowed/), an intruder's pair."""
    k = {}
    k["player_pub"], k["player"] = create_key_pair(tmp_path / "player", "player")
    k["sender_pub"], k["sender"] = create_key_pair(tmp_path / "allowed", "sender")
    k["intruder_pub"], k["intruder"] = create_key_pair(tmp_path / "intruder", "intruder")
    k["allowed"] = tmp_path / "allowed"
    return k


def _frames(n_frames, seed=0):
    rng = np.random.default_rng(seed)
    x = (0.3 * rng.standard_normal((n_frames - 1) * SPEC.hop_length)).astype(np.float32)
    return stft(x, SPEC)[:n_frames]


def _drain(rx, until, timeout=20.0):
    events = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events += rx.poll(0.05)
        if until(events):
            return events
    raise AssertionError(f"receiver did not get there: {rx.stats.as_dict()}")


def _ended(events):
    return any(isinstance(e, StreamEnded) for e in events)


def _audio(events):
    return np.concatenate([e.samples for e in events if isinstance(e, AudioBlock)], axis=-1)


# ======================================================== the loopback rule
@pytest.mark.parametrize("endpoint, local", [
    ("tcp://127.0.0.1:5556", True), ("tcp://127.8.9.10:5556", True),
    ("tcp://127.0.0.1:*", True), ("tcp://localhost:5556", True),
    ("tcp://LOCALHOST:5556", True), ("tcp://[::1]:5556", True),
    ("tcp://[::ffff:127.0.0.1]:5556", True), ("tcp://lo:5556", True),
    ("ipc:///tmp/specstream.sock", True), ("ipc://@abstract", True), ("inproc://x", True),
    ("tcp://0.0.0.0:5556", False), ("tcp://*:5556", False), ("tcp://*:*", False),
    ("tcp://[::]:5556", False), ("tcp://192.0.2.7:5556", False),
    ("tcp://8.8.8.8:5556", False), ("tcp://[2001:db8::1]:5556", False),
    ("tcp://eth0:5556", False), ("tcp://lo-not:5556", False),
    ("tcp://player.example.org:5556", False), ("tcp://127.0.0.1:0;192.0.2.7:5556", False),
    ("tcp://192.0.2.7:0;127.0.0.1:5556", True), ("pgm://eth0;239.192.1.1:5555", False),
    ("udp://*:5556", False), ("nonsense", False),
])
def test_which_endpoints_stay_on_this_machine(endpoint, local):
    assert is_local(endpoint) is local


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5556", "tcp://*:5556", "tcp://192.0.2.7:1",
                                      "tcp://eth0:5556"])
@pytest.mark.parametrize("bind", [True, False])
def test_plain_endpoint_other_machines_reach_is_refused(endpoint, bind):
    with pytest.raises(ParameterError, match="curve_secret.*insecure") as e:
        check_endpoint(endpoint, bind=bind, curve=False)
    assert "\n" not in str(e.value)
    check_endpoint(endpoint, bind=bind, curve=False, insecure=True)   # the user said so
    check_endpoint(endpoint, bind=bind, curve=True)                   # CURVE: allowed


def test_loopback_and_ipc_need_nothing():
    for endpoint in ("tcp://127.0.0.1:5556", "tcp://lo:5556", "ipc:///tmp/x", "inproc://y"):
        check_endpoint(endpoint, bind=True, curve=False)


@pytest.fixture
def no_bind(monkeypatch):
    """Make any bind fail loudly: a refusal must come before the socket binds."""
    def refuse(self, addr):
        raise AssertionError(f"tried to bind {addr}")
    monkeypatch.setattr(zmq.Socket, "bind", refuse)


def test_receiver_sender_and_sink_refuse_before_binding(ctx, no_bind, keys):
    with pytest.raises(ParameterError, match="insecure"):
        FrameReceiver("tcp://0.0.0.0:5556", context=ctx)
    with pytest.raises(ParameterError, match="insecure"):
        FrameSender("tcp://*:5556", bind=True, spec=SPEC, context=ctx)
    with pytest.raises(SinkError, match="insecure"):
        open_sink("zmq:bind:tcp://0.0.0.0:5557")
    with pytest.raises(SinkError, match="insecure"):
        ZmqSink("tcp://eth0:5557", bind=True)
    # insecure=True or CURVE passes the check (the bind itself is what fails here).
    for make in (lambda: FrameReceiver("tcp://0.0.0.0:5556", insecure=True, context=ctx),
                 lambda: FrameReceiver("tcp://0.0.0.0:5556", curve_secret=keys["player"],
                                       allow=keys["allowed"], context=ctx)):
        with pytest.raises(AssertionError, match="tried to bind"):
            make()
    assert open_sink("zmq:bind:tcp://0.0.0.0:5557", insecure=True).security.insecure


def test_play_names_the_flags_in_its_one_line_refusal(no_bind, capsys):
    from stream.cli import main
    assert main(["play", "--bind", "tcp://0.0.0.0:5556", "--sink", "null"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--curve-secret" in err and "--insecure" in err, err
    assert main(["play", "--bind", "ipc:///tmp/never", "--sink", "zmq:bind:tcp://*:5557"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--curve-secret" in err and "--insecure" in err, err


# ====================================================================== keys
def test_keygen_writes_zmq_certificates_with_a_private_secret(tmp_path):
    r = run_program(["keygen", tmp_path / "k", "--name", "player"])
    assert r.returncode == 0, r.stderr
    public, secret = tmp_path / "k" / "player.key", tmp_path / "k" / "player.key_secret"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert sorted(os.listdir(tmp_path / "k")) == ["player.key", "player.key_secret"]
    pub, none = zmq.auth.load_certificate(public)
    pub2, sec = zmq.auth.load_certificate(secret)
    assert none is None and pub == pub2 and len(sec) == 40
    assert pub.decode() in r.stderr
    assert zmq.curve_public(sec) == pub                  # a real pair
    again = run_program(["keygen", tmp_path / "k", "--name", "player"])
    assert again.returncode == 2 and "exists" in again.stderr
    assert zmq.auth.load_certificate(secret)[1] == sec   # untouched
    forced = run_program(["keygen", tmp_path / "k", "--name", "player", "--force"])
    assert forced.returncode == 0 and zmq.auth.load_certificate(secret)[1] != sec


def test_key_loading_errors_say_what_to_give(keys, tmp_path):
    assert load_key_pair(keys["player"])[0] == load_public_key(keys["player_pub"])
    with pytest.raises(InputError, match="public key only"):
        load_key_pair(keys["player_pub"])
    with pytest.raises(InputError, match="certificate"):
        load_key_pair(tmp_path / "missing.key_secret")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no public keys"):
        load_allowed_keys(tmp_path / "empty")
    assert load_allowed_keys([keys["sender_pub"], keys["intruder_pub"]]) == {
        load_public_key(keys["sender_pub"]), load_public_key(keys["intruder_pub"])}
    for bad in (dict(allow=keys["allowed"]), dict(curve_server=keys["player_pub"])):
        with pytest.raises(ParameterError, match="curve_secret"):
            SocketSecurity(**bad)
    with pytest.raises(ParameterError, match="allow"):
        SocketSecurity(curve_secret=keys["player"])
    with pytest.raises(ParameterError, match="not both"):
        SocketSecurity(curve_secret=keys["player"], allow=keys["allowed"],
                       curve_server=keys["player_pub"])


# ============================================================ authentication
@pytest.mark.parametrize("allow", ["dir", "file"])
def test_an_allowed_sender_plays_exactly(ctx, keys, allow):
    X = _frames(120)
    allowed = keys["allowed"] if allow == "dir" else keys["sender_pub"]
    with FrameReceiver("tcp://127.0.0.1:*", curve_secret=keys["player"], allow=allowed,
                       context=ctx) as rx:
        with FrameSender(rx.endpoint, spec=SPEC, length=SPEC.samples_for(120),
                         curve_secret=keys["sender"], curve_server=keys["player_pub"],
                         context=ctx) as tx:
            tx.wait_for_receiver(10)
            for i in range(0, 120, 30):
                tx.send(X[i:i + 30])
        events = _drain(rx, _ended)
    np.testing.assert_array_equal(_audio(events), istft(X, SPEC, length=SPEC.samples_for(120)))
    assert tx.stats.frames_sent == 120 and tx.stats.frames_dropped == 0
    assert rx.security.refused == 0


def test_an_unauthorised_sender_never_reaches_the_sink(ctx, keys, caplog):
    X = _frames(40)
    caplog.set_level(logging.WARNING, logger="specstream")
    with FrameReceiver("tcp://127.0.0.1:*", curve_secret=keys["player"],
                       allow=keys["allowed"], context=ctx) as rx:
        intruders = [  # a key not allowed, and no CURVE at all
            FrameSender(rx.endpoint, spec=SPEC, curve_secret=keys["intruder"],
                        curve_server=keys["player_pub"], linger=0.2, send_timeout=0.5,
                        context=ctx),
            FrameSender(rx.endpoint, spec=SPEC, linger=0.2, send_timeout=0.5, context=ctx)]
        for tx, why in zip(intruders, ("refused our CURVE key", "handshake")):
            t0 = time.monotonic()
            with pytest.raises(SendError, match=why):
                tx.wait_for_receiver(30)
            assert time.monotonic() - t0 < 10        # a refusal ends the wait at once
            try:
                tx.send(X)                        # queued on its side, never admitted
            except SendError:
                pass
        events = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            events += rx.poll(0.05)
        for tx in intruders:
            tx.close()
            assert tx.stats.frames_sent == 0 and tx.stats.frames_dropped == 40
        assert events == [] and rx.stats.messages == 0 and rx.stats.frames_in == 0
        assert rx.security.refused >= 1                      # the key not allowed
        assert "refused a peer whose CURVE public key" in caplog.text
        # The player is still there for the one it allows.
        with FrameSender(rx.endpoint, spec=SPEC, curve_secret=keys["sender"],
                         curve_server=keys["player_pub"], context=ctx) as tx:
            tx.wait_for_receiver(10)
            tx.send(X)
        assert rx.stats.frames_in == 0
        _drain(rx, _ended)
        assert rx.stats.frames_in == 40


# ================================================================= the wire
class _Relay:
    """A plain TCP relay on 127.0.0.1 that keeps a copy of every byte it passes on."""

    def __init__(self, target_port: int):
        self.seen = bytearray()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._target = target_port
        self._threads = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            for a, b in ((client, upstream), (upstream, client)):
                t = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                t.start()
                self._threads.append(t)

    def _pipe(self, src, dst):
        try:
            while data := src.recv(65536):
                with self._lock:
                    self.seen += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self._server.close()


def _through_relay(ctx, rx_kw, tx_kw, secret: bytes):
    """Send frames holding ``secret`` through a relay; what the relay saw, and what played."""
    n = 10 * SPEC.n_bins * 8                        # 10 frames of complex64 bins, in bytes
    X = np.frombuffer((secret * n)[:n], np.complex64).reshape(10, SPEC.n_bins)
    with FrameReceiver("tcp://127.0.0.1:*", output="frames", context=ctx, **rx_kw) as rx:
        relay = _Relay(int(rx.endpoint.rsplit(":", 1)[1]))
        try:
            with FrameSender(f"tcp://127.0.0.1:{relay.port}", spec=SPEC, context=ctx,
                             **tx_kw) as tx:
                tx.wait_for_receiver(10)
                tx.send(X)
            events = _drain(rx, _ended)
        finally:
            relay.close()
    got = np.concatenate([e.frames for e in events if isinstance(e, FramesBlock)], axis=-2)
    return bytes(relay.seen), got[0], X


def test_curve_traffic_is_not_plaintext_on_the_wire(ctx, keys):
    secret = b"SPECSTREAM-SECRET"      # 17 bytes: the pattern repeats across frame bytes
    seen, got, X = _through_relay(ctx, {}, {}, secret)
    assert secret in seen and b"SPST" in seen      # the relay sees a plain stream...
    np.testing.assert_array_equal(got, X)
    seen, got, X = _through_relay(
        ctx, dict(curve_secret=keys["player"], allow=keys["allowed"]),
        dict(curve_secret=keys["sender"], curve_server=keys["player_pub"]), secret)
    np.testing.assert_array_equal(got, X)          # ...and with CURVE, the same frames arrive
    assert len(seen) > X.nbytes                    # through it,
    assert secret not in seen and secret[:8] not in seen and b"SPST" not in seen  # unreadable
    assert b"CURVE" in seen                        # (the ZMTP greeting names the mechanism)


# ================================================================ zmq: sink
def test_zmq_sink_as_curve_server_serves_only_allowed_programs(ctx, keys):
    from stream.security import open_socket
    from stream.sinks import unpack_block
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    sink = open_sink(f"zmq:bind:{endpoint}", curve_secret=keys["player"],
                     allow=keys["sender_pub"]).open(8000, 1)

    def pull(secret, timeout_ms):
        security = SocketSecurity(curve_secret=secret, curve_server=keys["player_pub"])
        return open_socket(ctx, zmq.PULL, endpoint, False, security=security,
                           options=[(zmq.RCVTIMEO, timeout_ms)])

    intruder, allowed = pull(keys["intruder"], 1000), pull(keys["sender"], 10_000)
    try:
        x = np.arange(256, dtype=np.float32) / 256
        sink.write(x)
        head, samples = unpack_block(allowed.recv_multipart())
        np.testing.assert_array_equal(samples[:, 0], x)
        with pytest.raises(zmq.Again):
            intruder.recv_multipart()            # never admitted: the sink serves one peer
        assert sink.security.refused >= 1
    finally:
        sink.close(drain=False)
        intruder.close(linger=0)
        allowed.close(linger=0)
