"""`specstream reconstruct` end to end: real files, real subprocesses, real audio files back."""

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from programs import SPECSTREAM, console_script, run_program

RECORDING = Path("/usr/share/sounds/alsa/Front_Center.wav")
SR = 48000
N_FFT, HOP = 1024, 256


def run(args, cmd=None, cwd=None):
    return run_program(args, cmd=cmd, cwd=cwd, env=dict(os.environ, COLUMNS="200"))


def ok(args, **kw):
    p = run(["reconstruct"] + list(args), **kw)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    return p


@pytest.fixture(scope="module")
def signal():
    data, sr = sf.read(RECORDING, dtype="float64")
    assert sr == SR
    x = data[:24000] if data.ndim == 1 else data[:24000, 0]
    x = x + 0.01 * np.abs(x).max() * np.random.default_rng(5).standard_normal(len(x))
    return 0.5 * x / np.abs(x).max()          # peak -6 dBFS


@pytest.fixture(scope="module")
def D(signal):
    import librosa
    return librosa.stft(signal, n_fft=N_FFT, hop_length=HOP)          # bins x frames


@pytest.fixture(scope="module")
def files(tmp_path_factory, D):
    d = tmp_path_factory.mktemp("cli")
    mag, ph = np.abs(D), np.angle(D)
    np.save(d / "mag.npy", mag)
    np.save(d / "phase.npy", ph)
    np.save(d / "complex.npy", D)
    np.save(d / "mag_fb.npy", mag.T)
    np.save(d / "phase_fb.npy", ph.T)
    np.save(d / "phase_cut.npy", ph[:, :-5])             # fits no magnitude
    np.savez(d / "both.npz", magnitude=mag, phase=ph)
    np.savez(d / "keys.npz", S_db=mag, theta=ph)
    np.savez_compressed(d / "both_z.npz", mag=mag, phase=ph)
    mag.T.astype("<f4").tofile(d / "mag.f32.bin")
    ph.T.astype("<f4").tofile(d / "phase.f32.bin")
    mag.astype("<f8").tofile(d / "mag_bf.f64.raw")        # bins-frames element order
    ph.astype("<f8").tofile(d / "phase_bf.f64.raw")
    D.T.astype("<c8").tofile(d / "complex.c64.bin")
    np.savetxt(d / "mag.csv", mag, delimiter=",", fmt="%.10g")
    np.savetxt(d / "phase.csv", ph, delimiter=",", fmt="%.10g")
    np.savetxt(d / "mag_fb.txt", mag.T, fmt="%.10g")
    np.savetxt(d / "phase_fb.txt", ph.T, fmt="%.10g")
    return d


COMMON = ["--hop-length", HOP, "-r", SR]


def snr_db(ref, y):
    n = min(len(ref), len(y))
    return 10 * np.log10(np.sum(ref[:n] ** 2) / max(np.sum((ref[:n] - y[:n]) ** 2), 1e-300))


def read(path):
    y, sr = sf.read(path, dtype="float64", always_2d=False)
    assert sr == SR
    return y


# --------------------------------------------------------------- inputs
INPUTS = {
    "npy mag+phase": (["mag.npy", "phase.npy"], []),
    "complex npy": (["complex.npy"], []),
    "npz both": (["both.npz"], []),
    "npz keys": (["keys.npz"], ["--mag-key", "S_db", "--phase-key", "theta"]),
    "npz compressed": (["both_z.npz"], []),
    "npz + npy": (["both.npz", "phase.npy"], ["--mag-key", "magnitude"]),
    "npy frames-bins": (["mag_fb.npy", "phase_fb.npy"], ["--layout", "frames-bins"]),
    "npy frames-bins guessed": (["mag_fb.npy", "phase_fb.npy"], ["--n-fft", N_FFT]),
    "npy phase transposed": (["mag.npy", "phase_fb.npy"], []),          # each its own layout
    "npy mag transposed": (["mag_fb.npy", "phase.npy"], ["--layout", "frames-bins"]),
    "raw float32": (["mag.f32.bin", "phase.f32.bin"], ["--n-fft", N_FFT, "--layout",
                                                        "frames-bins"]),
    "raw float64 bins-frames": (["mag_bf.f64.raw", "phase_bf.f64.raw"],
                                ["--bins", N_FFT // 2 + 1, "--dtype", "float64",
                                 "--layout", "bins-frames"]),
    "raw complex64": (["complex.c64.bin"], ["--bins", N_FFT // 2 + 1, "--dtype", "complex64",
                                            "--layout", "frames-bins"]),
    "csv bins-frames": (["mag.csv", "phase.csv"], []),
    "txt frames-bins": (["mag_fb.txt", "phase_fb.txt"], ["--layout", "frames-bins"]),
}


@pytest.mark.parametrize("name", list(INPUTS))
def test_each_input_kind(tmp_path, files, signal, name):
    inputs, extra = INPUTS[name]
    out = tmp_path / "out.wav"
    p = ok([files / f for f in inputs] + ["-o", out, "--length", len(signal)] + COMMON + extra)
    y = read(out)
    assert y.shape == signal.shape
    # float32 engine, float32 WAV: far better than 90 dB; float32 raw input too
    assert snr_db(signal, y) > 90, name
    assert "wrote" in p.stderr and "frames" in p.stderr and "peak" in p.stderr


def test_python_dash_m_is_the_same_program(tmp_path, files, signal):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    ok([files / "complex.npy", "-o", a] + COMMON, cmd=console_script())
    ok([files / "complex.npy", "-o", b] + COMMON, cmd=SPECSTREAM)
    np.testing.assert_array_equal(read(a), read(b))


def test_summary(tmp_path, files, signal, D):
    out = tmp_path / "s.wav"
    p = ok([files / "complex.npy", "-o", out] + COMMON)
    lines = p.stderr.strip().splitlines()
    assert lines[0].startswith(f"wrote {out}")
    assert f"from {D.shape[1]} frames" in p.stderr
    assert "n_fft=1024 hop=256" in p.stderr
    peak_db = 20 * np.log10(np.abs(read(out)).max())
    assert f"peak {peak_db:+.1f} dBFS" in p.stderr
    assert "WARNING" not in p.stderr and "clip" not in p.stderr
    q = ok([files / "complex.npy", "-o", out, "-q"] + COMMON)
    assert q.stderr == ""


# -------------------------------------------------------------- presets
def test_preset_scipy(tmp_path, signal):
    import scipy.signal as ss
    _, _, Z = ss.stft(signal, fs=SR, nperseg=512)        # hann, hop 256, 'spectrum' scaling
    _, x_lib = ss.istft(Z, fs=SR, nperseg=512)
    np.save(tmp_path / "z.npy", Z)
    out = tmp_path / "o.wav"
    ok([tmp_path / "z.npy", "-o", out, "--preset", "scipy", "-r", SR])
    y = read(out)
    assert y.shape == x_lib.shape
    assert np.abs(y - x_lib).max() <= 1e-5 * np.abs(x_lib).max()
    assert snr_db(signal, y) > 90


def test_preset_scipy_sfft_psd(tmp_path, signal):
    import scipy.signal as ss
    sft = ss.ShortTimeFFT(ss.get_window("hann", 1024), 256, fs=SR, scale_to="psd")
    S = sft.stft(signal)
    np.save(tmp_path / "m.npy", np.abs(S))
    np.save(tmp_path / "p.npy", np.angle(S))
    out = tmp_path / "o.wav"
    ok([tmp_path / "m.npy", tmp_path / "p.npy", "-o", out, "--preset", "scipy-sfft",
        "--hop-length", 256, "--scaling", "psd", "-r", SR, "--length", len(signal)])
    y = read(out)
    np.testing.assert_allclose(y, sft.istft(S, k1=len(signal)), atol=1e-5 * 0.5)


@pytest.mark.parametrize("normalized", [False, True])
def test_preset_torch(tmp_path, signal, normalized):
    import torch
    w = torch.hamming_window(512, dtype=torch.float64)
    Z = torch.stft(torch.from_numpy(signal), 512, 128, window=w, normalized=normalized,
                   return_complex=True).numpy()
    np.save(tmp_path / "z.npy", Z)
    out = tmp_path / "o.wav"
    args = [tmp_path / "z.npy", "-o", out, "--preset", "torch", "--window", "hamming",
            "--length", len(signal), "-r", SR]
    if normalized:
        args += ["--scaling", "sqrt-n"]
    ok(args)
    assert snr_db(signal, read(out)) > 90


def test_preset_librosa_defaults(tmp_path, signal):
    import librosa
    D = librosa.stft(signal)                     # n_fft 2048, hop 512
    np.save(tmp_path / "z.npy", D)
    out = tmp_path / "o.wav"
    ok([tmp_path / "z.npy", "-o", out, "--preset", "librosa", "-r", SR])
    x_lib = librosa.istft(D)
    y = read(out)
    assert y.shape == x_lib.shape
    assert np.abs(y - x_lib).max() <= 1e-5 * 0.5


# ---------------------------------------------------------------- units
def test_db_with_ref_and_degrees(tmp_path, files, signal, D):
    import librosa
    ref = float(np.abs(D).max())
    mag_db = librosa.amplitude_to_db(np.abs(D), ref=ref, top_db=None)
    np.save(tmp_path / "db.npy", mag_db.astype(np.float32))
    np.save(tmp_path / "deg.npy", np.degrees(np.angle(D)) % 360)      # [0, 360)
    out = tmp_path / "o.wav"
    ok([tmp_path / "db.npy", tmp_path / "deg.npy", "-o", out, "--magnitude", "db",
        "--db-ref", ref, "--phase-unit", "deg", "--length", len(signal)] + COMMON)
    assert snr_db(signal, read(out)) > 90
    # without --db-ref the level is off by exactly the reference
    out2 = tmp_path / "o2.wav"
    ok([tmp_path / "db.npy", tmp_path / "deg.npy", "-o", out2, "--magnitude", "db",
        "--phase-unit", "deg", "--length", len(signal)] + COMMON)
    np.testing.assert_allclose(read(out2) * ref, read(out), atol=1e-5)


def test_power_and_cycles(tmp_path, signal, D):
    np.save(tmp_path / "pw.npy", np.abs(D) ** 2)
    np.save(tmp_path / "cy.npy", np.angle(D) / (2 * np.pi))
    out = tmp_path / "o.wav"
    ok([tmp_path / "pw.npy", tmp_path / "cy.npy", "-o", out, "--magnitude", "power",
        "--phase-unit", "cycles", "--length", len(signal)] + COMMON)
    assert snr_db(signal, read(out)) > 90


def test_nan_values_are_counted_in_the_summary(tmp_path, D, signal):
    X = D.copy()
    X[10, 5] = np.nan
    X[20, 7] = np.inf
    np.save(tmp_path / "n.npy", X)
    out = tmp_path / "o.wav"
    p = ok([tmp_path / "n.npy", "-o", out] + COMMON)
    assert "2 NaN/Inf values were replaced by 0" in p.stderr
    assert np.all(np.isfinite(read(out)))
    # magnitude + phase: an Inf, a NaN and a dB value past float32's range
    db = 20 * np.log10(np.abs(D) + 1e-9).astype(np.float32)
    db[3, 4] = np.inf
    db[5, 6] = np.nan
    db[7, 8] = 1000.0
    np.save(tmp_path / "db.npy", db)
    np.save(tmp_path / "ph.npy", np.angle(D))
    p = ok([tmp_path / "db.npy", tmp_path / "ph.npy", "-o", out, "--magnitude", "db"] + COMMON)
    assert "3 NaN/Inf values were replaced by 0" in p.stderr
    assert "Warning" not in p.stderr, p.stderr            # no numpy warnings
    assert np.all(np.isfinite(read(out)))


def test_stereo(tmp_path, signal):
    import librosa
    xs = np.stack([signal, -signal[::-1]])
    D2 = librosa.stft(xs, n_fft=N_FFT, hop_length=HOP)          # (2, bins, frames)
    np.save(tmp_path / "st.npy", D2)
    out = tmp_path / "o.wav"
    ok([tmp_path / "st.npy", "-o", out, "--length", len(signal)] + COMMON)
    y = read(out)
    assert y.shape == (len(signal), 2)
    assert snr_db(xs[0], y[:, 0]) > 90 and snr_db(xs[1], y[:, 1]) > 90


def test_no_center_and_window_from_file(tmp_path, signal):
    import librosa
    import scipy.signal as ss
    D = librosa.stft(signal, n_fft=N_FFT, hop_length=HOP, window="hamming", center=False)
    x_lib = librosa.istft(D, n_fft=N_FFT, hop_length=HOP, window="hamming", center=False)
    np.save(tmp_path / "nc.npy", D)
    np.save(tmp_path / "w.npy", ss.get_window("hamming", N_FFT))
    outs = []
    for window in ("hamming", str(tmp_path / "w.npy")):
        out = tmp_path / f"o{len(outs)}.wav"
        ok([tmp_path / "nc.npy", "-o", out, "--no-center", "--window", window] + COMMON)
        outs.append(read(out))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert outs[0].shape == x_lib.shape
    assert np.abs(outs[0] - x_lib).max() <= 1e-5 * np.abs(x_lib).max()


# --------------------------------------------------------------- output
@pytest.mark.parametrize("name,subtype,sf_subtype,snr_min", [
    ("o.wav", None, "FLOAT", 90),
    ("o.wav", "double", "DOUBLE", 90),
    ("o.wav", "pcm16", "PCM_16", 65),      # 16-bit quantisation of speech peaking at -6 dBFS
    ("o.wav", "pcm24", "PCM_24", 90),
    ("o.flac", None, "PCM_24", 90),
    ("o.flac", "pcm16", "PCM_16", 65),
])
def test_output_formats(tmp_path, files, signal, name, subtype, sf_subtype, snr_min):
    out = tmp_path / name
    args = [files / "complex.npy", "-o", out, "--length", len(signal)] + COMMON
    if subtype:
        args += ["--subtype", subtype]
    ok(args)
    info = sf.info(out)
    assert info.subtype == sf_subtype and info.samplerate == SR
    assert info.format == ("FLAC" if name.endswith(".flac") else "WAV")
    assert snr_db(signal, read(out)) > snr_min


def test_length_trims_and_pads(tmp_path, files, D):
    natural = (D.shape[1] - 1) * HOP
    for n in (1000, natural, natural + 5000):
        out = tmp_path / f"l{n}.wav"
        ok([files / "complex.npy", "-o", out, "--length", n] + COMMON)
        y = read(out)
        assert len(y) == n
    assert not np.any(read(tmp_path / f"l{natural + 5000}.wav")[natural + N_FFT:])
    assert len(read(tmp_path / "l1000.wav")) == 1000


@pytest.fixture(scope="module")
def loud(tmp_path_factory, D):
    d = tmp_path_factory.mktemp("loud")
    np.save(d / "loud.npy", 4 * D)             # peak +6 dBFS
    return d / "loud.npy"


@pytest.mark.parametrize("subtype", ["pcm16", "pcm24", "float"])
def test_clipping_is_warned_about(tmp_path, loud, subtype):
    out = tmp_path / "c.wav"
    p = ok([loud, "-o", out, "--subtype", subtype] + COMMON)
    y = read(out)
    assert "WARNING" in p.stderr and "--normalize" in p.stderr
    assert "peak +6.0 dBFS" in p.stderr
    if subtype == "float":
        assert "over full scale" in p.stderr
        assert np.abs(y).max() > 1.9            # kept, not clipped, and reported
    else:
        assert "clipped" in p.stderr
        assert np.abs(y).max() <= 1.0
        assert np.abs(y).max() > 0.99           # clipped at full scale, not wrapped around
        n = int(p.stderr.split(" samples clipped")[0].rsplit(None, 1)[-1])
        assert n == int(np.count_nonzero(np.abs(read_float(out)) >= 0.9999))


def read_float(path):
    return sf.read(path, dtype="float64")[0]


@pytest.mark.parametrize("target", [None, -6.0, -0.1])
def test_normalize(tmp_path, loud, signal, target):
    out = tmp_path / "n.wav"
    args = [loud, "-o", out, "--normalize"] + ([] if target is None else [target])
    p = ok(args + COMMON + ["--length", len(signal), "--subtype", "pcm24"])
    y = read(out)
    want = 10 ** ((-1.0 if target is None else target) / 20)
    assert abs(np.abs(y).max() - want) < 1e-5
    assert "WARNING" not in p.stderr and "clip" not in p.stderr
    assert "gain" in p.stderr
    assert snr_db(signal, y * 0.5 / want) > 90


# ---------------------------------------------------------- bad commands
BAD = {
    "wrong n_fft": (["mag.npy", "phase.npy", "-o", "{out}", "--n-fft", 2048], "n_fft=1024"),
    "missing file": (["nope.npy", "phase.npy", "-o", "{out}"], "no such file"),
    "missing phase file": (["mag.npy", "nope2.npy", "-o", "{out}"], "nope2.npy"),
    "bad extension": (["complex.npy", "-o", "{tmp}/o.mp3"], ".wav or .flac"),
    "flac float": (["complex.npy", "-o", "{tmp}/o.flac", "--subtype", "float"], "pcm24"),
    "hop > win": (["complex.npy", "-o", "{out}", "--hop-length", 4096], "--hop-length <= 1024"),
    "win > n_fft": (["complex.npy", "-o", "{out}", "--win-length", 2048], "--win-length <= 1024"),
    "nola": (["complex.npy", "-o", "{out}", "--hop-length", 1024], "smaller --hop-length"),
    "unknown window": (["complex.npy", "-o", "{out}", "--window", "kaiser"], "hamming"),
    "unknown npz key": (["both.npz", "-o", "{out}", "--mag-key", "S"], "magnitude, phase"),
    "raw wrong bins": (["mag.f32.bin", "phase.f32.bin", "-o", "{out}", "--bins", 500],
                       "--bins"),
    "raw no bins": (["mag.f32.bin", "phase.f32.bin", "-o", "{out}"], "--bins"),
    "not a number": (["complex.npy", "-o", "{out}", "--hop-length", "abc"], "--hop-length"),
    "unknown unit": (["mag.npy", "phase.npy", "-o", "{out}", "--magnitude", "dB"], "db-power"),
    "no output": (["complex.npy"], "-o/--output"),
    "channels": (["complex.npy", "-o", "{out}", "--channels", 2], "--channels 1"),
    "shapes differ": (["mag.npy", "phase_cut.npy", "-o", "{out}"], "differ"),
    "complex phase": (["mag.npy", "complex.npy", "-o", "{out}"], "complex"),
    "unwritable": (["complex.npy", "-o", "{tmp}/no/such/dir/o.wav"], "directory"),
    "negative length": (["complex.npy", "-o", "{out}", "--length", -5], "length"),
    "window file missing": (["complex.npy", "-o", "{out}", "--window", "nope.npy"],
                            "nope.npy"),
    "window list length": (["complex.npy", "-o", "{out}", "--window", "1,2,3"],
                           "win_length=1024"),
    "bad db ref": (["mag.npy", "phase.npy", "-o", "{out}", "--magnitude", "db",
                    "--db-ref", 0], "db_ref"),
}


@pytest.mark.parametrize("cmd", ["specstream", "python -m stream"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_command_lines(tmp_path, files, case, cmd):
    args, hint = BAD[case]
    args = [str(a).format(out=tmp_path / "o.wav", tmp=tmp_path) for a in args]
    args = [str(files / a) if (files / a).exists() else a for a in args]
    base = console_script() if cmd == "specstream" else SPECSTREAM
    p = run(["reconstruct"] + args + ["-r", SR], cmd=base)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert hint in lines[0], lines[0]
    assert lines[0].startswith("specstream reconstruct: error:")
    assert not (tmp_path / "o.wav").exists()      # no empty or partial output left behind
