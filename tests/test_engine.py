"""The inverse STFT engine against scipy, librosa and torch, and streaming == block == whole.

Every round trip starts from a real recording (ALSA's Front_Center.wav, 1 s at
48 kHz) plus a little white noise, so that every bin carries energy.  Each
library makes the frames its own way; our engine, told the library's
conventions with ``stream.preset``, must give the library's own inverse (to
1e-5 of peak) and the original signal (SNR > 90 dB), both through
``stream.istft`` (one block) and through ``Reconstructor`` fed one frame at a time.
"""

from pathlib import Path

import numpy as np
import pytest
import scipy.signal as ss
import soundfile as sf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import stream
from stream import Reconstructor, STFTSpec, SpecError, preset

RECORDING = Path("/usr/share/sounds/alsa/Front_Center.wav")


@pytest.fixture(scope="module")
def audio():
    """~1 s of a real recording (float64) plus noise at -40 dB re its peak."""
    if RECORDING.exists():
        data, sr = sf.read(RECORDING, dtype="float64")
        data = data if data.ndim == 1 else data[:, 0]
    else:  # pragma: no cover - a machine without alsa-utils' sounds
        sr = 48000
        t = np.arange(sr) / sr
        data = 0.5 * np.sin(2 * np.pi * 440 * t) * np.exp(-t)
    x = data[:48000].copy()
    x += 0.01 * np.abs(x).max() * np.random.default_rng(0).standard_normal(len(x))
    return x, sr


# ---------------------------------------------------------------- helpers
def snr_db(ref, y):
    n = min(len(ref), len(y))
    err = np.sum((ref[:n] - y[:n]) ** 2)
    return 10 * np.log10(np.sum(ref[:n] ** 2) / max(err, 1e-300))


def frame_by_frame(frames_tb, spec, length=None, dtype=np.float64):
    """Frames (n_frames, bins) or (channels, n_frames, bins), pushed one at a time."""
    r = Reconstructor(spec, length=length, dtype=dtype)
    if frames_tb.ndim == 2:
        outs = [r.push(f) for f in frames_tb]
    else:
        outs = [r.push(frames_tb[:, t, :]) for t in range(frames_tb.shape[1])]
    outs.append(r.flush())
    return np.concatenate(outs, axis=-1)


def check_inverse(frames_tb, spec, lib_inverse, original, length=None, interior=None,
                  dtype=np.float64, snr_min=90.0):
    """Block and frame-by-frame inverses equal the library's and give back the original."""
    peak = np.abs(original).max()
    sl = slice(None) if interior is None else interior
    for name, y in (("block", stream.istft(frames_tb, spec, length=length, dtype=dtype)),
                    ("frame-by-frame", frame_by_frame(frames_tb, spec, length, dtype))):
        assert y.shape == lib_inverse.shape, f"{name}: shape {y.shape} != {lib_inverse.shape}"
        diff = np.abs(y[..., sl] - lib_inverse[..., sl]).max() / peak
        assert diff <= 1e-5, f"{name}: max |ours - library| = {diff:.2e} of peak"
        n = min(y.shape[-1], original.shape[-1])
        got = snr_db(original[..., :n][..., sl].ravel(), y[..., :n][..., sl].ravel())
        assert got > snr_min, f"{name}: SNR {got:.1f} dB against the original"


def wss_interior(spec, n_frames, n_out, rel=1e-3):
    """Samples (of a center=False inverse) whose window-sum-square is well above zero."""
    w2 = spec.padded_window ** 2
    h = spec.hop_length
    total = np.zeros((n_frames - 1) * h + spec.n_fft)
    for t in range(n_frames):
        total[t * h:t * h + spec.n_fft] += w2
    good = np.flatnonzero(total[:n_out] > rel * total.max())
    return slice(good[0], good[-1] + 1)


# ------------------------------------------------------------------ scipy
SCIPY_CASES = [  # nperseg, noverlap, nfft, window
    (256, None, None, "hann"),          # scipy's defaults
    (512, 384, None, "hann"),
    (400, 300, 512, "hamming"),         # nfft > nperseg: segment zero-padded at its end
    (256, 192, None, "blackman"),
    (300, 150, 1024, "hann"),
    (255, 128, None, "boxcar"),         # odd length, rectangular
]


@pytest.mark.parametrize("nperseg,noverlap,nfft,window", SCIPY_CASES)
def test_scipy_stft_round_trip(audio, nperseg, noverlap, nfft, window):
    x, sr = audio
    _, _, Z = ss.stft(x, fs=sr, nperseg=nperseg, noverlap=noverlap, nfft=nfft, window=window)
    _, x_lib = ss.istft(Z, fs=sr, nperseg=nperseg, noverlap=noverlap, nfft=nfft, window=window)
    hop = nperseg - (nperseg // 2 if noverlap is None else noverlap)
    ours_window = {"boxcar": "rectangular"}.get(window, window)
    spec = preset("scipy", n_fft=nfft or nperseg, win_length=nperseg, hop_length=hop,
                  window=ours_window, sample_rate=sr)
    assert spec.scaling == "window-sum" and spec.window_align == "left"
    # scipy's istft returns the padded length (a multiple of the hop), as we do.
    check_inverse(Z.T, spec, x_lib, x)


def test_scipy_stft_no_boundary(audio):
    # boundary=None, padded=False: frames start at sample 0 (center=False).
    x, sr = audio
    _, _, Z = ss.stft(x, nperseg=256, noverlap=192, boundary=None, padded=False)
    with pytest.warns(UserWarning):   # scipy warns about its zero-envelope first sample
        _, x_lib = ss.istft(Z, nperseg=256, noverlap=192, boundary=False)
    spec = preset("scipy", n_fft=256, hop_length=64, center=False)
    # Sample 0 has hann's zero there: scipy and we both leave it at 0.
    check_inverse(Z.T, spec, x_lib, x, interior=slice(1, None))


# ----------------------------------------------------------- ShortTimeFFT
@pytest.mark.parametrize("scale_to,scaling", [(None, "none"), ("magnitude", "window-sum"),
                                              ("psd", "psd")])
@pytest.mark.parametrize("nw,hop,mfft,window", [(512, 128, None, "hann"),
                                                (1024, 256, None, "hann"),
                                                (400, 100, 512, "hamming"),
                                                (300, 150, None, "blackman")])
def test_short_time_fft_round_trip(audio, scale_to, scaling, nw, hop, mfft, window):
    x, sr = audio
    sft = ss.ShortTimeFFT(ss.get_window(window, nw), hop, fs=sr, mfft=mfft, scale_to=scale_to)
    assert sft.phase_shift == 0        # the default: phase referred to the window centre
    S = sft.stft(x)
    x_lib = sft.istft(S, k1=len(x))
    spec = preset("scipy-sfft", n_fft=mfft or nw, win_length=nw, hop_length=hop,
                  window=window, scaling=scaling, sample_rate=sr)
    assert spec.first_frame == sft.p_min
    check_inverse(S.T, spec, x_lib, x, length=len(x))


# ---------------------------------------------------------------- librosa
LIBROSA_CASES = [  # n_fft, hop, window, win_length, center
    (2048, None, "hann", None, True),    # librosa's defaults
    (1024, 256, "hamming", 800, True),
    (512, 128, "blackman", None, True),
    (1024, 300, "hann", 700, True),
    (256, 64, "hann", None, False),
    (512, 128, "blackman", None, False),
    (1023, 255, "hann", None, True),     # odd n_fft
]


@pytest.mark.parametrize("n_fft,hop,window,win_length,center", LIBROSA_CASES)
def test_librosa_round_trip(audio, n_fft, hop, window, win_length, center):
    import librosa
    x, _ = audio
    D = librosa.stft(x, n_fft=n_fft, hop_length=hop, window=window, win_length=win_length,
                     center=center)
    assert D.dtype == np.complex128
    spec = preset("librosa", n_fft=n_fft, hop_length=hop, window=window,
                  win_length=win_length, center=center)
    for length in (None, len(x)):
        x_lib = librosa.istft(D, n_fft=n_fft, hop_length=hop, window=window,
                              win_length=win_length, center=center, length=length,
                              dtype=np.float64)
        interior = None
        if not center:
            # With center=False the first and last samples are covered by the
            # window's ends only.  Where the window is ~0 (hann: exactly 0, so
            # both leave 0; blackman: -1.4e-17, which librosa divides by, turning
            # FFT rounding into an arbitrary value) no inverse can say what the
            # sample was.  We compare where the window-sum-square is > 1e-3 of
            # its peak, which is everything but a few edge samples.
            interior = wss_interior(spec, D.shape[1], x_lib.shape[-1])
        check_inverse(D.T, spec, x_lib, x, length=length, interior=interior)


def test_librosa_stereo(audio):
    import librosa
    x, _ = audio
    xs = np.stack([x, -0.5 * x[::-1]])
    D = librosa.stft(xs, n_fft=1024, hop_length=256)           # (2, bins, frames)
    x_lib = librosa.istft(D, n_fft=1024, hop_length=256, dtype=np.float64)
    spec = preset("librosa", n_fft=1024, hop_length=256, channels=2)
    check_inverse(np.swapaxes(D, -1, -2), spec, x_lib, xs)


def test_librosa_float32_path(audio):
    # Our default float32 engine against librosa's float32 inverse of float32 frames.
    import librosa
    x, _ = audio
    x32 = x.astype(np.float32)
    D = librosa.stft(x32, n_fft=1024, hop_length=256)
    assert D.dtype == np.complex64
    x_lib = librosa.istft(D, n_fft=1024, hop_length=256, length=len(x))
    spec = preset("librosa", n_fft=1024, hop_length=256)
    y = stream.istft(D.T, spec, length=len(x))
    assert y.dtype == np.float32
    assert np.abs(y - x_lib).max() <= 1e-5 * np.abs(x).max()
    assert snr_db(x32, y) > 90


# ------------------------------------------------------------------ torch
TORCH_CASES = [  # n_fft, hop, window, center, normalized, win_length
    (1024, 256, "hann", True, False, None),
    (512, 128, "hamming", True, True, None),
    (400, 100, "hann", True, True, None),
    (1024, 256, "hamming", False, False, None),
    (512, 160, "hamming", False, True, None),
    (2048, 512, "hann", True, False, None),
    (512, 100, "hann", True, False, 400),     # window centred in the frame
]


@pytest.mark.parametrize("n_fft,hop,window,center,normalized,win_length", TORCH_CASES)
def test_torch_round_trip(audio, n_fft, hop, window, center, normalized, win_length):
    import torch
    x, _ = audio
    w = getattr(torch, f"{window}_window")(win_length or n_fft, dtype=torch.float64)
    xt = torch.from_numpy(x)
    Z = torch.stft(xt, n_fft, hop, win_length=win_length, window=w, center=center,
                   normalized=normalized, onesided=True, return_complex=True)  # reflect pad
    spec = preset("torch", n_fft=n_fft, hop_length=hop, window=window, center=center,
                  win_length=win_length, scaling="sqrt-n" if normalized else "none")
    frames = Z.numpy().T
    lengths = (None, len(x)) if center else (None,)
    for length in lengths:
        x_lib = torch.istft(Z, n_fft, hop, win_length=win_length, window=w, center=center,
                            normalized=normalized, onesided=True, length=length).numpy()
        # torch.istft refuses center=False with a hann window (zero envelope at
        # sample 0), hence hamming there; its envelope never reaches 0, so the
        # whole signal is compared.
        check_inverse(frames, spec, x_lib, x, length=length)


def test_torch_batch_as_channels(audio):
    import torch
    x, _ = audio
    xs = torch.from_numpy(np.stack([x, x[::-1].copy()]))
    w = torch.hann_window(512, dtype=torch.float64)
    Z = torch.stft(xs, 512, 128, window=w, return_complex=True)      # (2, bins, frames)
    x_lib = torch.istft(Z, 512, 128, window=w, length=len(x)).numpy()
    spec = preset("torch", n_fft=512, hop_length=128, channels=2)
    check_inverse(np.swapaxes(Z.numpy(), -1, -2), spec, x_lib, xs.numpy(), length=len(x))


# --------------------------------------------------- streaming == block == whole
def _frames_in_time(X, spec):
    """Each frame's inverse FFT, unwindowed, in float64: shape (channels, frames, n_fft)."""
    X = X if X.ndim == 3 else X[None]
    m = np.arange(spec.n_bins)
    factor = np.exp(-2j * np.pi * m * spec.phase_reference / spec.n_fft) / spec.scale
    return np.fft.irfft(X.astype(np.complex128) * factor, spec.n_fft, axis=-1)


def _weighted_overlap_add(pieces, weight, spec, length, fill=0.0):
    """sum_t pieces[:, t] / sum_t weight**2 at each sample, trimmed to ``length``.

    Returns the samples (one row per channel) and the sum of squares beside them,
    relative to its peak.  Samples no frame's window reaches are ``fill`` (their
    sum of squares inf)."""
    n, h = spec.n_fft, spec.hop_length
    c, T, _ = pieces.shape
    total = (T - 1) * h + n
    num = np.zeros((c, total))
    den = np.zeros(total)
    for t in range(T):
        num[:, t * h:t * h + n] += pieces[:, t]
        den[t * h:t * h + n] += weight ** 2
    ok = den > 0
    out = np.full((c, total), fill)
    out[:, ok] = num[:, ok] / den[ok]
    want = spec.samples_for(T) if length is None else length
    den = den / max(den.max(), 1e-300)
    out, den = out[:, spec.start_trim:][:, :want], den[spec.start_trim:][:want]
    if out.shape[1] < want:
        out = np.pad(out, ((0, 0), (0, want - out.shape[1])), constant_values=fill)
        den = np.pad(den, (0, want - len(den)), constant_values=np.inf)
    return (out[0] if c == 1 else out), den


def reference_istft(X, spec, length=None, rel=1e-6):
    """A plain numpy least-squares inverse (float64) straight from the definition."""
    y = _frames_in_time(X, spec) * spec.padded_window
    out, den = _weighted_overlap_add(y, spec.padded_window, spec, length)
    # Samples whose window-sum-square is tiny (the outer edges of a window
    # that tapers to ~0, with center=False) are ill-conditioned: any inverse
    # turns the rounding of the FFT into an arbitrary value there.  Mark the
    # well-conditioned ones for the comparisons (samples past every frame too).
    return out, den > rel


def rounding_scale(X, spec, length=None):
    """The scale of a sample's rounding in any inverse, per sample (float64).

    ``sum_t |w[n - tH]| max|y_t| / sum_t w[n - tH]**2``: what each frame
    ``y_t`` adds there, each at its own peak (an FFT's rounding spreads over
    the frame), divided as the inverse divides.  An inverse in a float type
    of machine epsilon ``eps`` rounds sample ``n`` by a small multiple of
    ``eps`` times this: it grows where the window-sum-square is small and
    with the number of frames a sample sums, as the rounding does.
    """
    peaks = np.abs(_frames_in_time(X, spec)).max(axis=-1, keepdims=True)
    w = np.abs(spec.padded_window)
    scale, _ = _weighted_overlap_add(peaks * w, w, spec, length, fill=np.inf)
    return scale


@st.composite
def specs(draw):
    n_fft = draw(st.integers(8, 1024))
    win = draw(st.integers(max(2, n_fft // 4), n_fft))
    hop = draw(st.integers(1, win))
    window = draw(st.sampled_from(["hann", "hamming", "blackman", "rectangular", "sine",
                                   "bartlett", "sqrt-hann"]))
    center = draw(st.booleans())
    channels = draw(st.integers(1, 2))
    kind = draw(st.sampled_from(["librosa", "scipy", "scipy-sfft", "torch"]))
    params = dict(n_fft=n_fft, win_length=win, hop_length=hop, window=window,
                  channels=channels)
    if kind != "scipy-sfft":
        params["center"] = center
    try:
        return preset(kind, **params)
    except SpecError:
        # NOLA fails for some window/hop pairs (e.g. bartlett at hop = win/2 when
        # its samples are 0): use a hop that always works.
        params["hop_length"] = max(1, win // 4)
        return preset(kind, **params)


def amax(a):
    return float(np.abs(a).max()) if np.size(a) else 0.0


def _random_frames(rng, spec, n_frames):
    shape = (n_frames, spec.n_bins) if spec.channels == 1 else (spec.channels, n_frames,
                                                                  spec.n_bins)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _ends_exact(X, spec):
    # DC and Nyquist carry no imaginary part in a real signal's spectrum; FFTW's
    # c2r and numpy's irfft treat a non-zero one differently.
    X = X.copy()
    X[..., 0] = X[..., 0].real
    if spec.n_fft % 2 == 0:
        X[..., -1] = X[..., -1].real
    return X


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), n_frames=st.integers(1, 60), seed=st.integers(0, 2 ** 32 - 1),
       block_frames=st.integers(1, 64), chunks=st.lists(st.integers(1, 40), min_size=1,
                                                          max_size=8),
       length_delta=st.one_of(st.none(), st.integers(-300, 300)))
@example(spec=preset("scipy-sfft", n_fft=108, hop_length=2, win_length=102, window="hann"),
         n_frames=37, seed=389168, block_frames=1, chunks=[1], length_delta=51)
@example(spec=preset("scipy", n_fft=256, hop_length=128), n_frames=9, seed=1, block_frames=3,
         chunks=[2, 5], length_delta=None)     # hop = span/2: the end is held back
@example(spec=STFTSpec(n_fft=131, hop_length=1, window="blackman"), n_frames=60, seed=7,
         block_frames=64, chunks=[40], length_delta=None)   # 131 frames overlap each sample
@example(spec=preset("librosa", n_fft=715, win_length=191, hop_length=96), n_frames=1,
         seed=135, block_frames=1, chunks=[1], length_delta=0)  # one sample, 1e-3 of the frame's
@example(spec=STFTSpec(n_fft=227, hop_length=45, win_length=95, window="sqrt-hann", center=False,
                       channels=2), n_frames=17, seed=120801, block_frames=1, chunks=[1],
         length_delta=-67)     # rounded 1.003e-6 of the peak where sqrt-hann's sum is 0.03
def test_frame_by_frame_equals_block_equals_whole(spec, n_frames, seed, block_frames, chunks,
                                                   length_delta):
    rng = np.random.default_rng(seed)
    X = _ends_exact(_random_frames(rng, spec, n_frames), spec)
    length = None if length_delta is None else max(0, spec.samples_for(n_frames) + length_delta)
    ref, good = reference_istft(X, spec, length)
    # The rounding is of the frames' own scale: that of the longest signal they
    # make, not of the few samples a short ``length`` keeps (one sample can be
    # 1e-3 of the frame's peak, and float32's rounding 1e-5 of it).
    full, full_good = reference_istft(X, spec, spec.max_samples_for(n_frames))
    scale = max(amax(ref[..., good]), amax(full[..., full_good]), 1e-12)
    # Frame by frame, block by block and whole round differently (FFTW's one-frame
    # and batched plans, sums in another order): each within a few times the
    # rounding a sample's frames and its window-sum-square allow (4.6 at most
    # over 3000 random cases), however small that sum (the tapered ends) or
    # however many frames it sums (hop 1).
    rounding = rounding_scale(X, spec, length)
    for dtype in (np.float64, np.float32):
        whole = stream.istft(X, spec, length=length, dtype=dtype)
        assert whole.shape == ref.shape and whole.dtype == dtype
        tol = (1e-9 if dtype == np.float64 else 1e-5) * scale
        assert amax(whole[..., good] - ref[..., good]) <= tol

        # frame by frame, one push per frame
        r = Reconstructor(spec, length=length, dtype=dtype)
        parts = [r.push(X[..., t, :]) for t in range(n_frames)]
        parts.append(r.flush())
        fbf = np.concatenate(parts, axis=-1)

        # blocks of random sizes through an engine with a random batch size
        r = Reconstructor(spec, length=length, block_frames=block_frames, dtype=dtype)
        parts, t, i = [], 0, 0
        while t < n_frames:
            k = chunks[i % len(chunks)]
            parts.append(r.push(X[..., t:t + k, :]))
            t += k
            i += 1
        parts.append(r.flush())
        blk = np.concatenate(parts, axis=-1)

        bound = 16 * np.finfo(dtype).eps * rounding
        assert fbf.shape == whole.shape == blk.shape
        assert np.all(np.abs(fbf - whole) <= bound)
        assert np.all(np.abs(blk - whole) <= bound)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), n_frames=st.integers(1, 300), seed=st.integers(0, 2 ** 32 - 1),
       block_frames=st.integers(1, 128), chunks=st.lists(st.integers(1, 200), min_size=1,
                                                           max_size=6))
@example(spec=preset("librosa", n_fft=1024, hop_length=256, channels=2), n_frames=300, seed=3,
         block_frames=64, chunks=[1, 64, 3, 130, 1])   # every way in, one after the other
@example(spec=preset("scipy", n_fft=256, hop_length=64, channels=2), n_frames=300, seed=4,
         block_frames=16, chunks=[5, 150, 145])    # pushes of 2 and more segments
def test_block_path_adds_as_the_pieces_do(spec, n_frames, seed, block_frames, chunks):
    # A block goes on from the last one's raw FFT output (the einsum path) or
    # from the partial sums (R strided adds of windowed pieces): with the same
    # FFT plans, the same samples bit for bit, whatever came before (one
    # frame, a short block, a block of another size) and in either dtype.
    # Segments of a long push (here of 2 blocks) transform again the frames
    # before them: the same samples for any number of threads (2 or more),
    # and the same as on one (no segments) to the rounding of the FFT.
    from stream import engine
    rng = np.random.default_rng(seed)
    X = _random_frames(rng, spec, n_frames)

    def run(workers=1):
        r = Reconstructor(spec, block_frames=block_frames, dtype=dtype, planning="estimate",
                          workers=workers)
        parts, t, i = [], 0, 0
        while t < n_frames:
            k = chunks[i % len(chunks)]
            parts.append(r.push(X[..., t:t + k, :]))
            t, i = t + k, i + 1
        parts.append(r.flush())
        return np.concatenate(parts, axis=-1)

    for dtype in (np.float32, np.float64):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(engine, "SEGMENT_BLOCKS", 1 << 30)
            fast = run()
            m.setattr(Reconstructor, "_views", lambda self, batch: None)   # the pieces, always
            np.testing.assert_array_equal(run(), fast)
        with pytest.MonkeyPatch.context() as m:
            m.setattr(engine, "SEGMENT_BLOCKS", 2)
            segmented = run(workers=2)
            np.testing.assert_array_equal(run(workers=3), segmented)
            np.testing.assert_array_equal(run(workers=1), fast)       # no segments
        bound = 16 * np.finfo(dtype).eps * rounding_scale(X, spec)
        assert np.all(np.abs(segmented - fast) <= bound)


@settings(max_examples=25, deadline=None)
@given(spec=specs(), n_frames=st.integers(1, 40), seed=st.integers(0, 2 ** 32 - 1),
       extra=st.integers(-500, 500))
def test_length_trims_and_pads(spec, n_frames, seed, extra):
    X = _random_frames(np.random.default_rng(seed), spec, n_frames)
    full = stream.istft(X, spec)
    assert full.shape[-1] == spec.samples_for(n_frames)
    length = max(0, full.shape[-1] + extra)
    y = stream.istft(X, spec, length=length)
    assert y.shape[-1] == length
    k = min(length, full.shape[-1])
    np.testing.assert_array_equal(y[..., :k], full[..., :k])
    # Past the analysis' length come the samples the last frames still cover
    # (librosa's and torch's istft give them too), then zeros.
    ref, good = reference_istft(X, spec, length)
    bound = 16 * np.finfo(np.float32).eps * rounding_scale(X, spec, length)
    assert np.all(np.abs(y - ref)[..., good] <= bound[..., good])
    covered = max((n_frames - 1) * spec.hop_length + spec.n_fft - spec.start_trim, 0)
    assert not np.any(y[..., covered:])


def test_flush_returns_the_tail_and_then_nothing():
    spec = preset("librosa", n_fft=512, hop_length=128)
    X = _random_frames(np.random.default_rng(3), spec, 20)
    r = Reconstructor(spec, dtype=np.float64)
    body = r.push(X)
    tail = r.flush()
    assert body.shape[-1] + tail.shape[-1] == spec.samples_for(20)
    # what is still pending after the last frame (hann's support: n_fft - 1
    # samples, less one hop), less the end trim
    assert tail.shape[-1] == (spec.n_fft - 1 - spec.hop_length) - spec.end_trim
    ref, good = reference_istft(X, spec)
    assert good.all()
    np.testing.assert_allclose(np.concatenate([body, tail]), ref, atol=1e-12)
    assert r.flush().shape == (0,)
    with pytest.raises(SpecError, match="push after flush"):
        r.push(X[0])


def test_push_returns_what_became_final_at_once():
    # Latency: after frame t, every sample before frame t+1's start is out.
    spec = STFTSpec(n_fft=256, hop_length=64, window="hann", center=False)
    r = Reconstructor(spec)
    X = _random_frames(np.random.default_rng(0), spec, 10)
    got = [r.push(f).shape[0] for f in X]
    # hann's first sample is 0: the support starts at sample 1, which is
    # final (as a 0) from the start, so the first push returns 1 + 64 samples.
    assert got == [65] + [64] * 9
    assert r.latency == 255 - 64


def test_bad_frames_are_refused_with_a_message():
    spec = preset("librosa", n_fft=512, hop_length=128)
    r = Reconstructor(spec)
    with pytest.raises(SpecError, match="complex"):
        r.push(np.zeros(257))
    with pytest.raises(SpecError, match="bins=257"):
        r.push(np.zeros(256, np.complex64))
    with pytest.raises(SpecError, match="float32 or float64"):
        Reconstructor(spec, dtype=np.int16)
    with pytest.raises(SpecError, match="length"):
        Reconstructor(spec, length=-1)


def test_analyzer_is_librosa_stft(audio):
    import librosa
    x, _ = audio
    spec = preset("librosa", n_fft=1024, hop_length=256)
    ours = stream.stft(x, spec, dtype=np.float64)
    D = librosa.stft(x, n_fft=1024, hop_length=256)
    assert ours.shape == D.T.shape
    assert np.abs(ours - D.T).max() <= 1e-9 * np.abs(D).max()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("window", ["blackman", "hann", "hamming"])
def test_no_spike_where_the_window_is_zero(window, dtype):
    # blackman's periodic w[0] is -1.4e-17, not 0: with center=False the first
    # sample's window-sum-square is 2e-34, and dividing by it turned FFT
    # rounding into a value of 1e9.  The inverse must stay at signal level.
    rng = np.random.default_rng(1)
    x = 0.3 * rng.standard_normal(8000)
    spec = STFTSpec(n_fft=512, hop_length=128, window=window, center=False)
    X = stream.stft(x, spec, dtype=dtype)
    y = stream.istft(X, spec, dtype=dtype)
    assert np.abs(y).max() <= 1.01 * np.abs(x).max()
    inner = wss_interior(spec, X.shape[0], len(y))
    assert np.abs(y[inner] - x[:len(y)][inner]).max() <= 1e-4


@pytest.mark.parametrize("channels", [1, 2])
def test_istft_single_frame_and_empty(channels):
    spec = preset("librosa", n_fft=64, hop_length=16, center=False, channels=channels)
    one = _random_frames(np.random.default_rng(2), spec, 1)[..., 0, :]   # (bins,) / (c, bins)
    y = stream.istft(one, spec, dtype=np.float64)
    assert y.shape[-1] == spec.samples_for(1) == 64
    ref, good = reference_istft(one[..., None, :], spec)
    assert np.abs(y[..., good] - ref[..., good]).max() < 1e-9 * np.abs(ref).max()
    empty = np.zeros((0, spec.n_bins) if channels == 1 else (channels, 0, spec.n_bins),
                     np.complex64)
    assert stream.istft(empty, spec).shape[-1] == 0
    assert stream.istft(empty, spec, length=10).shape[-1] == 10


def test_fftw_wisdom_is_saved_in_the_cache_dir_and_reused(tmp_path):
    import subprocess
    import sys
    code = ("import numpy as np, stream, stream.fft as f; "
            "s = stream.preset('librosa', n_fft=768, hop_length=192); "
            "stream.istft(np.ones((600, 385), np.complex64), s); "
            "print(f.wisdom_path())")
    env = dict(__import__("os").environ, XDG_CACHE_HOME=str(tmp_path))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    path = Path(p.stdout.strip())
    assert path == tmp_path / "specstream" / "fftw-wisdom"
    first = path.read_bytes()
    assert b"fftw" in first.lower()
    mtime = path.stat().st_mtime_ns
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    # the second run planned from the saved wisdom: nothing new, file not rewritten
    assert path.stat().st_mtime_ns == mtime
