"""A private PulseAudio server with a null sink, for tests that play for real.

The machines that run the tests have no sound card.  The ``pulse_server``
fixture (session scope) starts a PulseAudio daemon of its own (HOME and XDG
dirs in a temp dir, nothing lands in the user's home), with a 48 kHz float32
stereo null sink ``testsink`` clocked at real time, and routes ALSA's
``default`` device to it through an ALSA config file, so PortAudio's default
output plays into the null sink.  The configuration lives in ``tests/audio/``;
the recipe is ``../shared/notes/audio-in-ci.md``.

PortAudio reads the ALSA and PulseAudio settings when ``sounddevice`` is
imported, so code that plays must run in a subprocess started with
``env=pulse_server.env``.  What it played is captured from the sink's monitor::

    with pulse_server.record() as rec:
        subprocess.run([...], env=pulse_server.env, check=True)
    rec.audio            # (2, n) float32 at 48 kHz, everything the sink played

Without ``pulseaudio`` (or ``pactl``/``parec``) the tests that use the
fixture are skipped, except under ``CI=true``, where they fail: CI must
install ``pulseaudio pulseaudio-utils libasound2-plugins libportaudio2``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

__all__ = ["pulse_server", "private_server"]

CONFIG_DIR = Path(__file__).resolve().parent / "audio"
RATE = 48000          # Hz: the null sink's rate; play at this rate or the server resamples
CHANNELS = 2
SINK = "testsink"
PACKAGES = "pulseaudio pulseaudio-utils libasound2-plugins libportaudio2"


class Recording:
    """What :meth:`PulseServer.record` captured: ``audio`` ((channels, n)
    float32, full scale 1.0, at ``rate`` Hz) once the ``with`` block ends."""

    def __init__(self, path: Path, rate: int, channels: int):
        self.path, self.rate, self.channels = path, rate, channels
        self.audio: np.ndarray | None = None


class PulseServer:
    """A running private PulseAudio daemon.

    Attributes
    ----------
    env : dict
        Environment for subprocesses that play (``PULSE_SERVER``,
        ``PULSE_CLIENTCONFIG``, ``ALSA_CONFIG_PATH``...) on top of ``os.environ``.
    dir : Path
        Its temporary directory (socket, config copies, log, recordings).
    rate, channels, sink :
        The null sink's sample rate (Hz), channels and name.
    """

    def __init__(self, root: Path):
        self.dir = root
        self.rate, self.channels, self.sink = RATE, CHANNELS, SINK
        self.log = root / "pulseaudio.log"
        self.proc: subprocess.Popen | None = None
        self._recorders: list[subprocess.Popen] = []
        self._n = 0
        for sub in ("home", "runtime", "config", "cache"):
            (root / sub).mkdir(mode=0o700)
        (root / "default.pa").write_text(
            (CONFIG_DIR / "default.pa").read_text().replace("@DIR@", str(root)))
        shutil.copy(CONFIG_DIR / "client.conf", root / "client.conf")
        shutil.copy(CONFIG_DIR / "asound.conf", root / "asound.conf")
        client = {
            "PULSE_SERVER": f"unix:{root / 'native'}",
            "PULSE_CLIENTCONFIG": str(root / "client.conf"),
            "PULSE_COOKIE": str(root / "cookie"),
            "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{root / 'asound.conf'}",
            "XDG_RUNTIME_DIR": str(root / "runtime"),
            "XDG_CONFIG_HOME": str(root / "config"),
        }
        self.env = {**os.environ, **client}
        self._daemon_env = {**self.env, "HOME": str(root / "home"),
                            "XDG_CACHE_HOME": str(root / "cache")}

    # ----------------------------------------------------------------- life
    def start(self, timeout: float = 15.0, settle: float = 0.3):
        """Start the daemon and wait until ``pactl info`` answers and the
        null sink exists; then ``settle`` seconds (a glitch was once seen
        right after start)."""
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["pulseaudio", "-n", "-F", str(self.dir / "default.pa"), "--daemonize=no",
                 "--exit-idle-time=-1", "--use-pid-file=no", "--realtime=no",
                 "--high-priority=no", "--disable-shm=yes", "--log-level=notice"],
                env=self._daemon_env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pulseaudio exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            r = subprocess.run(["pactl", "list", "short", "sinks"], env=self.env,
                               capture_output=True, text=True)
            if r.returncode == 0 and self.sink in r.stdout:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"pulseaudio did not answer within {timeout} s "
                                   f"(pactl: {r.stderr.strip()}):\n{self.log_tail()}")
            time.sleep(0.05)
        time.sleep(settle)

    def stop(self):
        """Stop the recorders and the daemon, by PID."""
        for p in self._recorders:
            _stop(p)
        self._recorders.clear()
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    # ------------------------------------------------------------ recording
    @contextlib.contextmanager
    def record(self, tail: float = 0.2, timeout: float = 10.0):
        """Record the null sink's monitor during the ``with`` block.

        ``parec`` runs at 10 ms latency (which also keeps the sink's latency
        low) into a raw float32 file; the block starts once data flows, and
        ``tail`` seconds are recorded after it.  Yields a :class:`Recording`
        whose ``audio`` ((channels, n) float32) is set when the block ends.
        """
        self._n += 1
        rec = Recording(self.dir / f"monitor-{self._n}.raw", self.rate, self.channels)
        with open(rec.path, "wb") as out:
            p = subprocess.Popen(
                ["parec", f"--device={self.sink}.monitor", "--format=float32le",
                 f"--rate={self.rate}", f"--channels={self.channels}", "--raw",
                 "--latency-msec=10"],
                env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE)
        self._recorders.append(p)
        try:
            deadline = time.monotonic() + timeout
            while rec.path.stat().st_size == 0:      # the monitor streams zeros when idle
                if p.poll() is not None:
                    raise RuntimeError(f"parec exited with {p.returncode}: "
                                       f"{p.stderr.read().decode(errors='replace')}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"parec recorded nothing within {timeout} s")
                time.sleep(0.01)
            yield rec
            time.sleep(tail)
        finally:
            _stop(p)
            self._recorders.remove(p)
        raw = np.fromfile(rec.path, dtype="<f4")
        raw = raw[:len(raw) // self.channels * self.channels]
        rec.audio = np.ascontiguousarray(raw.reshape(-1, self.channels).T)


def _stop(p: subprocess.Popen, timeout: float = 5.0):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for f in (p.stdout, p.stderr):
        if f is not None:
            f.close()


def _missing_tools() -> list[str]:
    return [t for t in ("pulseaudio", "pactl", "parec") if shutil.which(t) is None]


@pytest.fixture(scope="session")
def pulse_server():
    """A private PulseAudio daemon with a null sink (see the module docstring)."""
    missing = _missing_tools()
    if missing:
        reason = (f"{', '.join(missing)} not found: the real-playback tests need "
                  f"`apt-get install {PACKAGES}`")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    with private_server() as server:
        yield server


@contextlib.contextmanager
def private_server():
    """A PulseAudio daemon of its own (a PulseServer started), stopped and removed after."""
    root = Path(tempfile.mkdtemp(prefix="specstream-pulse-"))   # short: unix socket path
    server = PulseServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
