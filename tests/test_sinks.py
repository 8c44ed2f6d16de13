"""Sinks without an audio device: files, pipes, sockets, URIs.  The ring
buffer + callback logic of the sounddevice sink: tests/test_ring.py."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import zmq

from stream.sinks import (BLOCK_HEADER, FLAG_END, FileSink, NullSink, RawSink, SinkError,
                          SoundDeviceSink, ZmqSink, open_sink, pack_block, unpack_block)
from stream.errors import SpecstreamError

ROOT = Path(__file__).resolve().parent.parent
RATE = 48000


def signal(channels: int, n: int, seed: int = 0) -> np.ndarray:
    """(channels, n) float32 noise in [-0.9, 0.9]; (n,) when channels == 1."""
    x = np.random.default_rng(seed).uniform(-0.9, 0.9, (channels, n)).astype(np.float32)
    return x[0] if channels == 1 else x


def blocks(x: np.ndarray, sizes=(256, 1, 700, 0, 4096, 333)):
    """Cut ``x`` along its last axis into blocks of varied sizes (including empty)."""
    i, k = 0, 0
    while i < x.shape[-1]:
        n = sizes[k % len(sizes)]
        yield x[..., i:i + n]
        i, k = i + n, k + 1


def interleaved(x: np.ndarray) -> np.ndarray:
    return x[:, None] if x.ndim == 1 else x.T


# ------------------------------------------------------------------- URIs
@pytest.mark.parametrize("uri, cls", [
    ("null", NullSink), ("wav:out.wav", FileSink), ("wav:out.flac", FileSink),
    ("raw:-", RawSink), ("raw:out.f32", RawSink), ("sounddevice", SoundDeviceSink),
    ("sounddevice:3", SoundDeviceSink), ("zmq:tcp://127.0.0.1:5000", ZmqSink),
    ("zmq:bind:tcp://127.0.0.1:5000", ZmqSink), ("zmq:connect:ipc:///tmp/x", ZmqSink)])
def test_uri_forms(uri, cls):
    assert type(open_sink(uri)) is cls


def test_uri_details():
    assert open_sink("sounddevice:3").device == 3
    assert open_sink("sounddevice:USB Audio").device == "USB Audio"
    assert open_sink("sounddevice", device=2, latency_ms=20, blocksize=128).device == 2
    z = open_sink("zmq:bind:tcp://127.0.0.1:5000")
    assert z.bind and z.endpoint == "tcp://127.0.0.1:5000"
    z = open_sink("zmq:tcp://127.0.0.1:5000")
    assert not z.bind and z.endpoint == "tcp://127.0.0.1:5000"
    assert open_sink("wav:a.flac").subtype == "PCM_24"
    assert open_sink("wav:a.wav").subtype == "FLOAT"


@pytest.mark.parametrize("uri", ["", "speaker", "wav:", "raw:", "null:x", "zmq:", "zmq:5556",
                                 "zmq:bind:udp://x", "mp3:a.mp3", "wav:a.mp3"])
def test_bad_uris(uri):
    with pytest.raises(SinkError) as e:
        open_sink(uri)
    assert isinstance(e.value, SpecstreamError)
    if not uri.startswith("wav:a"):
        assert "sounddevice" in str(e.value) and "zmq:bind:ENDPOINT" in str(e.value)


def test_device_options_only_for_sounddevice():
    with pytest.raises(SinkError, match="sounddevice"):
        open_sink("null", latency_ms=10)
    with pytest.raises(SinkError, match="two devices"):
        open_sink("sounddevice:1", device=2)
    with pytest.raises(SinkError, match="latency"):
        open_sink("sounddevice", latency_ms=0)
    with pytest.raises(SinkError, match="catch-up"):
        open_sink("wav:out.wav", catch_up=False)
    assert open_sink("sounddevice").catch_up is True              # the default holds --latency
    assert open_sink("sounddevice", catch_up=False).catch_up is False


def test_play_no_catch_up_flag_reaches_the_sink():
    from stream.cli import build_parser
    from stream.cli.live import _open_sink
    args = build_parser().parse_args(["play", "--no-catch-up"])
    assert _open_sink(args).catch_up is False
    assert _open_sink(build_parser().parse_args(["play"])).catch_up is True


# ------------------------------------------------------- block validation
def test_block_layout_checks(tmp_path):
    s = NullSink()
    with pytest.raises(SinkError, match="not open"):
        s.write(np.zeros(4, np.float32))
    s.open(RATE, 2)
    with pytest.raises(SinkError, match=r"\(2, n_samples\)"):
        s.write(np.zeros(10, np.float32))             # mono block to a stereo sink
    with pytest.raises(SinkError, match="channels first"):
        s.write(np.zeros((10, 2), np.float32))        # (n, channels): the wrong layout
    with pytest.raises(SinkError, match="float"):
        s.write(np.zeros((2, 10), np.int16))
    s.write(np.zeros((2, 10)))                        # float64 is converted
    s.close()
    with pytest.raises(SinkError, match="closed"):
        s.write(np.zeros((2, 10), np.float32))
    s.close()                                         # twice: harmless
    assert s.stats["samples"] == 10
    with pytest.raises(SinkError, match="sample rate"):
        NullSink().open(0, 1)
    with pytest.raises(SinkError, match="channels"):
        NullSink().open(RATE, 0)


def test_nonfinite_values_are_zeroed_and_counted(tmp_path):
    x = signal(2, 1000)
    x[0, 10], x[1, 20], x[1, 30] = np.nan, np.inf, -np.inf
    path = tmp_path / "out.f32"
    with open_sink(f"raw:{path}").open(RATE, 2) as s:
        s.write(x)
    y = np.frombuffer(path.read_bytes(), "<f4").reshape(-1, 2).T
    want = x.copy()
    want[~np.isfinite(want)] = 0
    np.testing.assert_array_equal(y, want)
    assert s.stats["nonfinite"] == 3
    assert np.isnan(x[0, 10])                   # the caller's block is left alone


def test_null_sink_counts():
    x = signal(3, 5000)
    with NullSink().open(RATE, 3) as s:
        for b in blocks(x):
            s.write(b)
    st = s.stats
    assert st["samples"] == 5000 and st["underruns"] == 0
    assert st["peak"] == pytest.approx(np.abs(x).max())
    assert st["seconds"] == pytest.approx(5000 / RATE)


# ------------------------------------------------------------------ files
@pytest.mark.parametrize("channels", [1, 2, 5])
def test_wav_sink_is_exact_float(tmp_path, channels):
    x = signal(channels, 20000)
    path = tmp_path / "out.wav"
    with open_sink(f"wav:{path}").open(RATE, channels) as s:
        for b in blocks(x):
            s.write(b)
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == RATE and sf.info(path).subtype == "FLOAT"
    np.testing.assert_array_equal(data, interleaved(x))
    assert s.stats["samples"] == 20000


def test_flac_sink_is_24_bit_and_counts_clipping(tmp_path):
    x = signal(2, 10000)
    x[0, 100], x[1, 200] = 1.5, -2.0
    path = tmp_path / "out.flac"
    with open_sink(f"wav:{path}").open(44100, 2) as s:
        for b in blocks(x):
            s.write(b)
    data, rate = sf.read(path, dtype="float64", always_2d=True)
    assert rate == 44100 and sf.info(path).subtype == "PCM_24"
    np.testing.assert_allclose(data, np.clip(interleaved(x), -1, 1), atol=2.0 ** -23)
    assert s.stats["clipped"] == 2 and s.stats["peak"] == 2.0


def test_file_sink_errors(tmp_path):
    with pytest.raises(SinkError, match="whole-number"):
        open_sink(f"wav:{tmp_path / 'a.wav'}").open(44100.5, 1)
    with pytest.raises(SinkError, match="cannot create"):
        open_sink(f"wav:{tmp_path / 'no' / 'dir' / 'a.wav'}").open(RATE, 1)
    with pytest.raises(SinkError, match="cannot open"):
        open_sink(f"raw:{tmp_path / 'no' / 'dir' / 'a.f32'}").open(RATE, 1)


def test_raw_file_sink(tmp_path):
    x = signal(2, 7000)
    path = tmp_path / "out.f32"
    with open_sink(f"raw:{path}").open(RATE, 2) as s:
        for b in blocks(x):
            s.write(b)
    assert path.read_bytes() == np.ascontiguousarray(x.T, dtype="<f4").tobytes()


def test_raw_stdout_sink(tmp_path):
    x = signal(1, 3000)
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np; sys.path.insert(0, sys.argv[1]);"
            "from stream.sinks import open_sink; x = np.load(sys.argv[2]);"
            "s = open_sink('raw:-').open(48000, 1);"
            "[s.write(x[i:i + 512]) for i in range(0, len(x), 512)]; s.close()")
    r = subprocess.run([sys.executable, "-c", code, str(ROOT), str(tmp_path / "x.npy")],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == x.astype("<f4").tobytes()


# -------------------------------------------------------------------- zmq
def _pull(ctx, endpoint=None, bind=True):
    s = ctx.socket(zmq.PULL)
    s.setsockopt(zmq.RCVTIMEO, 10_000)
    s.setsockopt(zmq.LINGER, 0)
    if bind:
        port = s.bind_to_random_port("tcp://127.0.0.1")
        return s, f"tcp://127.0.0.1:{port}"
    s.connect(endpoint)
    return s, endpoint


def _receive_stream(sock):
    heads, parts = [], []
    while True:
        head, samples = unpack_block(sock.recv_multipart(copy=False))
        heads.append(head)
        if head.flags & FLAG_END:
            return heads, parts
        parts.append(samples.copy())


@pytest.mark.parametrize("bind_sink", [False, True])
def test_zmq_sink_over_tcp(bind_sink):
    x = signal(2, 9000)
    ctx = zmq.Context()
    pull = None
    try:
        if bind_sink:
            with socket_port() as port:
                endpoint = f"tcp://127.0.0.1:{port}"
            sink = open_sink(f"zmq:bind:{endpoint}").open(RATE, 2)
            pull, _ = _pull(ctx, endpoint, bind=False)
        else:
            pull, endpoint = _pull(ctx)
            sink = open_sink(f"zmq:{endpoint}").open(RATE, 2)
        result = {}
        t = threading.Thread(target=lambda: result.update(zip(("h", "p"),
                                                              _receive_stream(pull))))
        t.start()
        sent = list(blocks(x))
        for b in sent:
            sink.write(b)
        sink.close(drain=True)
        t.join(20)
        assert not t.is_alive()
        heads, parts = result["h"], result["p"]
        sizes = [b.shape[-1] for b in sent if b.shape[-1]]     # empty blocks send nothing
        assert [h.seq for h in heads] == list(range(len(sizes) + 1))
        assert all(h.sample_rate == RATE and h.channels == 2 and h.version == 1 for h in heads)
        assert [h.n_samples for h in heads[:-1]] == sizes
        assert heads[-1].n_samples == 0 and heads[-1].flags == FLAG_END
        np.testing.assert_array_equal(np.concatenate(parts), x.T)
        assert sink.stats["messages"] == len(sizes) and sink.stats["samples"] == 9000
    finally:
        if pull is not None:
            pull.close(linger=0)
        ctx.term()


class socket_port:
    """A free TCP port on 127.0.0.1 (``with socket_port() as port``)."""

    def __enter__(self):
        import socket
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        return self.s.getsockname()[1]

    def __exit__(self, *exc):
        self.s.close()


def test_zmq_block_format_is_the_documented_struct():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    head, payload = pack_block(x, 44100.0, 2, seq=7)
    assert len(head) == 32 == BLOCK_HEADER.size
    assert struct.unpack("<4sHHdIIQ", head) == (b"SSAU", 1, 0, 44100.0, 2, 3, 7)
    assert bytes(payload) == struct.pack("<6f", 0, 1, 2, 3, 4, 5)
    h, y = unpack_block([head, bytes(payload)])
    assert (h.sample_rate, h.channels, h.n_samples, h.seq) == (44100.0, 2, 3, 7)
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("parts, match", [
    ([b"x" * 32], "2"),
    ([b"x" * 31, b""], "32"),
    ([struct.pack("<4sHHdIIQ", b"NOPE", 1, 0, 48000.0, 1, 0, 0), b""], "magic"),
    ([struct.pack("<4sHHdIIQ", b"SSAU", 9, 0, 48000.0, 1, 0, 0), b""], "version"),
    ([struct.pack("<4sHHdIIQ", b"SSAU", 1, 0, 48000.0, 2, 3, 0), b"\0" * 20], "24 bytes"),
])
def test_zmq_block_rejects(parts, match):
    with pytest.raises(SinkError, match=match):
        unpack_block(parts)


def test_zmq_sink_without_receiver_times_out():
    with socket_port() as port:
        endpoint = f"tcp://127.0.0.1:{port}"
    sink = ZmqSink(endpoint, hwm=1, send_timeout_ms=100).open(RATE, 1)
    with pytest.raises(SinkError, match="no receiver"):
        for _ in range(100):      # the queue takes a few before send blocks
            sink.write(np.zeros(64, np.float32))
    sink.close(drain=False)


def test_zmq_sink_bad_bind():
    with socket_port() as port:
        pass
    a = open_sink(f"zmq:bind:tcp://127.0.0.1:{port}").open(RATE, 1)
    try:
        with pytest.raises(SinkError, match="cannot bind"):
            open_sink(f"zmq:bind:tcp://127.0.0.1:{port}").open(RATE, 1)
    finally:
        a.close(drain=False)


def test_flush_pushes_files_out(tmp_path):
    x = signal(2, 1000)
    path = tmp_path / "out.f32"
    s = open_sink(f"raw:{path}").open(RATE, 2)
    s.write(x)
    s.flush()
    assert path.read_bytes() == np.ascontiguousarray(x.T, dtype="<f4").tobytes()
    s.close()
    NullSink().open(RATE, 1).flush()     # a no-op where there is nothing to push


# --------------------------------------------- sounddevice import errors
def test_sounddevice_missing_is_a_clear_error():
    # sounddevice made unimportable in a subprocess: the sink says what to install.
    code = ("import sys; sys.modules['sounddevice'] = None; sys.path.insert(0, sys.argv[1]);"
            "from stream.sinks import open_sink, SinkError\n"
            "try:\n    open_sink('sounddevice').open(48000, 2)\n"
            "except SinkError as e:\n    print(e)")
    r = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "pip install sounddevice" in r.stdout


def test_sinks_import_does_not_import_sounddevice():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import stream.sinks, json;"
            "s = stream.sinks.open_sink('sounddevice');"
            "print(json.dumps('sounddevice' in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) is False
