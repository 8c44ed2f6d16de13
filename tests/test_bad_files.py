"""Malformed input files through the real command line: reconstruct, probe and send.

Every case must end in one line on stderr that says what is wrong and what to
do, exit status 2, no traceback, and no hang (FIFOs, devices, zip bombs).
"""

import io
import os
import socket
import struct
import time
import zipfile

import numpy as np
import pytest
import scipy.signal

from programs import run_program
from stream.errors import ParameterError
from stream.files import INFLATE_ENV, FileError, array_dtype, inflate_cap, load_array

BINS, FRAMES = 33, 40                 # n_fft 64
INFLATE_CAP_MB = 2                    # the cap the zip-bomb cases run with
BOMB = (BINS, 1 << 16)                # zeros: 8.25 MiB of float32 in 9 KB of zip
BOMB_MIB = f"{np.prod(BOMB) * 4 / (1 << 20):.1f} MiB"


def _good(shape=(BINS, FRAMES), dtype=np.float32):
    return np.abs(np.random.default_rng(3).standard_normal(shape)).astype(dtype)


def _npy_bytes(a) -> bytes:
    b = io.BytesIO()
    np.save(b, a, allow_pickle=True)
    return b.getvalue()


def _npy_header(shape, dtype="<f4") -> bytes:
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        b, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    return b.getvalue()


def _zeros_member(path, shape, declare=None):
    """An .npz whose one (deflated) member 'm' holds zeros of ``shape``,
    written in chunks (it is never whole in memory); ``declare`` overwrites the
    uncompressed size the zip's central directory gives it (a lying zip)."""
    nbytes = int(np.prod(shape)) * 4
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("m.npy", "w") as f:
            f.write(_npy_header(shape))
            chunk = bytes(1 << 20)
            for i in range(0, nbytes, len(chunk)):
                f.write(chunk[:nbytes - i])
    if declare is not None:
        data = bytearray(path.read_bytes())
        at = data.rindex(b"PK\x01\x02")              # the member's central directory entry
        struct.pack_into("<I", data, at + 24, declare)
        path.write_bytes(bytes(data))
    return path


def _write(name, content):
    """A builder: ``content`` is an array (np.save), bytes, or a function of the path."""
    def build(tmp):
        p = tmp / name
        if callable(content):
            content(p)
        elif isinstance(content, bytes):
            p.write_bytes(content)
        else:
            np.save(p, content, allow_pickle=True)
        return p
    return build


def _zip(p, members: dict):
    with zipfile.ZipFile(p, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _unix_socket(p):
    s = socket.socket(socket.AF_UNIX)
    s.bind(p.name)            # relative to the test's cwd: a tmp path may pass the 108-byte limit
    _unix_socket.keep.append(s)


_unix_socket.keep = []

#: case -> (file builder, extra args, words the one error line must hold)
CASES = {
    "empty 1-d": (_write("e.npy", np.zeros(0, np.float32)), [], ["1-D", "reshape"]),
    "0 frames": (_write("f.npy", np.zeros((BINS, 0), np.float32)), [], ["empty", "(33, 0)"]),
    "0 bins": (_write("b.npy", np.zeros((0, FRAMES), np.float32)), [], ["empty", "(0, 40)"]),
    "0 channels": (_write("c.npy", np.zeros((0, BINS, FRAMES), np.float32)), [], ["empty"]),
    "0-d": (_write("s.npy", np.array(3.0)), [], ["0-d", "not a spectrogram"]),
    "1-d": (_write("v.npy", np.arange(100.0)), [], ["1-D", "reshape"]),
    "unicode": (_write("u.npy", np.array([["a", "b"], ["c", "d"]])), [], ["text", "astype"]),
    "bytes": (_write("y.npy", np.array([[b"a", b"b"], [b"c", b"d"]])), [],
              ["byte strings", "astype"]),
    "structured": (_write("r.npy", np.zeros((BINS, FRAMES), [("a", "f4"), ("b", "i4")])), [],
                   ["records", "astype"]),
    "object": (_write("o.npy", np.array([[{"a": 1}, 2]], dtype=object)), [],
               ["never unpickled"]),
    "bool": (_write("t.npy", np.ones((BINS, FRAMES), bool)), [], ["booleans", "astype"]),
    "datetime": (_write("d.npy", np.zeros((BINS, FRAMES), "M8[s]")), [], ["dates", "astype"]),
    "timedelta": (_write("td.npy", np.zeros((BINS, FRAMES), "m8[s]")), [],
                  ["time spans", "astype"]),
    "void": (_write("w.npy", np.zeros((BINS, FRAMES), "V4")), [], ["raw bytes", "astype"]),
    "truncated data": (_write("tr.npy", _npy_bytes(_good())[:-100]), [],
                       ["truncated", "save it again"]),
    "truncated header": (_write("th.npy", _npy_bytes(_good())[:40]), [],
                         ["truncated", "np.save"]),
    "magic only": (_write("mo.npy", b"\x93NUMPY"), [], ["truncated"]),
    "wrong magic": (_write("wm.npy", b"RIFF" + _npy_bytes(_good())[4:]), [],
                    ["not an .npy array", "RIFF", ".bin"]),
    "unknown npy version": (_write("ver.npy", b"\x93NUMPY\x09\x00" + _npy_bytes(_good())[8:]),
                            [], ["version 9.0", "np.save"]),
    "npz of no npy": (_write("n.npz", lambda p: _zip(p, {"readme.txt": "hello"})), [],
                      ["no .npy members", "readme.txt", "np.savez"]),
    "npz key not npy": (_write("k.npz", lambda p: _zip(p, {"m.npy": _npy_bytes(_good()),
                                                           "notes.txt": "x"})),
                        ["--mag-key", "notes.txt"], ["not an .npy array", "m"]),
    "npz member not npy": (_write("bm.npz", lambda p: _zip(p, {"m.npy": b"hello there"})), [],
                           ["not an .npy array"]),
    "npz member strings": (_write("sm.npz", lambda p: _zip(p, {"m.npy": _npy_bytes(
        np.array([["a"]]))})), [], ["text"]),
    "npz truncated": (_write("tz.npz", lambda p: (np.savez(p, m=_good()),
                                                  p.write_bytes(p.read_bytes()[:300]))), [],
                      ["not a readable .npz", "np.savez"]),
    "zero-byte npy": (_write("z.npy", b""), [], ["empty (0 bytes)"]),
    "zero-byte npz": (_write("z.npz", b""), [], ["empty (0 bytes)"]),
    "zero-byte csv": (_write("z.csv", b""), [], ["empty (0 bytes)"]),
    "zero-byte raw": (_write("z.bin", b""), ["--bins", BINS], ["empty (0 bytes)"]),
    "header-only csv": (_write("h.csv", b"f0,f1,f2\n"), [], ["no numbers"]),
    "directory": (_write("dir.npy", lambda p: p.mkdir()), [], ["directory"]),
    "fifo": (_write("x.npy", os.mkfifo), [], ["FIFO", "regular file"]),
    "fifo npz": (_write("x.npz", os.mkfifo), [], ["FIFO", "regular file"]),
    "fifo raw": (_write("x.bin", os.mkfifo), ["--bins", BINS], ["FIFO", "regular file"]),
    "char device": (_write("zero.npy", lambda p: p.symlink_to("/dev/zero")), [],
                    ["character device"]),
    "char device raw": (lambda tmp: "/dev/zero", ["--bins", BINS], ["character device"]),
    "socket": (_write("s.npy", _unix_socket), [], ["socket"]),
    "zip bomb": (_write("bomb.npz", lambda p: _zeros_member(p, BOMB)), [],
                 [f"inflates to {BOMB_MIB}", f"cap of {INFLATE_CAP_MB:.1f} MiB", "np.savez",
                  INFLATE_ENV]),
    "zip lies small": (_write("lie.npz", lambda p: _zeros_member(p, (BINS, 1 << 12), 1000)), [],
                       ["forged"]),
    "zip lies": (_write("lie2.npz", lambda p: _zeros_member(p, (BINS, 1 << 12), 100_000)), [],
                 ["declares 100000 bytes", "forged"]),
}

COMMANDS = ("reconstruct", "probe", "send")
#: cases of a flag the probe takes as a hint, not an order (an unknown key is not an error there)
NOT_PROBE = ("npz key not npy",)


def _cli(command, files, extra, tmp_path, env=None):
    args = [command, *files, *extra]
    if command == "reconstruct":
        args += ["-o", tmp_path / "out.wav", "-r", 16000]
    elif command == "probe":
        args += ["-q"]
    else:
        # nothing listens: the error must come before any frame is sent
        args += ["--connect", "tcp://127.0.0.1:9", "--rate", "max", "--linger", 0, "-q",
                 "-r", 16000]
    env = {**os.environ, INFLATE_ENV: str(INFLATE_CAP_MB), **(env or {})}
    return run_program(args, env=env, timeout=60)


def _one_line_error(p, command, words):
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(f"specstream {command}: error:"), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture(autouse=True)
def _close_sockets():
    yield
    while _unix_socket.keep:
        _unix_socket.keep.pop().close()


@pytest.mark.parametrize("case, command", [
    (case, command) for case in CASES for command in COMMANDS
    if not (command == "probe" and case in NOT_PROBE)])
def test_bad_file_is_one_line(tmp_path, monkeypatch, case, command):
    build, extra, words = CASES[case]
    monkeypatch.chdir(tmp_path)
    path = build(tmp_path)
    t0 = time.monotonic()
    p = _cli(command, [path], [str(a) for a in extra], tmp_path)
    line = _one_line_error(p, command, words)
    assert str(path) in line or os.path.basename(str(path)) in line, line
    assert time.monotonic() - t0 < 30            # refused at once: nothing was waited for
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_phase_file_is_one_line(tmp_path, command):
    """The second file is checked as the first: here a FIFO as PHASE."""
    np.save(tmp_path / "mag.npy", _good())
    os.mkfifo(tmp_path / "phase.npy")
    p = _cli(command, [tmp_path / "mag.npy", tmp_path / "phase.npy"], [], tmp_path)
    assert "phase.npy" in _one_line_error(p, command, ["FIFO"])


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf"])
def test_bad_inflate_cap_is_one_line(tmp_path, value):
    _zeros_member(tmp_path / "m.npz", (BINS, FRAMES))
    p = _cli("reconstruct", [tmp_path / "m.npz"], [], tmp_path, env={INFLATE_ENV: value})
    _one_line_error(p, "reconstruct", [INFLATE_ENV, "positive number"])


def test_zip_bomb_reads_when_the_cap_is_raised(tmp_path, monkeypatch):
    """The cap is the only thing between the file and its array: raised, it loads."""
    p = _zeros_member(tmp_path / "bomb.npz", BOMB)
    assert p.stat().st_size < 64 << 10                   # small on disk...
    monkeypatch.setenv(INFLATE_ENV, str(INFLATE_CAP_MB))
    t0 = time.monotonic()
    with pytest.raises(FileError, match=f"inflates to {BOMB_MIB}"):
        load_array(p)
    assert time.monotonic() - t0 < 1.0                   # ...refused from its header alone
    monkeypatch.setenv(INFLATE_ENV, "16")
    a = load_array(p)
    assert a.shape == BOMB and a.dtype == np.float32 and not a.any()


def test_compressed_members_keep_their_order_and_values(tmp_path):
    x = np.asfortranarray(np.arange(BINS * FRAMES, dtype=">f8").reshape(BINS, FRAMES))
    np.savez_compressed(tmp_path / "f.npz", m=x, c=(x + 1j * x).astype(np.complex64))
    np.testing.assert_array_equal(load_array(tmp_path / "f.npz", key="m"), x)
    np.testing.assert_array_equal(load_array(tmp_path / "f.npz", key="c"), x + 1j * x)
    assert array_dtype(tmp_path / "f.npz", "m") == np.dtype(">f8")


def test_default_inflate_cap(monkeypatch):
    monkeypatch.delenv(INFLATE_ENV, raising=False)
    cap = inflate_cap()
    assert 0 < cap <= 2 << 30
    with open("/proc/meminfo") as f:
        avail = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("MemAvailable:"))
    assert cap <= avail // 4 + (64 << 20)       # a quarter of what is free (it moves a little)
    monkeypatch.setenv(INFLATE_ENV, "1.5")
    assert inflate_cap() == 3 << 19
    monkeypatch.setenv(INFLATE_ENV, "lots")
    with pytest.raises(ParameterError, match=INFLATE_ENV):
        inflate_cap()


@pytest.mark.parametrize("command", ["reconstruct", "probe"])
def test_npz_with_a_member_of_no_numbers_still_reads(tmp_path, command):
    """Arrays that are no spectrogram (labels, dates) beside the frames are left alone."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4096).astype(np.float32)
    _, _, Z = scipy.signal.stft(x, nperseg=64, noverlap=48, boundary=None, padded=False)
    np.savez(tmp_path / "both.npz", magnitude=np.abs(Z).astype(np.float32),
             phase=np.angle(Z).astype(np.float32), labels=np.array(["speech", "music"]),
             when=np.array("2024-01-01", "M8[D]"))
    p = _cli(command, [tmp_path / "both.npz"], ["--hop-length", 16], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
