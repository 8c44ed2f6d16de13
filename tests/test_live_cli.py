"""specstream send / play / devices / demo as real subprocesses over real sockets."""

import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from programs import SPECSTREAM, program_env, run_program
from stream.engine import stft
from stream.spec import STFTSpec

SR = 16000
SPEC = STFTSpec(sample_rate=SR, n_fft=512, hop_length=128)


def _env():
    # Deterministic FFTW plans: reconstruct and play round identically.
    return program_env(SPECSTREAM_FFTW_PLANNER="estimate")


class Proc:
    """A subprocess whose stderr is collected line by line in the background."""

    def __init__(self, args, **kw):
        self.p = subprocess.Popen(SPECSTREAM + [str(a) for a in args], stderr=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, env=_env(), **kw)
        self.lines = []
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stderr:
            with self._cv:
                self.lines.append(line)
                self._cv.notify_all()
        with self._cv:
            self.lines.append(None)       # EOF
            self._cv.notify_all()

    def wait_line(self, pattern, timeout=30.0):
        """The first stderr match of ``pattern`` (a regex), waiting for it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = 0
        with self._cv:
            while True:
                while i < len(self.lines):
                    line = self.lines[i]
                    i += 1
                    if line is None:
                        raise AssertionError(f"no {pattern!r} before exit: {self.stderr}")
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {pattern!r} in time: {self.stderr}")
                self._cv.wait(left)

    def wait(self, timeout=60.0):
        rc = self.p.wait(timeout)
        with self._cv:
            self._cv.wait_for(lambda: self.lines and self.lines[-1] is None, timeout=10)
        return rc

    @property
    def stderr(self):
        return "".join(x for x in self.lines if x)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)


@pytest.fixture
def procs():
    started = []

    def start(args, **kw):
        p = Proc(args, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


def _run(args, timeout=60):
    return run_program(args, env=_env(), timeout=timeout)


def _play(procs, endpoint, *extra):
    p = procs(["play", "--bind", endpoint, *extra])
    ep = p.wait_line(r"listening on (\S+)").group(1)
    return p, ep


def _files(tmp_path, name, seconds, seed, db_deg=True):
    """Magnitude (dB) and phase (degrees) files, bins x frames as librosa lays them out."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    x = (0.3 * np.sin(2 * np.pi * (300 + 100 * seed) * t) + 0.05 * rng.standard_normal(n))
    X = stft(x.astype(np.float32), SPEC).T
    mag, ph = tmp_path / f"{name}-mag.npy", tmp_path / f"{name}-phase.npy"
    np.save(mag, (20 * np.log10(np.abs(X) + 1e-9)).astype(np.float32))
    np.save(ph, np.degrees(np.angle(X)).astype(np.float32))
    return mag, ph


UNITS = ["-r", SR, "--magnitude", "db", "--phase-unit", "deg"]


def _reconstruct(tmp_path, mag, ph, name):
    out = tmp_path / f"{name}-ref.wav"
    r = _run(["reconstruct", mag, ph, "-o", out, "-q", *UNITS])
    assert r.returncode == 0, r.stderr
    return sf.read(out, dtype="float32")[0]


# ------------------------------------------------------- send -> play == reconstruct
@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_send_play_equals_reconstruct(tmp_path, procs, transport):
    mag, ph = _files(tmp_path, "a", 3.0, 0)
    ref = _reconstruct(tmp_path, mag, ph, "a")
    out = tmp_path / "played.wav"
    endpoint = "tcp://127.0.0.1:*" if transport == "tcp" else f"ipc://{tmp_path}/play.sock"
    play, ep = _play(procs, endpoint, "--sink", f"wav:{out}")
    send = _run(["send", mag, ph, "--connect", ep, "--rate", "max", *UNITS])
    assert send.returncode == 0, send.stderr
    assert play.wait() == 0, play.stderr
    got, rate = sf.read(out, dtype="float32")
    assert rate == SR
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)
    assert "0 dropped" in play.stderr and "0 concealed" in play.stderr


def test_send_analyze_paced_plays_the_audio(tmp_path, procs):
    rng = np.random.default_rng(5)
    x = (0.2 * rng.standard_normal(SR // 2)).astype(np.float32)
    wav = tmp_path / "in.wav"
    sf.write(wav, x, SR, subtype="FLOAT")
    out = tmp_path / "out.wav"
    play, ep = _play(procs, f"ipc://{tmp_path}/a.sock", "--sink", f"wav:{out}")
    send = _run(["send", "--analyze", wav, "--connect", ep, "--rate", "4", "--n-fft", 512,
                 "--hop-length", 128])
    assert send.returncode == 0, send.stderr
    assert play.wait() == 0, play.stderr
    y, rate = sf.read(out, dtype="float32")
    assert rate == SR and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-5)


def test_magnitude_only_file_plays_live_through_rtpghi(tmp_path, procs):
    """A magnitude-only file sent over ZeroMQ plays with a rebuilt phase that
    sounds right: far closer to the magnitudes than zero phase (real speech)."""
    from stream.phase import spectral_convergence
    x, sr = sf.read("/usr/share/sounds/alsa/Front_Center.wav", dtype="float32")
    spec = STFTSpec(sample_rate=sr, n_fft=1024, hop_length=256)
    X = stft(x[: sr], spec)                      # 1 s of speech, frames x bins
    mag = np.abs(X).astype(np.float32)
    f = tmp_path / "mag.npy"
    np.save(f, mag)
    out = tmp_path / "out.wav"
    play, ep = _play(procs, f"ipc://{tmp_path}/m.sock", "--sink", f"wav:{out}")
    send = _run(["send", f, "--connect", ep, "--rate", "max", "-r", sr, "--n-fft", 1024,
                 "--hop-length", 256, "--layout", "frames-bins"])
    assert send.returncode == 0, send.stderr
    assert play.wait() == 0, play.stderr
    assert "0 dropped" in play.stderr
    y, rate = sf.read(out, dtype="float32")
    assert rate == sr and abs(len(y) - sr) <= spec.hop_length
    sc = spectral_convergence(mag, y, spec)
    sc_zero = spectral_convergence(mag, mag.astype(np.complex64), spec)
    print(f"spectral convergence: rtpghi {sc:.1f} dB, zero phase {sc_zero:.1f} dB")
    assert sc < -15.0 and sc < sc_zero - 10.0, (sc, sc_zero)


def test_a_mel_file_sent_plays_as_the_live_pipeline_makes_it(tmp_path, procs):
    """send MEL (the recipe named by the probe, or --mel) -> play: mel frames
    on the wire, inverted by the player frame by frame (RTPGHI)."""
    from stream import mel as sm
    from stream import phase
    from stream.pipeline import FramePipeline
    x, sr = sf.read("/usr/share/sounds/alsa/Front_Center.wav", dtype="float32")
    spec, mel = sm.mel_preset("hifigan", sample_rate=float(sr))
    v = sm.melspectrogram(x[:sr], spec, mel, **sm.preset_analysis("hifigan"))
    f = tmp_path / "mel.npy"
    np.save(f, v.T.astype(np.float32))                 # (n_mels, frames), as HiFi-GAN's
    pipe = FramePipeline(spec, kind="mel", mel=mel, phase=phase.RTPGHI(spec, rng=0),
                         length=sm.preset_samples_for("hifigan", spec, len(v)))
    want = np.concatenate([pipe.push(v), pipe.flush()])
    for i, extra in enumerate(([], ["--mel", "hifigan"])):
        out = tmp_path / f"out{i}.wav"
        play, ep = _play(procs, f"ipc://{tmp_path}/mel{i}.sock", "--sink", f"wav:{out}")
        send = _run(["send", f, "--connect", ep, "--rate", "max", "-r", sr, *extra])
        assert send.returncode == 0, send.stderr
        assert ("probe: mel bands" in send.stderr) == (not extra)
        assert play.wait() == 0, play.stderr
        y, rate = sf.read(out, dtype="float32")
        assert rate == sr and y.shape == want.shape
        # The player's RTPGHI draws its own random phases for bins 100 dB down.
        assert np.abs(y - want).max() < 1e-3 * np.abs(want).max()


# ------------------------------------------------------------ producer killed
def test_killed_producer_then_a_new_stream(tmp_path, procs):
    mag_a, ph_a = _files(tmp_path, "a", 20.0, 1)
    mag_b, ph_b = _files(tmp_path, "b", 1.0, 2)
    ref_b = _reconstruct(tmp_path, mag_b, ph_b, "b")
    out = tmp_path / "out.wav"
    play, ep = _play(procs, "tcp://127.0.0.1:*", "--sink", f"wav:{out}", "--stats")
    send_a = procs(["send", mag_a, ph_a, "--connect", ep, "--rate", "realtime", *UNITS])
    play.wait_line(r"\[stats\] frames [1-9]\d* in")       # A is playing
    send_a.p.send_signal(signal.SIGKILL)
    send_a.p.wait(10)
    send_b = _run(["send", mag_b, ph_b, "--connect", ep, "--rate", "max", *UNITS])
    assert send_b.returncode == 0, send_b.stderr
    assert play.wait() == 0, play.stderr
    assert "2 stream(s)" in play.stderr
    got = sf.read(out, dtype="float32")[0]
    assert len(got) > len(ref_b)
    np.testing.assert_array_equal(got[-len(ref_b):], ref_b)


# -------------------------------------------------------------------- signals
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_play_cleanly_and_finalises_the_file(tmp_path, procs, sig):
    mag, ph = _files(tmp_path, "a", 1.0, 3)
    ref = _reconstruct(tmp_path, mag, ph, "a")
    n_frames = np.load(mag).shape[1]
    out = tmp_path / "out.wav"
    play, ep = _play(procs, "tcp://127.0.0.1:*", "--sink", f"wav:{out}", "--stats",
                     "--keep-alive")
    assert _run(["send", mag, ph, "--connect", ep, "--rate", "max", *UNITS]).returncode == 0
    play.wait_line(rf"\[stats\] frames {n_frames} in, {n_frames} played")
    play.p.send_signal(sig)
    assert play.wait() == 0, play.stderr
    assert "interrupted" in play.stderr and "Traceback" not in play.stderr
    np.testing.assert_array_equal(sf.read(out, dtype="float32")[0], ref)


# ---------------------------------------------------------------- errors, devices
def test_bind_on_a_busy_port_is_a_one_line_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = _run(["play", "--bind", f"tcp://127.0.0.1:{port}", "--sink", "null"])
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "cannot bind" in r.stderr


@pytest.mark.parametrize("args, words", [
    (["send", "--rate", "fast", "--analyze", "x.wav"], "--rate"),
    (["send"], "MAG"),
    (["send", "--analyze", "/nonexistent.wav"], "cannot read"),
])
def test_send_usage_errors(args, words):
    r = _run(args)
    assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr


def test_devices_lists_outputs_or_says_why_not():
    r = _run(["devices"])
    assert "Traceback" not in r.stderr
    if r.returncode == 0:
        assert "NAME" in r.stdout or "no audio output devices" in r.stderr
    else:
        assert r.returncode == 2 and "PortAudio" in r.stderr


# ----------------------------------------------------------------------- demo
def test_demo_through_two_processes_writes_the_clip(tmp_path):
    from stream.cli.live import synth_clip
    out = tmp_path / "demo.wav"
    r = _run(["demo", "--sink", f"wav:{out}", "--seconds", "1.5", "--rate", "max"])
    assert r.returncode == 0, r.stderr
    y, rate = sf.read(out, dtype="float32")
    x = synth_clip(1.5)
    assert rate == 48000 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-5)
    assert np.abs(y).max() > 0.5


def test_demo_without_an_audio_device_writes_a_wav(tmp_path):
    from stream.cli.live import _output_device_problem
    if _output_device_problem() is None:
        pytest.skip("this machine has an audio output device")
    out = tmp_path / "fallback.wav"
    r = _run(["demo", "-o", out, "--seconds", "1", "--rate", "max"])
    assert r.returncode == 0, r.stderr
    assert "no audio output" in r.stderr and f"writing {out}" in r.stderr
    assert sf.info(out).frames == 48000 + 48000 // 4


# ------------------------------------------------------- the first stream, sinks
def test_a_missing_sink_directory_is_an_error_before_listening(tmp_path):
    r = _run(["play", "--sink", f"wav:{tmp_path}/missing/dir/x.wav", "--bind",
              "tcp://127.0.0.1:*"])
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "does not exist" in r.stderr
    assert "listening" not in r.stderr


def test_streams_a_file_cannot_hold_are_skipped_and_others_get_their_own_file(tmp_path,
                                                                              procs):
    """--keep-alive into one WAV: a first stream at a fractional rate (no sound
    file holds it) is skipped with a line, the player goes on; the next stream
    writes out.wav; one of another rate goes to out-3.wav beside it."""
    import zmq
    from stream.engine import istft
    from stream.transport import FrameSender
    out = tmp_path / "out.wav"
    play = procs(["-v", "play", "--bind", "tcp://127.0.0.1:*", "--sink", f"wav:{out}",
                  "--keep-alive"])
    ep = play.wait_line(r"listening on (\S+)").group(1)
    specs = [STFTSpec(sample_rate=22050.5, n_fft=512, hop_length=128), SPEC,
             STFTSpec(sample_rate=8000, n_fft=512, hop_length=128)]
    refs = []
    ctx = zmq.Context()
    for i, spec in enumerate(specs):
        x = np.sin(2 * np.pi * 300 * np.arange(4000) / spec.sample_rate).astype(np.float32)
        z = stft(x, spec)
        refs.append(istft(z, spec))
        with FrameSender(ep, spec=spec, stream_id=10 + i, context=ctx) as tx:
            tx.send(z)
        play.wait_line(rf"stream {10 + i} ended")
    ctx.destroy(linger=0)
    play.p.send_signal(signal.SIGINT)
    assert play.wait() == 0, play.stderr
    assert "cannot play to" in play.stderr and "Traceback" not in play.stderr
    got, sr = sf.read(out, dtype="float32")
    assert sr == SR
    np.testing.assert_allclose(got, refs[1], atol=1e-5)
    got3, sr3 = sf.read(tmp_path / "out-3.wav", dtype="float32")
    assert sr3 == 8000
    np.testing.assert_allclose(got3, refs[2], atol=1e-5)


# ------------------------------------------------------------- honest sender
def test_send_with_no_player_exits_1_and_says_so():
    with socket.socket() as s:                      # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    t0 = time.monotonic()
    r = _run(["send", "--analyze", "/usr/share/sounds/alsa/Front_Center.wav", "--connect",
              endpoint, "--rate", "max", "--wait", "1"], timeout=60)
    assert r.returncode == 1, r.stderr
    assert f"no receiver at {endpoint}: is `specstream play` running?" in r.stderr
    assert "Traceback" not in r.stderr and time.monotonic() - t0 < 30


def test_send_counts_frames_that_never_left(tmp_path):
    mag, ph = _files(tmp_path, "a", 0.5, 0)
    n = np.load(mag).shape[1]
    r = _run(["send", mag, ph, "--connect", f"ipc://{tmp_path}/nobody", "--rate", "max",
              "--wait", "0", "--linger", "0.5", *UNITS], timeout=60)
    assert r.returncode == 1, r.stderr
    assert f"error: {n} of {n} frames never left: no receiver at ipc://" in r.stderr
    assert f"0 frames (0.00 s of audio) sent, {n} dropped" in r.stderr


# ------------------------------------------------------------------ security
def test_curve_keys_through_the_command_line(tmp_path, procs):
    mag, ph = _files(tmp_path, "a", 1.0, 4)
    ref = _reconstruct(tmp_path, mag, ph, "a")
    for d, name in (("player", "player"), ("senders", "studio"), ("other", "intruder")):
        assert _run(["keygen", tmp_path / d, "--name", name]).returncode == 0
    out = tmp_path / "out.wav"
    play, ep = _play(procs, "tcp://127.0.0.1:*", "--sink", f"wav:{out}",
                     "--curve-secret", tmp_path / "player/player.key_secret",
                     "--allow", tmp_path / "senders")
    server = ["--curve-server", tmp_path / "player/player.key"]
    intruder = _run(["send", mag, ph, "--connect", ep, "--rate", "max", "--wait", "1",
                     "--curve-secret", tmp_path / "other/intruder.key_secret", *server, *UNITS])
    assert intruder.returncode == 1 and "refused our CURVE key" in intruder.stderr
    plain = _run(["send", mag, ph, "--connect", ep, "--rate", "max", "--wait", "1", *UNITS])
    assert plain.returncode == 1 and "handshake" in plain.stderr, plain.stderr
    send = _run(["send", mag, ph, "--connect", ep, "--rate", "max",
                 "--curve-secret", tmp_path / "senders/studio.key_secret", *server, *UNITS])
    assert send.returncode == 0, send.stderr
    assert play.wait() == 0, play.stderr
    np.testing.assert_array_equal(sf.read(out, dtype="float32")[0], ref)
    assert "1 stream(s)" in play.stderr and "peers refused (CURVE key not allowed): 1" \
        in play.stderr, play.stderr


# ------------------------------------------------------------ Ctrl-C, any time
def _loaded(pid: int, marker: str) -> bool:
    try:
        with open(f"/proc/{pid}/maps") as f:
            return marker in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
@pytest.mark.parametrize("command, moment", [
    (["play", "--sink", "null"], "_multiarray_umath"),    # while importing numpy
    (["play", "--sink", "null"], "libzmq"),               # while loading pyzmq, binding
    (["play", "--sink", "null"], "listening on"),         # playing, no stream yet
    (["send", "{mag}", "--wait", "30", "-r", SR], "_multiarray_umath"),
    (["send", "{mag}", "--wait", "30", "-r", SR], "sending to"),   # waiting for a player
    (["reconstruct", "{mag}", "-o", "{out}", "-r", SR], "pyfftw"),
])
def test_ctrl_c_at_any_moment_exits_130_without_a_traceback(tmp_path, procs, command, moment):
    mag, _ = _files(tmp_path, "a", 1.0, 0)
    args = [str(a).format(mag=mag, out=tmp_path / "o.wav") for a in command]
    if command[0] in ("play", "send"):
        args += ["--bind" if command[0] == "play" else "--connect", f"ipc://{tmp_path}/s"]
    p = procs(args)
    if " " in moment:                                   # a line the program prints
        p.wait_line(moment)
    else:                                               # a library being loaded
        deadline = time.monotonic() + 30
        while not _loaded(p.p.pid, moment):
            assert p.p.poll() is None and time.monotonic() < deadline, p.stderr
            time.sleep(0.0005)
    p.p.send_signal(signal.SIGINT)
    assert p.wait(30) == 130, p.stderr
    assert "Traceback" not in p.stderr and "interrupted" in p.stderr, p.stderr


# ------------------------------------------------------- --latency, --stats-file
def test_latency_flag_is_auto_or_milliseconds():
    from stream.cli import build_parser
    from stream.cli.live import _open_sink
    parse = build_parser().parse_args
    assert parse(["play"]).latency == "auto"
    sink = _open_sink(parse(["play"]))
    assert sink.auto and sink.latency_ms == 30.0          # starts low
    sink = _open_sink(parse(["play", "--latency", "80"]))
    assert not sink.auto and sink.latency_ms == 80.0       # pinned
    _open_sink(parse(["play", "--sink", "null"]))          # auto is no error for other sinks
    r = _run(["play", "--latency", "soon"])
    assert r.returncode == 2 and "--latency" in r.stderr and "auto" in r.stderr


def test_stats_file_writes_a_json_line_a_second(tmp_path, procs):
    import json
    rng = np.random.default_rng(7)
    x = (0.2 * rng.standard_normal(int(2.5 * SR))).astype(np.float32)
    wav = tmp_path / "in.wav"
    sf.write(wav, x, SR, subtype="FLOAT")
    stats = tmp_path / "run.jsonl"
    play, ep = _play(procs, f"ipc://{tmp_path}/s.sock", "--sink", f"wav:{tmp_path}/o.wav",
                     "--stats-file", stats)
    send = _run(["send", "--analyze", wav, "--connect", ep, "--n-fft", 512,
                 "--hop-length", 128])
    assert send.returncode == 0, send.stderr
    assert play.wait() == 0, play.stderr
    rows = [json.loads(line) for line in stats.read_text().splitlines()]
    assert len(rows) >= 3                                  # one a second, and one at the end
    times = [r["time"] for r in rows]
    assert times == sorted(times)
    for key in ("time", "queue_ms", "target_ms", "latency_ms", "ratio_ppm", "underruns",
                "concealed", "frames_in"):
        assert key in rows[-1]
    assert rows[-1]["frames_in"] > 0 and rows[-1]["underruns"] == 0
    assert rows[-1]["queue_ms"] is None                    # a file sink has no queue
    r = _run(["play", "--stats-file", f"{tmp_path}/no/such/dir/s.jsonl", "--sink", "null",
              "--bind", "tcp://127.0.0.1:*"])
    assert r.returncode == 2 and "--stats-file" in r.stderr
