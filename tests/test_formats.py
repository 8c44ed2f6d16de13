"""The files people have: read by content, not by name.

Real files written by the tools themselves: numpy (a file called
``spectrogram`` with no extension), scipy.io.savemat (MAT v4, v5, v7), h5py
writing a MAT v7.3 file the way MATLAB does (column-major, so the dims
reversed; complex as a (real, imag) compound; ``MATLAB_class``; the 512-byte
header), text in every variant, and GNU Octave (committed fixtures made by
tests/fixtures/make_octave.m: save -v7, -hdf5, its default text format,
-ascii, dlmwrite; specgram and stft).  Reconstructing each with explicit
flags gives >= 60 dB SNR over the samples the frames cover.  Formats that
are recognised but not read are one line that names them.
"""

import bz2
import gzip
import io
import lzma
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import soundfile as sf

from stream.cli import main
from stream.files import (FrameSource, file_format, load_array, pick_keys, stored_parameters,
                          variables)
from stream.formats.base import INFLATE_ENV
from stream.formats.hdf5 import H5Array

FIXTURES = Path(__file__).parent / "fixtures" / "octave"
FS, N, HOP = 8000, 128, 32               # the fixtures' rate, frame and hop


def signal(fs=FS, n=1024) -> np.ndarray:
    """The fixtures' signal (make_octave.m's signal()): three tones, a 20 ms fade-in."""
    t = np.arange(n) / fs
    x = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 1234.5 * t + 0.3)
         + 0.15 * np.sin(2 * np.pi * 2100 * t + 1.1))
    return x * np.minimum(1, t / 0.02)


def matlab_spectrogram(x, window, n=N, hop=HOP, fs=FS):
    """MATLAB's ``[S, F, T] = spectrogram(x, window, n - hop, n, fs)``: frames
    from sample 0, one-sided (n/2 + 1 rows), F in Hz, T the frame centres in s."""
    starts = np.arange(0, len(x) - n + 1, hop)
    S = np.stack([np.fft.rfft(x[s:s + n] * window) for s in starts], axis=1)
    return S, np.arange(n // 2 + 1) * fs / n, (starts + n / 2) / fs


def covered(n_frames, window, hop=HOP):
    """The samples that frames starting at 0 cover with a non-zero window."""
    w2 = np.zeros((n_frames - 1) * hop + len(window))
    for k in range(n_frames):
        w2[k * hop:k * hop + len(window)] += np.asarray(window) ** 2
    return w2 > 1e-12


def snr_db(y, x, mask) -> float:
    m = min(len(y), len(x), len(mask))
    mask = mask[:m]
    e = y[:m][mask] - x[:m][mask]
    return 10 * np.log10(np.sum(x[:m][mask] ** 2) / max(np.sum(e ** 2), 1e-300))


def cli(capsys, *args):
    """``specstream ARGS`` in this process: (exit status, stderr lines)."""
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err.splitlines()


def reconstruct(capsys, tmp_path, files, *flags):
    """Reconstruct ``files`` with ``flags``; (samples, stderr lines)."""
    out = tmp_path / "out.wav"
    rc, err = cli(capsys, "reconstruct", *files, "-o", out, *flags)
    assert rc == 0, err
    return sf.read(out)[0], err


def one_line(rc, err, *words):
    """A refusal: exit 2, one line, no traceback, holding ``words``."""
    assert rc == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    for w in words:
        assert w in err[0], (w, err[0])
    return err[0]


HANN = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N) / N)       # periodic: --window hann
EXPLICIT = ["--n-fft", N, "--hop-length", HOP, "--window", "hann", "--no-center", "-r", FS]


@pytest.fixture(scope="module")
def x():
    return signal()


@pytest.fixture(scope="module")
def S(x):
    return matlab_spectrogram(x, HANN)[0]


# ------------------------------------------------------------ by content
def _npy_bytes(a) -> bytes:
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def test_files_without_extension_holding_npy_just_work(tmp_path, capsys, x, S):
    (tmp_path / "spectrogram").write_bytes(_npy_bytes(np.abs(S).astype(np.float32)))
    (tmp_path / "phases").write_bytes(_npy_bytes(np.angle(S).astype(np.float32)))
    assert file_format(tmp_path / "spectrogram") == "npy"
    assert isinstance(load_array(tmp_path / "spectrogram"), np.memmap)
    y, _ = reconstruct(capsys, tmp_path, [tmp_path / "spectrogram", tmp_path / "phases"],
                       *EXPLICIT)
    assert snr_db(y, x, covered(S.shape[1], HANN)) >= 60


def test_the_real_program_reads_a_file_without_extension(tmp_path, x, S):
    from programs import run_program
    (tmp_path / "spectrogram").write_bytes(_npy_bytes(S.astype(np.complex64)))
    p = run_program(["reconstruct", tmp_path / "spectrogram", "-o", tmp_path / "o.wav", "-q",
                     *EXPLICIT])
    assert p.returncode == 0, p.stderr
    assert snr_db(sf.read(tmp_path / "o.wav")[0], x, covered(S.shape[1], HANN)) >= 60


@pytest.mark.parametrize("name", ["frames.bin", "frames.txt", "frames.npz", "frames"])
def test_content_wins_over_the_name(tmp_path, S, name):
    p = tmp_path / name
    p.write_bytes(_npy_bytes(np.abs(S)))
    assert file_format(p) == "npy"
    np.testing.assert_array_equal(load_array(p), np.abs(S))
    q = tmp_path / ("m_" + name)
    scipy.io.savemat(q, {"S": S})
    assert file_format(q) == "mat"
    np.testing.assert_array_equal(load_array(q), S)


def test_raw_and_text_without_extension_stay_raw_and_text(tmp_path, S):
    raw = tmp_path / "frames"
    np.abs(S).T.astype("<f4").tofile(raw)
    assert file_format(raw) == "raw"
    assert load_array(raw, bins=S.shape[0]).shape == S.shape[::-1]
    text = tmp_path / "values"
    np.savetxt(text, np.abs(S))
    assert file_format(text) == "text"
    np.testing.assert_allclose(load_array(text), np.abs(S), rtol=1e-15)


def test_mat_v4_is_told_by_its_headers_whatever_its_name(tmp_path, capsys, S):
    p = tmp_path / "frames"
    with open(p, "wb") as f:                  # a file object: savemat adds no .mat
        scipy.io.savemat(f, {"S": S, "fs": 8000.0}, format="4")
    assert file_format(p) == "mat"
    np.testing.assert_array_equal(load_array(p), S)
    q = tmp_path / "noise.mat"                # no MAT header of any version: refused as such
    q.write_bytes(np.random.default_rng(0).standard_normal(256).tobytes())
    one_line(*cli(capsys, "reconstruct", q, "-o", tmp_path / "o.wav"), "noise.mat",
             "not a MAT file", "save it again")


def test_a_latin1_header_is_still_text(tmp_path, S):
    p = tmp_path / "export"
    p.write_bytes("Fréquence (Hz)\n".encode("latin-1") + _rows(np.abs(S), ",").encode())
    assert file_format(p) == "text"
    np.testing.assert_allclose(load_array(p), np.abs(S), rtol=1e-12)


def _pickle(p):
    p.write_bytes(pickle.dumps(np.ones((3, 3)), protocol=4))


def _torch(p):
    import torch
    torch.save(torch.ones(3, 3), p)


def _png(p):
    import matplotlib.image
    matplotlib.image.imsave(p, np.ones((4, 4)))


def _audio(fmt):
    def write(p):
        sf.write(p, np.zeros(800), 8000, format=fmt)
    return write


def _tar(p):
    with tarfile.open(p, "w") as t:
        info = tarfile.TarInfo("m.npy")
        data = _npy_bytes(np.ones((3, 3)))
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))


def _xlsx(p):
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")


#: file name -> (writer, words the one error line must hold)
UNSUPPORTED = {
    "model.pkl": (_pickle, ["pickle", "never loaded", "np.save"]),
    "model.pt": (_torch, ["PyTorch .pt (a zip with data.pkl)", "not supported", "np.save"]),
    "spec.png": (_png, ["PNG image", "not supported", "np.save"]),
    "spec.jpg": (lambda p: p.write_bytes(b"\xff\xd8\xff\xe0\0\x10JFIF\0" + bytes(100)),
                 ["JPEG image", "np.save"]),
    "speech.wav": (_audio("WAV"), ["WAV audio", "this is audio", "send --analyze"]),
    "speech.flac": (_audio("FLAC"), ["FLAC audio", "this is audio", "send --analyze"]),
    "speech.ogg": (_audio("OGG"), ["Ogg audio", "this is audio"]),
    "spec.npy.gz": (lambda p: p.write_bytes(gzip.compress(_npy_bytes(np.ones((3, 3))))),
                    ["gzip-compressed", "decompress it first"]),
    "spec.npy.bz2": (lambda p: p.write_bytes(bz2.compress(_npy_bytes(np.ones((3, 3))))),
                     ["bzip2-compressed", "decompress"]),
    "spec.npy.xz": (lambda p: p.write_bytes(lzma.compress(_npy_bytes(np.ones((3, 3))))),
                    ["xz-compressed", "decompress"]),
    "spec.tar": (_tar, ["tar archive", "unpack it"]),
    "spec.xlsx": (_xlsx, ["Office document", "CSV"]),
    "spec.json": (lambda p: p.write_text("[[1, 2], [3, 4]]"), ["JSON", "np.save"]),
    "octave.bin": (lambda p: p.write_bytes(b"Octave-1-L\0\0\0\0\0" + bytes(64)),
                   ["Octave's binary format", "save -v7"]),
}


@pytest.mark.parametrize("name", UNSUPPORTED)
@pytest.mark.parametrize("command", ["reconstruct", "probe"])
def test_unsupported_formats_are_named_in_one_line(tmp_path, capsys, name, command):
    write, words = UNSUPPORTED[name]
    p = tmp_path / name
    write(p)
    extra = ["-o", tmp_path / "o.wav"] if command == "reconstruct" else ["-q"]
    line = one_line(*cli(capsys, command, p, *extra), *words)
    assert name in line and not (tmp_path / "o.wav").exists()


def test_an_unsupported_format_is_named_whatever_its_name(tmp_path, capsys):
    p = tmp_path / "spectrogram.npy"          # a WAV file saved under a spectrogram's name
    _audio("WAV")(p)
    one_line(*cli(capsys, "reconstruct", p, "-o", tmp_path / "o.wav"), "WAV audio")


# ------------------------------------------------------- MAT v4 and v5
@pytest.mark.parametrize("fmt,compress", [("5", False), ("5", True), ("4", False)],
                         ids=["v6", "v7", "v4"])
def test_mat_spectrogram_variables(tmp_path, capsys, x, fmt, compress):
    """MATLAB's [S, F, T, P] = spectrogram(x, hann, 96, 128, fs), saved with fs."""
    S, F, T = matlab_spectrogram(x, HANN)
    P = np.abs(S) ** 2 / (FS * np.sum(HANN ** 2))     # MATLAB's power spectral density
    p = tmp_path / "spec.mat"
    scipy.io.savemat(p, {"S": S, "F": F[:, None], "T": T[None, :], "P": P, "fs": float(FS)},
                     format=fmt, do_compression=compress)
    assert file_format(p) == "mat"
    found = {v.name: v for v in variables(p)}
    assert found["S"].shape == S.shape and found["S"].dtype.kind == "c"
    assert found["F"].shape == F.shape and found["fs"].shape == ()
    assert pick_keys(list(found.values())) == ("S", None)    # S complex: P is no phase
    y, _ = reconstruct(capsys, tmp_path, [p], *EXPLICIT)
    assert snr_db(y, x, covered(S.shape[1], HANN)) >= 60
    # what the file says fills the flags left unset: fs, n_fft from F, hop from T
    y, err = reconstruct(capsys, tmp_path, [p], "--window", "hann", "--no-center")
    assert snr_db(y, x, covered(S.shape[1], HANN)) >= 60
    assert any("sample_rate=8000 (fs)" in e and "hop_length=32" in e and "n_fft=128" in e
               for e in err), err
    assert sf.info(tmp_path / "out.wav").samplerate == FS


def test_mat_magnitude_and_phase_by_name_and_by_key(tmp_path, capsys, x, S):
    p = tmp_path / "mp.mat"
    scipy.io.savemat(p, {"fs": 8000.0, "magnitude": np.abs(S), "phase": np.angle(S),
                         "label": "speech"})
    y, _ = reconstruct(capsys, tmp_path, [p], *EXPLICIT)
    assert snr_db(y, x, covered(S.shape[1], HANN)) >= 60
    q = tmp_path / "ab.mat"
    scipy.io.savemat(q, {"A": np.abs(S), "B": np.angle(S)})
    y, _ = reconstruct(capsys, tmp_path, [q, "--mag-key", "A", "--phase-key", "B"], *EXPLICIT)
    assert snr_db(y, x, covered(S.shape[1], HANN)) >= 60
    line = one_line(*cli(capsys, "reconstruct", q, "--mag-key", "C", "-o", tmp_path / "o.wav"),
                    "no variable named 'C'")
    assert "A 65x29" in line and "B 65x29" in line


def test_probe_reads_mat_variables_and_stored_parameters(tmp_path, x):
    S, F, T = matlab_spectrogram(x, HANN)
    p = tmp_path / "s.mat"
    scipy.io.savemat(p, {"S": S, "F": F, "T": T, "fs": 8000.0})
    from stream.probe import probe
    res = probe(p)
    assert res.value("input") == "complex" and res.value("mag_key") == "S"
    assert res.value("sample_rate") == 8000
    assert res.value("stored") == {"sample_rate": 8000.0, "n_fft": 128, "hop_length": 32}
    assert "n_fft=128 (F's spacing)" in res.findings["stored"].evidence
    assert res.value("variables") == ["S", "F", "T", "fs"]


def test_mat_read_whole_is_capped(tmp_path, capsys, monkeypatch, S):
    p = tmp_path / "big.mat"
    scipy.io.savemat(p, {"S": np.tile(S, (1, 40))}, do_compression=True)
    monkeypatch.setenv(INFLATE_ENV, "0.5")
    one_line(*cli(capsys, "reconstruct", p, "-o", tmp_path / "o.wav"), "MAT file read whole",
             "over the cap of 0.5 MiB", "save -v7.3", INFLATE_ENV)


def test_mat_of_no_numbers_says_what_it_holds(tmp_path, capsys):
    p = tmp_path / "cells.mat"
    scipy.io.savemat(p, {"c": np.array([np.ones((3, 3)), "a"], dtype=object)})
    one_line(*cli(capsys, "reconstruct", p, "-o", tmp_path / "o.wav"), "cell array",
             "not numbers")
    one_line(*cli(capsys, "probe", p, "-q"), "cell array")


# ----------------------------------------------------------- MAT v7.3
def write_v73(path, **variables):
    """A MAT v7.3 file as MATLAB writes one: HDF5 after a 512-byte header;
    each matrix column-major (h5py sees MATLAB's dims reversed), at least
    2-D, complex as a (real, imag) compound, a MATLAB_class attribute,
    chunked and deflated; text as uint16 characters."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, v in variables.items():
            if isinstance(v, str):
                ds = f.create_dataset(name, data=np.array([[ord(c) for c in v]], np.uint16).T)
                ds.attrs["MATLAB_class"] = np.bytes_("char")
                ds.attrs["MATLAB_int_decode"] = np.int32(2)
                continue
            a = np.atleast_2d(np.asarray(v))
            data = a.T                                   # column-major: dims reversed
            if np.iscomplexobj(a):
                compound = np.dtype([("real", "<f8"), ("imag", "<f8")])
                data = np.rec.fromarrays([data.real, data.imag], dtype=compound)
            cls = "logical" if a.dtype == bool else "double"
            ds = f.create_dataset(name, data=np.asarray(data).astype(
                np.uint8 if cls == "logical" else data.dtype), chunks=True if a.size > 16
                else None, compression="gzip" if a.size > 16 else None)
            ds.attrs["MATLAB_class"] = np.bytes_(cls)
    header = (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
              b"HDF5 schema 1.00 .").ljust(116) + bytes(8) + b"\x00\x02IM"
    with open(path, "r+b") as f:
        f.write(header)


def test_mat_v73_written_as_matlab_does(tmp_path, capsys, x):
    S, F, T = matlab_spectrogram(x, HANN)
    p = tmp_path / "spec73.mat"
    write_v73(p, S=S, F=F[:, None], T=T[None, :], fs=float(FS), note="made by MATLAB",
              mask=np.ones((2, 2), bool))
    with h5py.File(p) as f:
        assert f["S"].shape == S.shape[::-1] and f["S"].dtype.names == ("real", "imag")
    assert file_format(p) == "hdf5"
    found = {v.name: v for v in variables(p)}
    assert found["S"].shape == S.shape and found["S"].dtype == np.complex128
    assert found["F"].shape == F.shape and found["fs"].shape == ()
    assert not found["note"].numeric and not found["mask"].numeric
    a = load_array(p)
    assert isinstance(a, H5Array) and a.shape == S.shape
    np.testing.assert_array_equal(a[:, 3:9], S[:, 3:9])
    np.testing.assert_array_equal(a[5], S[5])
    np.testing.assert_array_equal(np.asarray(a), S)
    y, _ = reconstruct(capsys, tmp_path, [p], *EXPLICIT)
    assert snr_db(y, x, covered(S.shape[1], HANN)) >= 60
    y, err = reconstruct(capsys, tmp_path, [p], "--window", "hann", "--no-center")
    assert snr_db(y, x, covered(S.shape[1], HANN)) >= 60
    assert any("sample_rate=8000" in e and "n_fft=128" in e for e in err), err


def test_hdf5_frames_are_read_block_by_block(tmp_path, monkeypatch, S):
    """FrameSource reads an HDF5 dataset where it is indexed, never whole."""
    big = np.tile(S, (1, 30))
    p = tmp_path / "big.mat"
    write_v73(p, S=big)
    a = load_array(p)
    monkeypatch.setattr(H5Array, "__array__", lambda *a, **k: pytest.fail("read whole"))
    src = FrameSource(a, None, "bins-frames")
    assert src.is_complex and (src.n_bins, src.n_frames) == big.shape
    blocks = [b for b, _ in src.blocks(64)]
    assert [len(b) for b in blocks[:2]] == [64, 64]
    np.testing.assert_array_equal(np.concatenate(blocks), big.T)


def test_mat_v73_stereo_channels_last_become_channels_first(tmp_path, S):
    st = np.stack([S, 0.5 * S], axis=-1)                 # MATLAB stft: bins x frames x ch
    p = tmp_path / "st.mat"
    write_v73(p, s=st)
    a = load_array(p)
    assert a.shape == (2,) + S.shape
    src = FrameSource(a, None, "bins-frames")
    assert (src.channels, src.n_bins, src.n_frames) == (2,) + S.shape
    blk, _ = next(src.blocks(8))
    np.testing.assert_array_equal(blk[1], 0.5 * S[:, :8].T)


def test_plain_hdf5_is_read_in_c_order(tmp_path, capsys, x, S):
    p = tmp_path / "spec.h5"
    with h5py.File(p, "w") as f:
        f["frames/magnitude"] = np.abs(S).T               # frames x bins, as Python wrote it
        f["frames/phase"] = np.angle(S).T
        f["sr"] = FS
        f.attrs["comment"] = "plain h5py"
    assert file_format(p) == "hdf5"
    assert {v.name: v.shape for v in variables(p)} == {
        "frames/magnitude": S.shape[::-1], "frames/phase": S.shape[::-1], "sr": ()}
    y, _ = reconstruct(capsys, tmp_path, [p], *EXPLICIT)
    assert snr_db(y, x, covered(S.shape[1], HANN)) >= 60
    c = tmp_path / "c.h5"
    with h5py.File(c, "w") as f:
        f["X"] = S.astype(np.complex64)                   # h5py's own compound (r, i)
    assert load_array(c).dtype == np.complex64
    y, _ = reconstruct(capsys, tmp_path, [c], *EXPLICIT)
    assert snr_db(y, x, covered(S.shape[1], HANN)) >= 60


# ---------------------------------------------------------------- text
def _pandas_csv(a) -> str:
    """What pandas.DataFrame(a).to_csv() writes: a header with an empty first
    name, then an index column 0, 1, 2..."""
    lines = ["," + ",".join(str(i) for i in range(a.shape[1]))]
    lines += [f"{i}," + ",".join(repr(float(v)) for v in row) for i, row in enumerate(a)]
    return "\n".join(lines) + "\n"


def _rows(a, sep, fmt="{:.17g}", point="."):
    return "\n".join(sep.join(fmt.format(v).replace(".", point) for v in row) for row in a) + "\n"


#: variant -> what writes the magnitude (a bins x frames array) to a path
TEXT = {
    "savetxt header": lambda p, a: np.savetxt(p, a, delimiter=",", header="magnitude"),
    "pandas index": lambda p, a: p.write_text(_pandas_csv(a)),
    "semicolons": lambda p, a: p.write_text(_rows(a, ";")),
    "semicolons, decimal commas": lambda p, a: p.write_text(_rows(a, ";", point=",")),
    "tabs": lambda p, a: np.savetxt(p, a, delimiter="\t"),
    "spaces": lambda p, a: p.write_text(_rows(a, "   ")),
    "octave comments": lambda p, a: p.write_text(
        "% made by Octave\n% rows: bins\n" + _rows(a, " ", " {:.16e}")),
    "header lines": lambda p, a: p.write_text("Spectrogram export\nunit: linear\n"
                                              + ",".join(f"f{i}" for i in range(a.shape[1]))
                                              + "\n" + _rows(a, ",")),
    "trailing delimiter": lambda p, a: p.write_text(_rows(a, ",").replace("\n", ",\n")),
    "quoted": lambda p, a: p.write_text(_rows(a, ",", '"{:.17g}"')),
    "comments inside": lambda p, a: p.write_text(
        _rows(a[:10], ",") + "# the next frames\n" + _rows(a[10:], ",")),
    "windows line ends": lambda p, a: p.write_bytes(_rows(a, ",").replace("\n", "\r\n")
                                                    .encode()),
    "utf-8 bom": lambda p, a: p.write_bytes(b"\xef\xbb\xbf" + _rows(a, ",").encode()),
}


@pytest.mark.parametrize("variant", TEXT)
def test_text_variants(tmp_path, capsys, x, S, variant):
    p = tmp_path / "magnitude.csv"
    TEXT[variant](p, np.abs(S))
    np.testing.assert_allclose(load_array(p), np.abs(S), rtol=1e-12)
    np.save(tmp_path / "phase.npy", np.angle(S))
    y, _ = reconstruct(capsys, tmp_path, [p, tmp_path / "phase.npy"], *EXPLICIT)
    assert snr_db(y, x, covered(S.shape[1], HANN)) >= 60


@pytest.mark.parametrize("style", ["numpy", "matlab"])
def test_text_complex_values(tmp_path, capsys, x, S, style):
    p = tmp_path / "complex.txt"
    if style == "numpy":
        np.savetxt(p, S)                                  # ' (re+imj)' per value
    else:                                                 # writematrix: 1.5+2.5i
        p.write_text("\n".join(",".join(f"{v.real:.17g}{v.imag:+.17g}i" for v in row)
                               for row in S) + "\n")
    np.testing.assert_allclose(load_array(p), S, rtol=1e-12, atol=1e-12)
    y, _ = reconstruct(capsys, tmp_path, [p], *EXPLICIT)
    assert snr_db(y, x, covered(S.shape[1], HANN)) >= 60


def test_text_is_read_whole_under_a_cap(tmp_path, capsys, monkeypatch, S):
    p = tmp_path / "big.csv"
    np.savetxt(p, np.tile(np.abs(S), (1, 20)), delimiter=",")
    monkeypatch.setenv(INFLATE_ENV, "0.25")
    one_line(*cli(capsys, "reconstruct", p, "-o", tmp_path / "o.wav"), "text file of",
             "over the cap of 0.2 MiB", "np.save", INFLATE_ENV)


def test_text_of_no_numbers_and_ragged_rows(tmp_path, capsys):
    p = tmp_path / "h.csv"
    p.write_text("# only a comment\nname,value\n")
    one_line(*cli(capsys, "reconstruct", p, "-o", tmp_path / "o.wav"), "no numbers")
    q = tmp_path / "r.csv"
    q.write_text("1,2,3\n4,5\n")
    one_line(*cli(capsys, "reconstruct", q, "-o", tmp_path / "o.wav"), "r.csv", "as text")


# ------------------------------------------------- missing dependencies
@pytest.mark.parametrize("module,maker,words", [
    ("scipy.io", lambda p, S: scipy.io.savemat(p, {"S": S}),
     ["reading MAT files needs scipy:", "pip install 'specstream[mat]'"]),
    ("h5py", lambda p, S: write_v73(p, S=S),
     ["MAT v7.3", "needs h5py", "pip install 'specstream[mat]'"]),
])
def test_a_missing_optional_dependency_says_what_to_install(tmp_path, capsys, monkeypatch, S,
                                                            module, maker, words):
    p = tmp_path / "s.mat"
    maker(p, S)
    monkeypatch.setitem(sys.modules, module, None)          # import raises ImportError
    one_line(*cli(capsys, "reconstruct", p, "-o", tmp_path / "o.wav"), *words)


def test_probe_plot_without_matplotlib(tmp_path, capsys, monkeypatch, S):
    np.save(tmp_path / "s.npy", S)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    one_line(*cli(capsys, "probe", tmp_path / "s.npy", "--plot", tmp_path / "p.png", "-q"),
             "probe --plot needs matplotlib", "pip install 'specstream[plot]'")
    assert not (tmp_path / "p.png").exists()


# ------------------------------------------------------ stored parameters
def test_stored_parameters_from_f_and_t():
    F, T = np.arange(65) * 62.5, (np.arange(29) * 32 + 64) / 8000
    got = stored_parameters({"F": F, "T": T, "Fs": np.array(8000.0)})
    assert {k: v for k, (v, _) in got.items()} == {
        "sample_rate": 8000.0, "n_bins": 65, "n_fft": 128, "nyquist": True, "n_frames": 29,
        "hop_length": 32}
    # Octave's specgram: no Nyquist row; MATLAB without fs: w in rad/sample
    got = stored_parameters({"f": np.arange(64) * 62.5, "fs": np.array(8000)})
    assert got["n_fft"][0] == 128 and got["nyquist"][0] is False
    got = stored_parameters({"w": np.arange(129) * np.pi / 128})
    assert got["n_fft"][0] == 256 and got["nyquist"][0] is True
    # a scalar stored wins over what T says; uneven or odd vectors say nothing
    got = stored_parameters({"hop_length": np.array(30), "T": T, "fs": np.array(8000.0)})
    assert got["hop_length"] == (30, "hop_length")
    assert stored_parameters({"F": np.array([0.0, 1.0, 3.0]), "T": np.array([1.0])}) == {}


# ------------------------------------------------------ Octave fixtures
def _fixture(name):
    p = FIXTURES / name
    if not p.exists():
        pytest.skip(f"{p} is missing: run tests/fixtures/make_octave.m")
    return p


def test_octave_signal_is_the_one_regenerated_here():
    x = np.asarray(load_array(_fixture("spectrogram_v7.mat"), key="x"))
    np.testing.assert_allclose(x, signal(), rtol=0, atol=1e-12)


OCTAVE = {       # fixture(s) -> the format they are read as
    ("spectrogram_v7.mat",): "mat",
    ("spectrogram_hdf5.mat",): "hdf5",
    ("spectrogram_text.mat",): "octave-text",
    ("magnitude_ascii.txt", "phase_ascii.txt"): "text",
    ("magnitude_dlm.csv", "phase_dlm.csv"): "text",
}


@pytest.mark.parametrize("names", OCTAVE, ids=lambda n: n[0])
def test_octave_spectrogram_fixtures(tmp_path, capsys, names):
    """Octave's files of MATLAB spectrogram()-style frames (hamming(128), a
    symmetric window: given as values) reconstruct at >= 60 dB."""
    files = [_fixture(n) for n in names]
    assert all(file_format(f) == OCTAVE[names] for f in files)
    np.save(tmp_path / "hamming.npy", np.hamming(N))
    flags = ["--n-fft", N, "--hop-length", HOP, "--window", tmp_path / "hamming.npy",
             "--no-center", "-r", FS]
    y, _ = reconstruct(capsys, tmp_path, files, *flags)
    assert snr_db(y, signal(), covered(29, np.hamming(N))) >= 60
    S, F, T = matlab_spectrogram(signal(), np.hamming(N))
    first = np.asarray(load_array(files[0]))
    np.testing.assert_allclose(first, S if len(files) == 1 else np.abs(S), rtol=1e-7,
                               atol=1e-7 * np.abs(S).max())
    if len(files) == 1:                      # F, T and fs are in the file: they fill the rest
        stored = stored_parameters({v.name: v.array() for v in variables(files[0])
                                    if v.numeric and v.ndim <= 1})
        assert {k: stored[k][0] for k in ("sample_rate", "n_fft", "hop_length")} == {
            "sample_rate": FS, "n_fft": N, "hop_length": HOP}
        y, err = reconstruct(capsys, tmp_path, files, "--window", tmp_path / "hamming.npy",
                             "--no-center")
        assert snr_db(y, signal(), covered(29, np.hamming(N))) >= 60


def test_octave_specgram_has_no_nyquist_row(tmp_path, capsys):
    """The signal package's specgram stores bins 0 .. n/2 - 1; its f says so.
    Until reconstruct estimates the missing row, a zero Nyquist row is added
    here: the signal has nothing there, so >= 60 dB still."""
    p = _fixture("specgram_v7.mat")
    found = {v.name: v for v in variables(p)}
    S = found["S"].array()
    assert S.shape == (N // 2, 28)
    stored = stored_parameters({k: v.array() for k, v in found.items() if v.ndim <= 1})
    assert stored["n_fft"][0] == N and stored["nyquist"][0] is False
    assert stored["hop_length"][0] == HOP and stored["sample_rate"][0] == FS
    starts = np.arange(28) * HOP
    ref = np.stack([np.fft.fft(signal()[s:s + N] * np.hanning(N))[:N // 2] for s in starts], 1)
    np.testing.assert_allclose(S, ref, atol=1e-12)
    np.save(tmp_path / "full.npy", np.vstack([S, np.zeros((1, S.shape[1]))]))
    np.save(tmp_path / "hanning.npy", np.hanning(N))
    y, _ = reconstruct(capsys, tmp_path, [tmp_path / "full.npy"], "--n-fft", N,
                       "--hop-length", HOP, "--window", tmp_path / "hanning.npy",
                       "--no-center", "-r", FS)
    assert snr_db(y, signal(), covered(28, np.hanning(N))) >= 60


def test_octave_stft_is_two_sided(tmp_path, capsys):
    """Core Octave's [y, c] = stft(x, 128, 32, 64, "hamming"): all 128 bins
    (two-sided), c = [win_size, inc, win_type]; its one-sided half
    reconstructs at >= 60 dB."""
    p = _fixture("stft_v7.mat")
    y2 = load_array(p)
    assert y2.shape == (N, 29) and np.iscomplexobj(y2)
    np.testing.assert_array_equal(load_array(p, key="c"), [N, HOP, 2])
    np.testing.assert_allclose(y2[1:N // 2], np.conj(y2[:N // 2:-1]), atol=1e-12)
    np.save(tmp_path / "half.npy", y2[:N // 2 + 1])
    np.save(tmp_path / "hamming.npy", np.hamming(N))
    y, _ = reconstruct(capsys, tmp_path, [tmp_path / "half.npy"], "--n-fft", N,
                       "--hop-length", HOP, "--window", tmp_path / "hamming.npy",
                       "--no-center", "-r", FS)
    assert snr_db(y, signal(), covered(29, np.hamming(N))) >= 60


def test_window_values_with_the_hop_in_the_file_need_no_probe(tmp_path, capsys):
    """A MAT file's T gives the hop: with --window FILE the frames are stated
    and reconstruct; the probe, which tries windows by name, says what to add."""
    files = [_fixture("spectrogram_v7.mat")]
    np.save(tmp_path / "hamming.npy", np.hamming(N))
    y, _ = reconstruct(capsys, tmp_path, files, "--window", tmp_path / "hamming.npy",
                       "--no-center")
    assert snr_db(y, signal(), covered(29, np.hamming(N))) >= 60
    rc, err = cli(capsys, "probe", *files, "--window", tmp_path / "hamming.npy")
    one_line(rc, err, "--hop-length")
