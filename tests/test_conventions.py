"""Every convention stated (windows, frame placement, scaling, units, stored
bins), the classic mistakes of explicit runs warned about, the end padding
found, and long magnitude-only files phased block by block in flat memory."""

import signal
import subprocess
import time
import tracemalloc

import numpy as np
import pytest
import scipy.signal as ss

import stream.cli
from programs import ROOT, SPECSTREAM, program_env
from stream import phase
from stream.decode import Decoder, Encoding
from stream.ends import end_of_frames, find_end
from stream.engine import istft, stft
from stream.spec import (WINDOW_FAMILIES, WINDOWS, SpecError, STFTSpec, get_window,
                         parse_window_name, preset)

SCIPY = {"hann": "hann", "hamming": "hamming", "blackman": "blackman", "rectangular": "boxcar",
         "bartlett": "bartlett", "sine": "cosine"}


def speechlike(n=12000, sr=16000, seed=0):
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    f0 = 150 + 30 * np.sin(2 * np.pi * 3 * t)
    ph = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * ph) / k for k in range(1, 20)) + 0.05 * rng.standard_normal(n)
    return 0.3 * x / np.abs(x).max()


# ----------------------------------------------------------------- windows
@pytest.mark.parametrize("name", sorted(SCIPY))
@pytest.mark.parametrize("n", [2, 3, 64, 255, 400])
def test_symmetric_and_periodic_windows_equal_scipys(name, n):
    for sym in (False, True):
        ref = ss.get_window(SCIPY[name], n, fftbins=not sym)
        np.testing.assert_allclose(get_window(name, n, symmetric=sym), ref, atol=1e-14)
        np.testing.assert_allclose(get_window(name + ("-sym" if sym else ""), n), ref,
                                   atol=1e-14)


def test_symmetric_is_numpys_and_differs_from_periodic():
    np.testing.assert_allclose(get_window("hamming-sym", 512), np.hamming(512), atol=1e-15)
    np.testing.assert_allclose(get_window("hann-sym", 512), np.hanning(512), atol=1e-15)
    # the periodic window of N is the symmetric one of N + 1 without its last point
    for name in WINDOWS:
        np.testing.assert_allclose(get_window(name, 300),
                                   get_window(name + "-sym", 301)[:-1], atol=1e-15)
    assert np.abs(get_window("hamming", 512) - np.hamming(512)).max() > 1e-3


@pytest.mark.parametrize("family,value", [("tukey", 0.25), ("tukey", 0.5), ("tukey", 1.0),
                                          ("tukey", 0.0), ("gaussian", 7.5), ("kaiser", 8.6)])
@pytest.mark.parametrize("n", [16, 255, 256])
def test_window_families_take_scipys_names_and_parameters(family, value, n):
    for sym in (False, True):
        ref = ss.get_window((family, value), n, fftbins=not sym)
        name = f"{family}{'-sym' if sym else ''}:{value:g}"
        np.testing.assert_allclose(get_window(name, n), ref, atol=1e-12)
    assert set(WINDOW_FAMILIES) >= {"tukey", "gaussian"}


def test_window_names_are_parsed_and_spelt_back():
    assert parse_window_name("Hamming-Symmetric").text == "hamming-sym"
    assert parse_window_name("tukey:0.25-sym").text == "tukey-sym:0.25"
    assert parse_window_name("tukey").text == "tukey:0.5"                 # scipy's default
    assert parse_window_name("hann", symmetric=True).text == "hann-sym"
    assert STFTSpec(n_fft=512, window="hamming-sym").window_symmetric is True
    assert STFTSpec(n_fft=512).window_symmetric is False
    for bad, words in (("gaussian", "standard deviation"), ("hann:3", "no parameter"),
                       ("tukey:x", "a number"), ("nope", "unknown window")):
        with pytest.raises(SpecError, match=words):
            get_window(bad, 64)


# ------------------------------------------------ placement, scale, presets
def test_first_sample_frames_start_before_the_signal():
    x = speechlike(4000)
    spec = STFTSpec(n_fft=512, hop_length=128, center=False, first_sample=-384)
    X = stft(x, spec, dtype=np.float64)
    xp = np.concatenate([np.zeros(384), x, np.zeros(512)])
    ref = np.fft.rfft(get_window("hann", 512) * xp[128:128 + 512])
    np.testing.assert_allclose(X[1], ref, atol=1e-9)
    y = istft(X, spec, length=len(x), dtype=np.float64)
    end = spec.covered_samples(len(X))                  # frames end inside the signal
    assert end == -384 + (len(X) - 1) * 128 + 512 < len(x)
    np.testing.assert_allclose(y[:end], x[:end], atol=1e-9)
    with pytest.raises(SpecError, match="center=False"):
        STFTSpec(n_fft=512, first_sample=-10)
    with pytest.raises(SpecError, match="within"):
        STFTSpec(n_fft=512, center=False, first_sample=-513)


def test_gain_and_essentias_scaling_are_undone():
    x = speechlike(4000)
    for kw in ({"gain": 3.5}, {"scaling": "essentia", "window": "hann-sym"}):
        spec = STFTSpec(n_fft=256, hop_length=64, **kw)
        X = stft(x, spec, dtype=np.float64)
        plain = stft(x, spec.replace(gain=1.0, scaling="none"), dtype=np.float64)
        want = 3.5 if "gain" in kw else 2 / get_window("hann-sym", 256).sum()
        np.testing.assert_allclose(X, plain * want, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(istft(X, spec, length=len(x), dtype=np.float64), x,
                                   atol=1e-9)
    with pytest.raises(SpecError, match="gain"):
        STFTSpec(gain=0)


def test_scipy_spectrogram_preset_makes_scipys_frames():
    x = speechlike(5000)
    _, _, Z = ss.spectrogram(x, mode="complex", detrend=False)    # fs=1, density
    spec = preset("scipy-spectrogram")
    assert (spec.n_fft, spec.hop_length, spec.window, spec.center) == (256, 224, "tukey:0.25",
                                                                        False)
    X = stft(x, spec, dtype=np.float64)
    np.testing.assert_allclose(X[:Z.shape[1]], Z.T, atol=1e-9)


def test_covered_samples_reach_half_a_frame_past_samples_for():
    spec = STFTSpec(n_fft=1024, hop_length=256)
    assert spec.samples_for(100) == 99 * 256
    assert spec.covered_samples(100) == spec.max_samples_for(100) == 100 * 256 - 1
    unc = STFTSpec(n_fft=1024, hop_length=256, center=False, window="hann-sym")
    assert unc.covered_samples(10) == 9 * 256 + 1023          # the last point weighs 0


# ------------------------------------------------------------------- units
def test_log10_eps_two_sided_and_missing_nyquist_decode():
    spec = STFTSpec(n_fft=8, hop_length=2)
    mag = np.array([[0.0, 1.0, 2.0, 3.0, 4.0]])
    ph = np.zeros_like(mag)
    d = Decoder(spec, Encoding(magnitude="log10", eps=1e-6), dtype=np.complex128)
    np.testing.assert_allclose(d.decode(np.log10(mag + 1e-6), ph).real, mag, atol=1e-9)
    d = Decoder(spec, Encoding(magnitude="log", eps=1e-6), dtype=np.complex128)
    np.testing.assert_allclose(d.magnitude(np.log(mag + 1e-6)), mag, atol=1e-9)
    d = Decoder(spec, Encoding(magnitude="db-power", eps=1e-10), dtype=np.complex128)
    np.testing.assert_allclose(d.magnitude(10 * np.log10(mag ** 2 + 1e-10)), mag, atol=1e-6)
    full = np.fft.fft(np.arange(8.0))[None]
    d = Decoder(spec, dtype=np.complex128)
    np.testing.assert_allclose(d.decode(full), np.fft.rfft(np.arange(8.0))[None])
    d = Decoder(spec, Encoding(nyquist="zero"), dtype=np.complex128)
    out = d.decode(np.fft.rfft(np.arange(8.0))[None, :4])
    assert out.shape == (1, 5) and out[0, 4] == 0
    with pytest.raises(SpecError, match="Nyquist"):
        Decoder(spec).decode(np.ones((1, 4), complex))


# --------------------------------------------------------------- the ends
@pytest.mark.parametrize("pad", ["constant", "reflect"])
def test_the_end_is_found_from_the_last_frames(pad):
    import torch
    x = speechlike(7001)
    spec = STFTSpec(n_fft=512, hop_length=128)
    X = torch.stft(torch.from_numpy(x), 512, 128, window=torch.hann_window(
        512, dtype=torch.float64), pad_mode=pad, return_complex=True).numpy().T
    end = end_of_frames(X[-20:], spec, len(X))
    assert (end.length, end.how) == (7001, "zeros" if pad == "constant" else "mirror")
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(X.shape) + 1j * rng.standard_normal(X.shape)
    end = end_of_frames(noise[-20:], spec, len(X))
    assert (end.length, end.how) == (spec.samples_for(len(X)), "inconsistent")
    tail = np.ones(300)
    assert find_end(tail, 7000 - 300, spec.replace(center=False), 10).how == "covered"


# ------------------------------------------------- the classic mistakes
@pytest.fixture(scope="module")
def lib_files(tmp_path_factory):
    import librosa
    d = tmp_path_factory.mktemp("lib")
    x = speechlike(16000)
    S = librosa.stft(x, n_fft=1024, hop_length=200)
    np.save(d / "mag.npy", np.abs(S))
    np.save(d / "phase.npy", np.angle(S))
    np.save(d / "db.npy", 20 * np.log10(np.abs(S) + 1e-9))
    np.save(d / "deg.npy", np.degrees(np.angle(S)))
    return d


@pytest.mark.parametrize("files,flags,words", [
    (["mag.npy", "phase.npy"], ["--hop-length", 256], ["far from consistent",
                                                        "--hop-length 200"]),
    (["phase.npy", "mag.npy"], ["--hop-length", 200], ["other way round"]),
    (["db.npy", "phase.npy"], ["--hop-length", 200], ["negative", "--magnitude db"]),
    (["mag.npy", "deg.npy"], ["--hop-length", 200], ["degrees read as radians",
                                                     "--phase-unit deg"]),
])
def test_explicit_runs_warn_about_the_classic_mistakes(lib_files, tmp_path, caplog, files,
                                                       flags, words):
    rc = stream.cli.main(["reconstruct", *[str(lib_files / f) for f in files], "-o",
                          str(tmp_path / "o.wav"), "-r", "16000", "-q", *map(str, flags)])
    err = caplog.text
    assert rc == 0
    for w in words:
        assert w in err, err


def test_right_explicit_flags_get_no_warning(lib_files, tmp_path, caplog):
    rc = stream.cli.main(["reconstruct", str(lib_files / "mag.npy"),
                          str(lib_files / "phase.npy"), "-o", str(tmp_path / "o.wav"),
                          "-r", "16000", "--hop-length", "200", "-q"])
    assert rc == 0 and not [r for r in caplog.records if r.levelname == "WARNING"]


def test_no_parameters_are_inferred_and_what_cannot_be_told_is_refused(lib_files, tmp_path,
                                                                       capsys):
    rc = stream.cli.main(["reconstruct", str(lib_files / "phase.npy"), str(lib_files / "db.npy"),
                          "-o", str(tmp_path / "o.wav"), "-r", "16000"])
    err = capsys.readouterr().err
    assert rc == 0 and "hop=200" in err and "confidence" in err, err
    rng = np.random.default_rng(0)
    np.save(tmp_path / "m.npy", rng.random((513, 80)))
    np.save(tmp_path / "p.npy", rng.uniform(-np.pi, np.pi, (513, 80)))
    rc = stream.cli.main(["reconstruct", str(tmp_path / "m.npy"), str(tmp_path / "p.npy"),
                          "-o", str(tmp_path / "x.wav"), "-r", "16000"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot tell" in err and "--hop-length" in err, err
    assert "specstream probe" in err and not (tmp_path / "x.wav").exists()


# ------------------------------------------------- long magnitude-only files
SPEC16 = STFTSpec(sample_rate=16000, n_fft=256, hop_length=64)


def test_block_phase_is_as_good_as_the_whole_file():
    x = speechlike(48000)
    mag = np.abs(stft(x, SPEC16))
    whole = phase.spectral_convergence(mag, phase.reconstruct_phase(mag, SPEC16, "pghi"),
                                       SPEC16)
    b = phase.BlockPhase(SPEC16, "pghi", block=200)
    f = np.concatenate([b.push(mag[i:i + 333]) for i in range(0, len(mag), 333)]
                       + [b.flush()], axis=1)[0]
    assert f.shape == mag.shape and b.blocks >= 3
    blocks = phase.spectral_convergence(mag, f, SPEC16)
    assert blocks < -20 and blocks < whole + 1.5, (blocks, whole)


def test_block_phase_memory_does_not_grow_with_the_length():
    peaks = {}
    for seconds in (4, 16):
        x = speechlike(16000 * seconds, seed=seconds)
        mag = np.abs(stft(x, SPEC16)).astype(np.float32)
        b = phase.BlockPhase(SPEC16, "pghi", iterations=4, block=256)
        tracemalloc.start()
        for i in range(0, len(mag), 512):
            b.push(mag[i:i + 512])
        b.flush()
        peaks[seconds] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # the magnitude itself grows by 12 x 257 x 4 B per frame x 3000 frames: 3 MB
    assert peaks[16] < 1.2 * peaks[4] + (1 << 20), peaks


def test_ctrl_c_ends_a_long_magnitude_only_run_at_once(tmp_path):
    frames = 20 * 60 * 16000 // 64            # 20 minutes: far more than the test waits
    m = np.lib.format.open_memmap(tmp_path / "mag.npy", mode="w+", dtype=np.float32,
                                  shape=(frames, 129))
    rng = np.random.default_rng(0)
    for i in range(0, frames, 50000):
        m[i:i + 50000] = rng.random((min(50000, frames - i), 129), dtype=np.float32)
    del m
    # SIGINT as a terminal's child has it (a background job's children inherit it ignored)
    p = subprocess.Popen(SPECSTREAM + ["reconstruct", str(tmp_path / "mag.npy"), "-o",
                                       str(tmp_path / "o.wav"), "--n-fft", "256",
                                       "--hop-length", "64", "-r", "16000", "-q"],
                         env=program_env(), stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(4)
    assert p.poll() is None
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=30)
    took = time.monotonic() - t0
    assert rc == 130 and "interrupted" in p.stderr.read()
    assert took < 1.5, took
