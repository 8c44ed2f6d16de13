"""The probe: files made by scipy, librosa, torch and a hand-rolled numpy STFT.

Each case writes files the way a user of that library would, checks that
``probe`` names the parameters, and that ``specstream reconstruct --auto``
(a subprocess) gives the original back: SNR > 40 dB after a least-squares
gain fit (the gain is what a dB-relative-to-max file or an unknown amplitude
scaling leaves open).  Ambiguous inputs must say "cannot tell".
"""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.signal as ss

from programs import run_program
from stream.cli import build_parser
from stream.cli.probe import apply_probe, report
from stream.probe import consistency, probe
from stream.spec import SpecError, STFTSpec

ROOT = Path(__file__).resolve().parent.parent
SPEECH = Path("/usr/share/sounds/alsa/Rear_Center.wav")   # speech at both ends of the clip


# ----------------------------------------------------------------- signals
def speech(seconds=1.0):
    """A real recording (48 kHz speech), cut to ``seconds``; a chirp if absent."""
    if SPEECH.exists():
        import soundfile as sf
        x, sr = sf.read(SPEECH, dtype="float32", always_2d=True)
        x = x[:, 0]
        start = min(4800, max(len(x) - int(seconds * sr), 0))
        return x[start:start + int(seconds * sr)].copy()
    return chirp(seconds)


def chirp(seconds=1.5, sr=48000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * ss.chirp(t, 60, seconds, 12000, method="logarithmic")).astype(np.float32)


def noise(seconds=1.0, sr=48000, seed=1):
    return (0.2 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


def frames_np(x, n, hop, window=None):
    """Hand-rolled STFT: uncentred frames x[t*hop : t*hop+n], rfft, frames x bins."""
    w = np.ones(n) if window is None else window
    t = 1 + (len(x) - n) // hop
    return np.fft.rfft(np.stack([x[i * hop:i * hop + n] * w for i in range(t)]), axis=1)


# ------------------------------------------------------------------ makers
# Each maker writes files into a directory and returns (argv files, original
# signal, expected findings).

def make_librosa_db(d):
    import librosa
    x = speech()
    X = librosa.stft(x, n_fft=2048, hop_length=512)            # hann, centre, 75 %
    np.save(d / "spectrogram.npy", librosa.amplitude_to_db(np.abs(X), ref=np.max, top_db=80))
    np.save(d / "phases.npy", np.angle(X))
    # phase first: the probe must find the roles itself
    return ["phases.npy", "spectrogram.npy"], x, dict(
        layout="bins-frames", n_fft=2048, hop_length=512, window="hann", center=True,
        magnitude="db", phase_unit="rad", onesided=True)


def make_scipy_npz(d):
    x = speech()
    _, _, Z = ss.stft(x, nperseg=1024, noverlap=512, window="hamming")   # 50 %, 'spectrum'
    np.savez(d / "arrays.npz", b=np.degrees(np.angle(Z)).T, a=np.abs(Z).T)   # frames x bins
    return ["arrays.npz"], x, dict(
        layout="frames-bins", n_fft=1024, hop_length=512, window="hamming", center=True,
        magnitude="linear", phase_unit="deg", scaling="window-sum")


def make_shorttimefft(d):
    x = speech()
    S = ss.ShortTimeFFT(ss.get_window("hann", 512), hop=128, fs=48000)   # 75 %
    np.save(d / "z.npy", S.stft(x).astype(np.complex64))
    return ["z.npy"], x, dict(
        layout="bins-frames", n_fft=512, hop_length=128, window="hann", center=True,
        phase_origin="window-center", first_frame=S.p_min, magnitude="linear")


def make_torch_raw(d):
    import torch
    x = speech()
    X = torch.stft(torch.from_numpy(x), 4096, 1024, window=torch.blackman_window(4096),
                   center=True, normalized=True, return_complex=True).numpy()
    (np.abs(X) ** 2).astype("<f4").tofile(d / "power.bin")             # bins x frames
    np.mod(np.angle(X), 2 * np.pi).astype("<f4").tofile(d / "phase.bin")  # [0, 2 pi)
    return ["power.bin", "phase.bin"], x, dict(
        layout="bins-frames", n_fft=4096, hop_length=1024, window="blackman", center=True,
        magnitude="power", phase_unit="rad", dtype="float32", bins=2049, scaling="sqrt-n")


def make_numpy_rect25_csv(d):
    x = speech()
    F = frames_np(x, 256, 192)                                       # 25 % overlap
    np.savetxt(d / "mag.csv", np.abs(F), delimiter=",")
    np.savetxt(d / "phase.csv", np.angle(F) / (2 * np.pi), delimiter=",")
    return ["mag.csv", "phase.csv"], x, dict(
        layout="frames-bins", n_fft=256, hop_length=192, window="rectangular", center=False,
        magnitude="linear", phase_unit="cycles")


def make_numpy_rect50_twosided(d):
    x = chirp()
    F = np.fft.fft(np.stack([x[i:i + 512] for i in range(0, len(x) - 512 + 1, 256)]), axis=1)
    np.save(d / "full.npy", F.T.astype(np.complex64))                  # 512 bins x frames
    return ["full.npy"], x, dict(
        layout="bins-frames", n_fft=512, onesided=False, hop_length=256, window="rectangular",
        center=False)


def make_librosa_power_f64be(d):
    import librosa
    x = noise()
    X = librosa.stft(x, n_fft=1024, hop_length=256, window="hamming", center=False)
    (np.abs(X.T) ** 2).astype(">f8").tofile(d / "p.dat")               # frames x bins
    np.angle(X.T).astype(">f8").tofile(d / "a.dat")
    return ["p.dat", "a.dat"], x, dict(
        layout="frames-bins", n_fft=1024, hop_length=256, window="hamming", center=False,
        magnitude="power", dtype="float64be", bins=513)


def make_torch_db_deg_csv(d):
    import torch
    x = chirp()
    X = torch.stft(torch.from_numpy(x), 256, 128, window=torch.hann_window(256),
                   return_complex=True).numpy()                        # 50 %, reflect padding
    np.savetxt(d / "db.csv", 20 * np.log10(np.maximum(np.abs(X), 1e-10)), delimiter=",")
    np.savetxt(d / "deg.csv", np.degrees(np.angle(X)), delimiter=",")
    return ["deg.csv", "db.csv"], x, dict(
        layout="bins-frames", n_fft=256, hop_length=128, window="hann", center=True,
        magnitude="db", phase_unit="deg")


def make_sfft_magnitude_rect(d):
    x = noise(seed=3)
    S = ss.ShortTimeFFT(np.ones(2048), hop=1024, fs=48000, scale_to="magnitude")  # 50 %
    Z = S.stft(x)
    np.savez(d / "pair.npz", magnitude=np.abs(Z), phase=np.angle(Z))
    return ["pair.npz"], x, dict(
        n_fft=2048, hop_length=1024, window="rectangular", phase_origin="window-center",
        first_frame=S.p_min, scaling="window-sum")


def make_librosa_log_complexraw(d):
    import librosa
    x = speech()
    X = librosa.stft(x, n_fft=400, hop_length=100, window="hann")      # odd 400/4
    X.T.astype("<c8").tofile(d / "bins.raw")                           # frames x bins
    return ["bins.raw"], x, dict(
        layout="frames-bins", n_fft=400, hop_length=100, window="hann", center=True,
        dtype="complex64", bins=201)


def make_torch_view_as_real(d):
    import torch
    x = noise(seed=5)
    X = torch.stft(torch.from_numpy(x), 2048, 1536, window=torch.hamming_window(2048),
                   center=False, return_complex=True)                  # 25 % overlap
    np.save(d / "ri.npy", torch.view_as_real(X).numpy())               # bins x frames x 2
    return ["ri.npy"], x, dict(
        layout="bins-frames", n_fft=2048, hop_length=1536, window="hamming", center=False,
        input="complex")


def make_real_imag_npz(d):
    x = speech()
    F = frames_np(x, 1024, 512, ss.get_window("blackman", 1024))       # 50 %
    np.savez(d / "parts.npz", im=F.imag, re=F.real)                    # frames x bins
    return ["parts.npz"], x, dict(
        layout="frames-bins", n_fft=1024, hop_length=512, window="blackman", center=False,
        input="real+imag")


def make_torch_reflect_frames_bins(d):
    import torch
    x = speech()
    X = torch.stft(torch.from_numpy(x), 2048, 1536, window=torch.hann_window(2048),
                   return_complex=True).numpy()          # 25 %, 32 frames, reflect padding
    np.save(d / "p.npy", (np.abs(X) ** 2).T)            # the first frame is real too:
    np.save(d / "a.npy", np.mod(np.angle(X), 2 * np.pi).T)   # only consistency tells the axes
    return ["p.npy", "a.npy"], x, dict(
        layout="frames-bins", n_fft=2048, hop_length=1536, window="hann", center=True,
        magnitude="power")


def make_scipy_short_window(d):
    x = speech()
    _, _, Z = ss.stft(x, nperseg=256, nfft=512, noverlap=128, window="hann")  # window at the start
    np.save(d / "z.npy", Z)
    return ["z.npy"], x, dict(n_fft=512, win_length=256, window_align="left", hop_length=128,
                              window="hann", center=True, scaling="window-sum")


def make_librosa_short_window(d):
    import librosa
    x = speech()
    X = librosa.stft(x, n_fft=512, win_length=400, hop_length=160, window="hamming")
    np.save(d / "m.npy", np.abs(X))
    np.save(d / "p.npy", np.angle(X))
    return ["m.npy", "p.npy"], x, dict(n_fft=512, win_length=400, window_align="center",
                                       hop_length=160, window="hamming", center=True)


def make_scipy_transposed_pair(d):
    x = speech()
    _, _, Z = ss.stft(x, nperseg=1024, noverlap=768, window="blackman")   # 75 %, bins x frames
    np.save(d / "mag.npy", np.abs(Z).T)                  # frames x bins
    np.save(d / "phase.npy", np.angle(Z))                # bins x frames: the same frames transposed
    return ["mag.npy", "phase.npy"], x, dict(
        layout="frames-bins", phase_layout="bins-frames", n_fft=1024, hop_length=256,
        window="blackman", input="magnitude+phase", phase_unit="rad")


CASES = {
    "scipy-blackman75-mag-phase-transposed": make_scipy_transposed_pair,
    "scipy-nperseg256-nfft512": make_scipy_short_window,
    "librosa-n512-win400-hop160": make_librosa_short_window,
    "torch-hann25-reflect-frames-bins": make_torch_reflect_frames_bins,
    "torch-view-as-real-hamming25": make_torch_view_as_real,
    "numpy-real-imag-npz-blackman50": make_real_imag_npz,
    "librosa-db-top80-npy-swapped": make_librosa_db,
    "scipy-stft-hamming50-npz-deg": make_scipy_npz,
    "scipy-shorttimefft-complex": make_shorttimefft,
    "torch-blackman-power-raw-2pi": make_torch_raw,
    "numpy-rect25-csv-cycles": make_numpy_rect25_csv,
    "numpy-rect50-twosided": make_numpy_rect50_twosided,
    "librosa-hamming-power-f64be": make_librosa_power_f64be,
    "torch-hann-db-deg-csv": make_torch_db_deg_csv,
    "shorttimefft-magnitude-rect": make_sfft_magnitude_rect,
    "librosa-n400-complex-raw": make_librosa_log_complexraw,
}


def snr_after_gain(ref, out, edge):
    """SNR in dB of ``out`` against ``ref`` after the least-squares gain, away from the edges."""
    n = min(len(ref), len(out))
    a, b = ref[edge:n - edge].astype(np.float64), out[edge:n - edge].astype(np.float64)
    g = (a @ b) / max(b @ b, 1e-300)
    return 10 * np.log10((a @ a) / max(((a - g * b) ** 2).sum(), 1e-300))


def run_cli(*argv, cwd):
    return run_program(argv, cwd=cwd)


# ------------------------------------------------------------------- tests
@pytest.mark.parametrize("case", sorted(CASES))
def test_probe_names_parameters_and_auto_reconstructs(case, tmp_path):
    files, x, want = CASES[case](tmp_path)
    res = probe(*[tmp_path / f for f in files])
    assert res.ok, report(res)
    got = {k: res.value(k) for k in want}
    assert got == want, report(res)
    assert res.candidates[0].consistency < 1e-3, report(res)
    r = run_cli("reconstruct", *files, "--auto", "-o", "out.wav", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import soundfile as sf
    y, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    assert len(x) - want["n_fft"] <= len(y) <= len(x) + 2 * want["n_fft"]
    assert snr_after_gain(x, y, edge=want["n_fft"]) > 40


def test_magnitude_only_cannot_tell(tmp_path):
    import librosa
    X = librosa.stft(speech(), n_fft=1024, hop_length=256)
    np.save(tmp_path / "mag.npy", np.abs(X))
    res = probe(tmp_path / "mag.npy")
    assert not res.ok
    assert res.confidence("hop_length") == 0 and res.value("hop_length") is None
    assert any("phase" in p for p in res.problems)
    r = run_cli("reconstruct", "mag.npy", "--auto", "-o", "o.wav", cwd=tmp_path)
    assert r.returncode == 2 and "cannot tell" in r.stderr and "--hop-length" in r.stderr


def test_magnitude_only_with_known_hop_and_window_is_enough(tmp_path):
    np.save(tmp_path / "mag.npy", np.abs(frames_np(chirp(), 512, 128, ss.get_window("hann", 512))))
    res = probe(tmp_path / "mag.npy", known={"hop_length": 128, "window": "hann"})
    assert res.ok and res.value("layout") == "frames-bins" and res.value("n_fft") == 512


@pytest.mark.parametrize("kind", ["complex", "mag+phase"])
def test_random_noise_cannot_tell(kind, tmp_path):
    rng = np.random.default_rng(7)
    z = rng.standard_normal((513, 120)) + 1j * rng.standard_normal((513, 120))
    if kind == "complex":
        np.save(tmp_path / "z.npy", z)
        files = ["z.npy"]
    else:
        np.save(tmp_path / "m.npy", np.abs(z))
        np.save(tmp_path / "p.npy", np.angle(z))
        files = ["m.npy", "p.npy"]
    res = probe(*[tmp_path / f for f in files])
    assert not res.ok
    assert res.confidence("hop_length") == 0 and res.confidence("window") == 0
    assert res.problems and "--hop-length" in " ".join(res.problems)
    r = run_cli("reconstruct", *files, "--auto", "-o", "o.wav", cwd=tmp_path)
    assert r.returncode == 2 and "cannot tell" in r.stderr
    r = run_cli("probe", *files, cwd=tmp_path)
    assert "cannot tell:" in r.stdout and "reconstruct with" not in r.stdout
    r = run_cli("probe", *files, "--json", cwd=tmp_path)
    out = json.loads(r.stdout)
    assert out["ok"] is False and out["command"] is None and out["hop_length"] is None


def test_progress_appears_only_after_a_second(tmp_path, monkeypatch):
    import stream.probe as sp
    make_scipy_npz(tmp_path)
    bars = []

    class Bar:
        def __init__(self, total, desc, unit):
            self.n = 0
            bars.append(self)

        def update(self, n):
            self.n += n

        def close(self):
            self.closed = True

    monkeypatch.setattr(sp.time, "perf_counter", lambda: 0.0)   # a probe that takes no time
    probe(tmp_path / "arrays.npz", progress=Bar)
    assert bars == []
    clock = iter(range(0, 10 ** 6, 2))                      # every reading 2 s later
    monkeypatch.setattr(sp.time, "perf_counter", lambda: next(clock))
    probe(tmp_path / "arrays.npz", progress=Bar)
    assert len(bars) == 1 and bars[0].n > 0 and bars[0].closed


def test_too_short_cannot_tell(tmp_path):
    import librosa
    X = librosa.stft(speech(0.2), n_fft=1024, hop_length=256)[:, :2]
    np.save(tmp_path / "z.npy", X)
    res = probe(tmp_path / "z.npy")
    assert not res.ok and res.value("n_fft") == 1024
    assert any("too short" in p for p in res.problems)


def test_known_length_confirms_hop(tmp_path):
    files, x, _ = make_librosa_db(tmp_path)
    res = probe(*[tmp_path / f for f in files], known={"length": len(x)})
    assert "confirmed" in res.findings["hop_length"].evidence
    res = probe(*[tmp_path / f for f in files], known={"length": len(x) + 5000})
    assert res.confidence("hop_length") <= 0.4 and res.problems


def test_known_parameters_constrain_and_explicit_flags_win(tmp_path):
    make_scipy_npz(tmp_path)
    path = str(tmp_path / "arrays.npz")
    args = build_parser().parse_args(["reconstruct", path, "--auto", "-o", "o.wav",
                                      "--hop-length", "512", "--scaling", "none",
                                      "--sample-rate", "48000"])
    res = apply_probe(args)
    assert res.value("scaling") == "none" and res.confidence("scaling") > 1   # taken as known
    assert args.hop_length == 512 and args.sample_rate == 48000       # given: kept
    assert args.scaling == "none"                                     # the probe would say window-sum
    assert args.window == "hamming" and args.n_fft == 1024            # probed: filled
    assert args.layout == "frames-bins" and args.phase_unit == "deg"
    assert args.mag_key == "a" and args.phase_key == "b"
    # with a wrong hop forced, nothing is consistent and the probe says so
    assert probe(path).value("scaling") == "window-sum"
    res = probe(path, known={"hop_length": 256})
    assert not res.ok and res.confidence("window") == 0
    assert not res.candidates[0].consistency < 0.02


def test_swapped_files_are_swapped_back(tmp_path):
    files, _, _ = make_librosa_db(tmp_path)
    args = build_parser().parse_args(["reconstruct", *[str(tmp_path / f) for f in files],
                                      "--auto", "-o", "o.wav"])
    apply_probe(args)
    assert args.mag.endswith("spectrogram.npy") and args.phase.endswith("phases.npy")
    assert args.magnitude == "db" and args.center is True


def test_probe_json_and_plot(tmp_path):
    make_scipy_npz(tmp_path)
    r = run_cli("probe", "arrays.npz", "--json", "--plot", "p.png", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("layout", "n_fft", "onesided", "hop_length", "win_length", "window", "center",
                "magnitude", "db_ref", "phase_unit", "scaling", "consistency", "confidence"):
        assert key in out
    assert out["hop_length"] == 512 and out["window"] == "hamming" and out["consistency"] < 1e-3
    assert out["command"].startswith("specstream reconstruct arrays.npz")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_gives_a_command_that_works(tmp_path):
    files, x, want = make_torch_raw(tmp_path)
    r = run_cli("probe", *files, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.strip().startswith("specstream reconstruct")]
    assert line, r.stdout
    argv = line[0].split("#")[0].split()[2:]
    argv[argv.index("OUT.wav")] = "o.wav"
    r2 = run_cli("reconstruct", *argv, "-q", cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr
    import soundfile as sf
    y, _ = sf.read(tmp_path / "o.wav", dtype="float32")
    assert snr_after_gain(x, y, edge=4096) > 40


@pytest.mark.parametrize("window,hop", [("hann", 256), ("blackman", 128), ("rectangular", 768)])
def test_consistency_near_zero_only_for_the_right_spec(window, hop):
    x = noise(0.5)
    spec = STFTSpec(n_fft=1024, hop_length=hop, window=window, center=False)
    X = frames_np(x, 1024, hop, spec.window_values)
    assert consistency(X, spec) < 1e-6
    assert consistency(X, spec.replace(hop_length=hop + 8)) > 1e-2
    other = "hamming" if window != "hamming" else "hann"
    assert consistency(X, spec.replace(window=other)) > 1e-2


def test_unreadable_raw_file_is_an_error(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\xff" * 4001)     # no dtype divides 4001 bytes usefully
    with pytest.raises(SpecError):
        probe(tmp_path / "x.bin")


@pytest.mark.parametrize("unit", ["linear", "power", "db", "db-power", "log"])
def test_magnitude_units(unit, tmp_path):
    x = speech()
    F = frames_np(x, 1024, 256, ss.get_window("hann", 1024))
    m = np.abs(F)
    stored = {"linear": m, "power": m ** 2, "db": 20 * np.log10(m + 1e-12),
              "db-power": 10 * np.log10(m ** 2 + 1e-24), "log": np.log(m + 1e-12)}[unit]
    np.save(tmp_path / "m.npy", stored)
    np.save(tmp_path / "p.npy", np.angle(F))
    res = probe(tmp_path / "m.npy", tmp_path / "p.npy")
    # 20 log10 |X| and 10 log10 |X|^2 are the same numbers: both read as 'db'
    assert res.value("magnitude") == ("db" if unit == "db-power" else unit), report(res)
    assert res.ok and res.value("hop_length") == 256 and res.value("center") is False


def test_known_win_length_shorter_than_n_fft(tmp_path):   # given, and found alike
    import librosa
    X = librosa.stft(speech(), n_fft=512, win_length=400, hop_length=160)
    np.save(tmp_path / "z.npy", X)
    res = probe(tmp_path / "z.npy", known={"win_length": 400})
    assert res.ok and res.value("hop_length") == 160 and res.value("window") == "hann"
    assert res.candidates[0].consistency < 1e-3


def test_scalars_stored_in_npz_are_used_and_checked(tmp_path):
    import librosa
    x = speech()
    X = librosa.stft(x, n_fft=1024, hop_length=256)
    np.savez(tmp_path / "s.npz", S=np.abs(X), P=np.angle(X), sr=48000, hop_length=512)
    res = probe(tmp_path / "s.npz")
    assert res.value("sample_rate") == 48000
    assert res.value("hop_length") == 256                 # the frames win over the label
    assert any("hop_length=512" in p for p in res.problems)
    args = build_parser().parse_args(["reconstruct", str(tmp_path / "s.npz"), "--auto",
                                      "-o", "o.wav", "-q"])
    apply_probe(args)
    assert args.sample_rate == 48000 and args.mag_key == "S" and args.phase_key == "P"


def test_quiet_edges_leave_centre_a_guess_until_the_length_is_known(tmp_path):
    import librosa
    import soundfile as sf
    path = Path("/usr/share/sounds/alsa/Front_Center.wav")   # silence at both ends
    x = sf.read(path, dtype="float32")[0] if path.exists() else np.pad(chirp(1.0), 4000)
    X = librosa.stft(x, n_fft=2048, hop_length=512)
    np.save(tmp_path / "m.npy", librosa.amplitude_to_db(np.abs(X), ref=np.max))
    np.save(tmp_path / "p.npy", np.angle(X))
    res = probe(tmp_path / "m.npy", tmp_path / "p.npy")
    assert res.value("hop_length") == 512 and res.confidence("center") < 0.5
    res = probe(tmp_path / "m.npy", tmp_path / "p.npy", known={"length": len(x)})
    assert res.value("center") is True and res.confidence("center") >= 0.9


def test_unwrapped_phase_is_read_as_radians(tmp_path):
    import librosa
    X = librosa.stft(speech(), n_fft=1024, hop_length=256)
    np.save(tmp_path / "ph.npy", np.unwrap(np.angle(X), axis=1))   # along time, per bin
    np.save(tmp_path / "db.npy", librosa.amplitude_to_db(np.abs(X)))
    res = probe(tmp_path / "ph.npy", tmp_path / "db.npy")
    assert res.ok, report(res)
    assert res.value("phase_file").endswith("ph.npy") and res.value("phase_unit") == "rad"
    assert res.value("hop_length") == 256 and res.value("magnitude") == "db"


# -------------------------------------------- layouts that differ, lost level
FRONT = Path("/usr/share/sounds/alsa/Front_Center.wav")


def make_db_max_deg_transposed(d):
    """The README journey: dB relative to the maximum (bins x frames) and
    degrees saved frames x bins by another tool."""
    import librosa
    import soundfile as sf
    x = sf.read(FRONT, dtype="float32")[0] if FRONT.exists() else np.pad(chirp(1.0), 4000)
    S = librosa.stft(x, n_fft=2048, hop_length=512, window="hamming")
    np.save(d / "spectrogram.npy", librosa.amplitude_to_db(np.abs(S), ref=np.max))
    np.save(d / "phases.npy", np.degrees(np.angle(S)).T)
    np.save(d / "phases_same.npy", np.degrees(np.angle(S)))
    return x


def _one_command(stdout):
    line = [ln for ln in stdout.splitlines() if ln.strip().startswith("specstream reconstruct")]
    assert len(line) == 1, stdout
    return line[0].split("#")[0].split()[2:]


def test_transposed_pair_is_probed_and_auto_reconstructs(tmp_path):
    import soundfile as sf
    x = make_db_max_deg_transposed(tmp_path)
    shape = np.load(tmp_path / "spectrogram.npy").shape
    assert np.load(tmp_path / "phases.npy").shape == shape[::-1] != shape
    res = probe(tmp_path / "phases.npy", tmp_path / "spectrogram.npy")
    assert res.ok, report(res)
    assert res.value("input") == "magnitude+phase", report(res)
    assert res.value("mag_file").endswith("spectrogram.npy"), report(res)
    assert res.value("phase_file").endswith("phases.npy"), report(res)
    assert (res.value("layout"), res.value("phase_layout")) == ("bins-frames", "frames-bins")
    got = {k: res.value(k) for k in ("n_fft", "hop_length", "window", "magnitude", "phase_unit")}
    assert got == dict(n_fft=2048, hop_length=512, window="hamming", magnitude="db",
                       phase_unit="deg"), report(res)
    assert res.candidates[0].consistency < 1e-3
    r = run_cli("reconstruct", "phases.npy", "spectrogram.npy", "--auto", "-o", "out.wav",
                "-r", "48000", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    y, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    assert len(x) - 2048 <= len(y) <= len(x) + 4096
    assert snr_after_gain(x, y, edge=2048) > 40
    # the command line the report prints works as it stands
    r = run_cli("probe", "phases.npy", "spectrogram.npy", cwd=tmp_path)
    assert r.returncode == 0 and "phase_layout" in r.stdout, r.stderr
    argv = _one_command(r.stdout)
    argv[argv.index("OUT.wav")] = "printed.wav"
    r2 = run_cli("reconstruct", *argv, "-q", cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr
    y2, _ = sf.read(tmp_path / "printed.wav", dtype="float32")
    assert snr_after_gain(x, y2, edge=2048) > 40
    out = json.loads(run_cli("probe", "phases.npy", "spectrogram.npy", "--json", "-q",
                             cwd=tmp_path).stdout)
    assert out["phase_layout"] == "frames-bins" and out["level_lost"]


def test_plain_reconstruct_reads_a_transposed_phase_like_the_same_layout(tmp_path):
    import soundfile as sf
    make_db_max_deg_transposed(tmp_path)
    flags = ["--layout", "bins-frames", "--n-fft", "2048", "--hop-length", "512", "--window",
             "hamming", "--magnitude", "db", "--phase-unit", "deg", "-r", "48000", "-q"]
    out = {}
    for name in ("phases.npy", "phases_same.npy"):
        r = run_cli("reconstruct", "spectrogram.npy", name, "-o", f"{name}.wav", *flags,
                    cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        out[name] = sf.read(tmp_path / f"{name}.wav", dtype="float32")[0]
    assert np.abs(out["phases_same.npy"]).max() > 1e-3
    np.testing.assert_array_equal(out["phases.npy"], out["phases_same.npy"])


@pytest.mark.parametrize("command", [["probe"], ["reconstruct", "-o", "o.wav", "-r", "48000"],
                                     ["reconstruct", "--auto", "-o", "o.wav"]])
def test_files_that_cannot_be_paired_are_an_error(command, tmp_path):
    make_db_max_deg_transposed(tmp_path)
    np.save(tmp_path / "other.npy", np.random.default_rng(0).uniform(-np.pi, np.pi, (100, 300)))
    r = run_cli(command[0], "spectrogram.npy", "other.npy", *command[1:], cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"specstream {command[0]}: error:"), r.stderr
    assert "(1025, 134)" in lines[0] and "(100, 300)" in lines[0]
    assert not (tmp_path / "o.wav").exists()


def test_lost_level_is_normalized_to_minus_1_dbfs(tmp_path):
    import soundfile as sf
    make_db_max_deg_transposed(tmp_path)
    r = run_cli("reconstruct", "spectrogram.npy", "phases_same.npy", "--auto", "-o", "o.wav",
                "-r", "48000", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "level is lost" in r.stderr and "--normalize -1" in r.stderr, r.stderr
    y, _ = sf.read(tmp_path / "o.wav", dtype="float32")
    assert abs(20 * np.log10(np.abs(y).max()) - (-1.0)) < 0.01
    # a --normalize the user gave wins
    r = run_cli("reconstruct", "spectrogram.npy", "phases_same.npy", "--auto", "-o", "o6.wav",
                "--normalize", "-6", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    y, _ = sf.read(tmp_path / "o6.wav", dtype="float32")
    assert abs(20 * np.log10(np.abs(y).max()) - (-6.0)) < 0.01
    # --magnitude db given: the values are still relative to their maximum
    args = build_parser().parse_args(["reconstruct", str(tmp_path / "spectrogram.npy"),
                                      str(tmp_path / "phases_same.npy"), "--auto", "-o", "x.wav",
                                      "--magnitude", "db", "-q"])
    apply_probe(args)
    assert args.normalize == -1.0
    # a level the files do carry is left alone
    make_scipy_npz(tmp_path)
    args = build_parser().parse_args(["reconstruct", str(tmp_path / "arrays.npz"), "--auto",
                                      "-o", "x.wav", "-q"])
    res = apply_probe(args)
    assert res.level_lost is None and args.normalize is None


@pytest.mark.parametrize("make", [make_scipy_short_window, make_shorttimefft, make_scipy_npz,
                                  make_db_max_deg_transposed])
def test_printed_command_is_what_auto_does_and_what_to_spec_says(make, tmp_path):
    from stream.cli.common import encoding_from_args, spec_from_args
    from stream.cli.probe import command_line
    make(tmp_path)
    files = {make_db_max_deg_transposed: ["spectrogram.npy", "phases.npy"]}.get(
        make, [p.name for p in tmp_path.iterdir()])
    paths = [str(tmp_path / f) for f in files]
    res = probe(*paths)
    printed = command_line(res).split("#")[0].split()[2:]
    printed = build_parser().parse_args(["reconstruct", *printed])
    auto = build_parser().parse_args(["reconstruct", *paths, "--auto", "-o", "OUT.wav", "-q",
                                      "-r", f"{res.to_spec().sample_rate:g}"])
    apply_probe(auto)
    for name in ("mag", "phase", "mag_key", "phase_key", "layout", "dtype", "bins", "preset",
                 "normalize"):
        assert getattr(printed, name) == getattr(auto, name), name
    # the same frames (a full-length window's placement is moot)
    frame = lambda s: (s.describe(), s.first_frame, tuple(s.padded_window))   # noqa: E731
    assert frame(spec_from_args(printed)) == frame(spec_from_args(auto)) == frame(res.to_spec())
    assert encoding_from_args(printed) == encoding_from_args(auto) == res.to_encoding()


def test_to_spec_says_what_cannot_be_told(tmp_path):
    np.save(tmp_path / "mag.npy", np.abs(frames_np(chirp(), 512, 128)))
    with pytest.raises(SpecError, match="hop_length"):
        probe(tmp_path / "mag.npy").to_spec()
    spec = probe(tmp_path / "mag.npy", known={"hop_length": 128, "window": "hann"}).to_spec(48000)
    assert (spec.n_fft, spec.hop_length, spec.sample_rate) == (512, 128, 48000)
