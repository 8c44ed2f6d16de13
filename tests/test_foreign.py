"""Files made by other tools, read as their users would: with the flags that
state every convention (>= 60 dB SNR over the samples the frames cover) and
with no parameters at all (>= 40 dB after a gain fit, the probe naming
n_fft, hop, window and its symmetry, the frame placement and the units).

tensorflow, essentia, pyroomacoustics and audioflux are not test extras:
their frames are committed (tests/fixtures/foreign, made by
tests/fixtures/make_foreign.py).  librosa, scipy and torch run here, and the
numpy-loop, MATLAB- and Octave-style frames are made here as those tools
make them, from a real recording.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import stream.cli
from stream.spec import STFTSpec

FIX = Path(__file__).resolve().parent / "fixtures" / "foreign"
CONV = json.loads((FIX / "conventions.json").read_text())
RECORDING = Path("/usr/share/sounds/alsa/Front_Center.wav")


def cli(*args, capsys=None) -> tuple[int, str]:
    rc = stream.cli.main([str(a) for a in args])
    err = capsys.readouterr().err if capsys is not None else ""
    return rc, err


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def read(path) -> np.ndarray:
    return sf.read(path, dtype="float64")[0]


def covered(spec: STFTSpec, n_frames: int, length: int) -> np.ndarray:
    """The samples some frame's window weighs (at 1e-3 of the interior sum)."""
    env = np.zeros(length + spec.n_fft)
    w2 = spec.padded_window ** 2
    for t in range(n_frames):
        a = t * spec.hop_length - spec.start_trim
        lo, hi = max(a, 0), min(a + spec.n_fft, length)
        if lo < hi:
            env[lo:hi] += w2[lo - a:hi - a]
    env = env[:length]
    return env > 1e-3 * float(spec.window_sumsquare_periodic.max())


def snr(x, y, mask=None, gain_fit=False) -> float:
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    if mask is not None:
        x, y = x[mask[:n]], y[mask[:n]]
    if gain_fit:
        y = y * (x @ y) / max(y @ y, 1e-300)
    return 10 * np.log10(np.sum(x ** 2) / max(np.sum((x - y) ** 2), 1e-300))


@pytest.fixture(scope="module")
def clip():
    """0.5 s of speech from its first sound on (a file that starts in digital
    silence leaves the frame placement to a guess), 37 samples over a
    multiple of every hop here."""
    if not RECORDING.exists():
        pytest.skip("alsa-utils' recordings are not installed")
    x, sr = sf.read(RECORDING, dtype="float64")
    first = int(np.flatnonzero(np.abs(x) > 1e-4)[0])
    return x[first:first + sr // 2 + 37], sr


def probe_json(capsys, *files, flags=()) -> dict:
    rc, _ = cli("probe", *files, "--json", "-q", *flags, capsys=None)
    assert rc == 0
    return json.loads(capsys.readouterr().out)


# ------------------------------------------------------ committed tools
TOOLS = sorted(CONV["files"])


def _tool_spec(c) -> STFTSpec:
    return STFTSpec(sample_rate=CONV["sample_rate"], **{k: c[k] for k in (
        "n_fft", "hop_length", "win_length", "window", "center", "first_sample",
        "window_align", "scaling", "phase_origin")})


def _explicit_flags(c) -> list:
    flags = ["--layout", c["layout"], "--n-fft", c["n_fft"], "--hop-length", c["hop_length"],
             "--win-length", c["win_length"], "--window", c["window"],
             "--window-align", c["window_align"], "--scaling", c["scaling"],
             "--phase-origin", c["phase_origin"], "-r", CONV["sample_rate"]]
    flags.append("--center" if c["center"] else "--no-center")
    if c["first_sample"]:
        flags.append(f"--first-sample={c['first_sample']}")
    return flags


@pytest.mark.parametrize("name", TOOLS)
def test_committed_tool_with_its_conventions_stated(name, tmp_path, capsys, caplog):
    c = CONV["files"][name]
    x = np.load(FIX / "signal.npy").astype(np.float64)
    out = tmp_path / "o.wav"
    rc, err = cli("reconstruct", FIX / name, "-o", out, *_explicit_flags(c), capsys=capsys)
    assert rc == 0, err
    assert not warnings(caplog), warnings(caplog)
    y = read(out)
    spec = _tool_spec(c)
    n_frames = c["shape"][0 if c["layout"] == "frames-bins" else 1]
    mask = covered(spec, n_frames, len(x))
    assert mask.sum() > 0.9 * len(x)
    print(f"{name}: stated flags {snr(x, y, mask):.1f} dB", file=sys.__stderr__)
    assert snr(x, y, mask) >= 60, (name, snr(x, y, mask))


#: What the probe must name for each committed file, as conventions.json has it.
NAMED = ("n_fft", "hop_length", "window", "center", "first_sample", "phase_origin")


@pytest.mark.parametrize("name", TOOLS)
def test_committed_tool_with_no_parameters(name, tmp_path, capsys):
    c = CONV["files"][name]
    x = np.load(FIX / "signal.npy").astype(np.float64)
    out = tmp_path / "o.wav"
    rc, err = cli("reconstruct", FIX / name, "-o", out, "-r", CONV["sample_rate"],
                  capsys=capsys)
    assert rc == 0, err
    assert "probe:" in err and "confidence" in err, err     # what was assumed, and how sure
    y = read(out)
    n_frames = c["shape"][0 if c["layout"] == "frames-bins" else 1]
    mask = covered(_tool_spec(c), n_frames, len(x))
    print(f"{name}: no parameters {snr(x, y, mask, gain_fit=True):.1f} dB after a gain fit", file=sys.__stderr__)
    assert snr(x, y, mask, gain_fit=True) >= 40, (name, snr(x, y, mask, gain_fit=True))
    found = probe_json(capsys, FIX / name)
    for k in NAMED:
        assert found.get(k, 0 if k == "first_sample" else None) == c[k], (k, found.get(k))
    assert found["evidence"]["window"]["confidence"] >= 0.9
    assert found["magnitude"] == "linear" and found["layout"] == c["layout"]


# --------------------------------------------- tools that run in the suite
def _frames_loop(x, n, hop, window, n_fft=None):
    """A numpy loop over frames from sample 0 (MATLAB, Octave, np.hamming recipes)."""
    n_fft = n_fft or n
    return np.array([np.fft.rfft(window * x[i:i + n], n_fft)
                     for i in range(0, len(x) - n + 1, hop)])


def _make(kind, x, sr, d: Path):
    """(files, explicit flags, what the probe must name) for one tool."""
    import librosa
    import scipy.signal as ss
    import torch
    if kind == "librosa":
        S = librosa.stft(x, n_fft=1024, hop_length=200)
        np.save(d / "m.npy", np.abs(S))
        np.save(d / "p.npy", np.angle(S))
        return (["m.npy", "p.npy"], ["--n-fft", 1024, "--hop-length", 200],
                dict(n_fft=1024, hop_length=200, window="hann", center=True))
    if kind == "scipy":
        _, _, Z = ss.stft(x, fs=sr, nperseg=512, noverlap=384)
        np.save(d / "z.npy", Z)
        return (["z.npy"], ["--n-fft", 512, "--hop-length", 128, "--scaling", "window-sum"],
                dict(n_fft=512, hop_length=128, window="hann", center=True))
    if kind == "torch-hamming-400-160":
        T = torch.stft(torch.from_numpy(x), 400, 160, window=torch.hamming_window(
            400, dtype=torch.float64), return_complex=True).numpy()
        np.save(d / "t.npy", T)
        return (["t.npy"], ["--n-fft", 400, "--hop-length", 160, "--window", "hamming"],
                dict(n_fft=400, hop_length=160, window="hamming", center=True))
    if kind == "numpy-np.hamming":
        F = _frames_loop(x, 512, 128, np.hamming(512))
        np.save(d / "mag.npy", np.abs(F))
        np.save(d / "phase.npy", np.angle(F))
        return (["mag.npy", "phase.npy"], ["--n-fft", 512, "--hop-length", 128, "--window",
                                           "hamming", "--symmetric", "--no-center"],
                dict(n_fft=512, hop_length=128, window="hamming-sym", center=False))
    if kind == "matlab-spectrogram":
        # [s,f,t] = spectrogram(x, hamming(400), 240, 512): frames from sample 0,
        # MATLAB's symmetric hamming, the segment zero-padded at its end to 512
        F = _frames_loop(x, 400, 160, np.hamming(400), n_fft=512).T
        np.save(d / "s.npy", F)
        return (["s.npy"], ["--n-fft", 512, "--hop-length", 160, "--win-length", 400,
                            "--window", "hamming-sym", "--window-align", "left", "--no-center"],
                dict(n_fft=512, hop_length=160, win_length=400, window="hamming-sym",
                     center=False, window_align="left"))
    if kind == "octave-specgram":
        # specgram(x, 256, fs, hanning(256), 128): Octave's hanning has its zero end
        # points, and only bins 0 .. n/2-1 are kept
        n = 256
        w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / (n - 1))
        G = np.array([np.fft.fft(w * x[i:i + n])[:n // 2]
                      for i in range(0, len(x) - n + 1, n // 2)]).T
        np.save(d / "sm.npy", np.abs(G))
        np.save(d / "sp.npy", np.angle(G))
        return (["sm.npy", "sp.npy"], ["--no-nyquist", "--hop-length", 128, "--window",
                                       "hann-sym", "--no-center"],
                dict(n_fft=256, hop_length=128, window="hann-sym", center=False))
    if kind == "librosa-center-false-win600":
        S = librosa.stft(x, n_fft=1024, hop_length=256, win_length=600, center=False)
        np.save(d / "s.npy", S)
        return (["s.npy"], ["--n-fft", 1024, "--hop-length", 256, "--win-length", 600,
                            "--no-center"],
                dict(n_fft=1024, hop_length=256, win_length=600, window="hann", center=False))
    if kind == "scipy-spectrogram":
        _, _, Z = ss.spectrogram(x, fs=sr, mode="complex", detrend=False)
        np.save(d / "s.npy", Z)
        return (["s.npy"], ["--preset", "scipy-spectrogram", "--scaling", "psd"],
                dict(n_fft=256, hop_length=224, window="tukey:0.25", center=False))
    if kind == "tensorflow-log-eps":
        # the tensorflow recipe's log(|S| + 1e-6), the phase beside it
        T = np.load(FIX / "tensorflow.npy")
        np.save(d / "logmag.npy", np.log(np.abs(T) + 1e-6))
        np.save(d / "phase.npy", np.angle(T))
        return (["logmag.npy", "phase.npy"], ["--n-fft", 512, "--hop-length", 160,
                                              "--win-length", 400, "--window-align", "left",
                                              "--no-center", "--magnitude", "log", "--eps",
                                              "1e-6"],
                dict(n_fft=512, hop_length=160, win_length=400, window="hann", center=False,
                     magnitude="log"))
    if kind == "two-sided":
        F = np.array([np.fft.fft(np.hanning(512) * x[i:i + 512])
                      for i in range(0, len(x) - 511, 128)])
        np.save(d / "two.npy", F)
        return (["two.npy"], ["--n-fft", 512, "--hop-length", 128, "--window", "hann-sym",
                              "--no-center"],
                dict(n_fft=512, hop_length=128, window="hann-sym", center=False))
    raise ValueError(kind)


KINDS = ["librosa", "scipy", "torch-hamming-400-160", "numpy-np.hamming", "matlab-spectrogram",
         "octave-specgram", "librosa-center-false-win600", "scipy-spectrogram",
         "tensorflow-log-eps", "two-sided"]


def _spec_of(want: dict, sr) -> STFTSpec:
    keys = ("n_fft", "hop_length", "win_length", "window", "center", "window_align")
    return STFTSpec(sample_rate=sr, **{k: want[k] for k in keys if k in want})


@pytest.mark.parametrize("kind", KINDS)
def test_tool_files_explicit_and_with_no_parameters(kind, clip, tmp_path, capsys, caplog):
    x, sr = clip
    if kind == "tensorflow-log-eps":
        x, sr = np.load(FIX / "signal.npy").astype(np.float64), CONV["sample_rate"]
    files, flags, want = _make(kind, x, sr, tmp_path)
    paths = [tmp_path / f for f in files]
    spec = _spec_of(want, sr)
    first = np.load(paths[0], mmap_mode="r")
    n_frames = first.shape[1] if first.shape[0] in (spec.n_bins, spec.n_fft, spec.n_bins - 1) \
        and first.shape[1] not in (spec.n_bins, spec.n_fft, spec.n_bins - 1) else first.shape[0]
    mask = covered(spec, n_frames, len(x))
    out = tmp_path / "explicit.wav"
    rc, err = cli("reconstruct", *paths, "-o", out, "-r", sr, *flags, capsys=capsys)
    assert rc == 0, err
    assert not warnings(caplog), warnings(caplog)
    y = read(out)
    scale = "scipy-spectrogram" == kind          # fs given to scipy: psd scaling
    print(f"{kind}: stated flags {snr(x, y, mask):.1f} dB ({snr(x, y, mask, True):.1f} after a "
          "gain fit)", file=sys.__stderr__)
    assert snr(x, y, mask) >= 60 or scale and snr(x, y, mask, True) >= 60, \
        (kind, snr(x, y, mask))
    out = tmp_path / "auto.wav"
    rc, err = cli("reconstruct", *paths, "-o", out, "-r", sr, capsys=capsys)
    assert rc == 0, err
    y = read(out)
    print(f"{kind}: no parameters {snr(x, y, mask, gain_fit=True):.1f} dB after a gain fit", file=sys.__stderr__)
    assert snr(x, y, mask, gain_fit=True) >= 40, (kind, snr(x, y, mask, gain_fit=True))
    found = probe_json(capsys, *paths)
    for k, v in want.items():
        assert found.get(k, found["evidence"].get(k, {}).get("value")) == v, (k, found.get(k))


# --------------------------------------------- every sample the frames hold
@pytest.mark.parametrize("tool", ["librosa", "torch", "scipy"])
def test_centred_frames_give_back_the_whole_signal_without_length(tool, clip, tmp_path,
                                                                  capsys):
    import librosa
    import scipy.signal as ss
    import torch
    x, sr = clip
    assert len(x) % 256 and len(x) % 128
    if tool == "librosa":
        Z, flags = librosa.stft(x, n_fft=1024, hop_length=256), ["--hop-length", 256]
        how = "zeros"
    elif tool == "torch":
        Z = torch.stft(torch.from_numpy(x), 1024, 256, window=torch.hann_window(
            1024, dtype=torch.float64), return_complex=True).numpy()
        flags, how = ["--hop-length", 256], "mirror"
    else:
        Z = ss.stft(x, fs=sr, nperseg=512, noverlap=384)[2]      # padded=True
        flags, how = ["--hop-length", 128, "--scaling", "window-sum"], "zeros"
    np.save(tmp_path / "z.npy", Z)
    for extra in (flags, []):               # stated, and inferred
        out = tmp_path / "o.wav"
        rc, err = cli("reconstruct", tmp_path / "z.npy", "-o", out, "-r", sr, *extra,
                      capsys=capsys)
        assert rc == 0, err
        y = read(out)
        assert len(y) == len(x), (tool, len(y), len(x), err)
        print(f"{tool} centred, {'stated' if extra else 'inferred'}, no --length: {len(y)} "
              f"samples of {len(x)}, {snr(x, y):.1f} dB", file=sys.__stderr__)
        assert snr(x, y) >= 60, (tool, snr(x, y))
        assert ("zeros" if how == "zeros" else "mirror") in err and str(len(x)) in err, err


def test_where_the_padding_does_not_show_the_range_is_said(clip, tmp_path, capsys):
    # uncentred frames: the frames hold what they cover, the rest is unknown
    x, sr = clip
    F = _frames_loop(x, 512, 128, np.hanning(512))
    np.save(tmp_path / "f.npy", F)
    rc, err = cli("reconstruct", tmp_path / "f.npy", "-o", tmp_path / "o.wav", "-r", sr,
                  "--n-fft", 512, "--hop-length", 128, "--window", "hann-sym", "--no-center",
                  capsys=capsys)
    assert rc == 0, err
    n = (len(F) - 1) * 128 + 512
    assert len(read(tmp_path / "o.wav")) == n - 1       # the symmetric window's last zero
    assert "all the frames hold" in err and f"{n - 1}..{n + 127}" in err, err
