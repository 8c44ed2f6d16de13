"""STFTSpec: windows as scipy makes them, validation with messages that say what to change."""

import numpy as np
import pytest
import scipy.signal as ss

import stream
from stream.spec import WINDOWS, SpecError, STFTSpec, get_window, preset

# Our name -> how scipy.signal.get_window spells it (fftbins=True: periodic).
SCIPY_NAMES = {
    "hann": "hann",
    "hamming": "hamming",
    "blackman": "blackman",
    "rectangular": "boxcar",
    "bartlett": "bartlett",
    "sine": "cosine",
}
ALIASES = {"hanning": "hann", "boxcar": "boxcar", "ones": "boxcar", "rect": "boxcar",
           "none": "boxcar", "cosine": "cosine", "triang": "bartlett",
           "triangle": "bartlett", "HANN": "hann"}


def test_every_window_name_is_checked():
    # A new window in WINDOWS must get a reference here.
    assert set(WINDOWS) == set(SCIPY_NAMES) | {"sqrt-hann"}


@pytest.mark.parametrize("name", sorted(SCIPY_NAMES))
@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 255, 256, 400, 1024, 2047])
def test_window_equals_scipy(name, n):
    ours = get_window(name, n)
    ref = ss.get_window(SCIPY_NAMES[name], n, fftbins=True)
    assert ours.dtype == np.float64 and ours.shape == (n,)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-15)


@pytest.mark.parametrize("n", [4, 255, 512, 1024])
def test_sqrt_hann_is_root_of_periodic_hann(n):
    ref = np.sqrt(ss.get_window("hann", n, fftbins=True))
    np.testing.assert_allclose(get_window("sqrt-hann", n), ref, rtol=0, atol=1e-15)


@pytest.mark.parametrize("alias,scipy_name", sorted(ALIASES.items()))
def test_window_aliases(alias, scipy_name):
    np.testing.assert_allclose(get_window(alias, 300),
                               ss.get_window(scipy_name, 300, fftbins=True), atol=1e-15)


@pytest.mark.parametrize("name", ["hann", "hamming", "blackman"])
def test_window_equals_librosa_and_torch(name):
    import librosa
    import torch
    n = 1000
    np.testing.assert_allclose(get_window(name, n), librosa.filters.get_window(name, n),
                               atol=1e-15)
    tw = getattr(torch, f"{name}_window")(n, periodic=True, dtype=torch.float64).numpy()
    np.testing.assert_allclose(get_window(name, n), tw, atol=1e-12)


def test_window_array_is_copied_and_checked():
    a = np.hanning(16)
    w = get_window(a, 16)
    a[:] = 0
    assert w.max() > 0.9
    with pytest.raises(SpecError, match="win_length=15"):
        get_window(np.ones(16), 15)
    with pytest.raises(SpecError, match="NaN or Inf"):
        get_window(np.array([1.0, np.nan, 1.0, 1.0]), 4)


def test_spec_window_values_from_array():
    w = ss.get_window("hamming", 400)
    spec = STFTSpec(n_fft=512, win_length=400, hop_length=100, window=w)
    np.testing.assert_array_equal(spec.window_values, w)
    assert spec.window_name == "custom"
    assert not spec.window_values.flags.writeable


def test_unknown_window_name_lists_the_choices():
    with pytest.raises(SpecError) as e:
        STFTSpec(n_fft=512, window="kaiserr")
    msg = str(e.value)
    assert "'kaiserr'" in msg and "hann" in msg and "hamming" in msg and "array" in msg


def _cli(msg):
    # The library's advice names parameters; the command line's error names
    # its flags (stream.cli.common.flag_names), which is what these check.
    from stream.cli import build_parser
    from stream.cli.common import flag_names
    return flag_names(msg, build_parser().commands["reconstruct"])


def test_advice_names_parameters_not_flags():
    for params in (dict(n_fft=512, win_length=256, hop_length=300),
                   dict(n_fft=256, win_length=512, hop_length=128),
                   dict(n_fft=512, win_length=512, hop_length=512)):
        with pytest.raises(SpecError) as e:
            STFTSpec(**params)
        assert "--" not in str(e.value)
    with pytest.raises(SpecError) as e:
        STFTSpec(n_fft=512, win_length=256, hop_length=300)
    assert "use hop_length <= 256" in str(e.value)
    with pytest.raises(SpecError) as e:
        STFTSpec(n_fft=256, win_length=512, hop_length=128)
    assert "use win_length <= 256 or a larger n_fft" in str(e.value)


def test_hop_longer_than_window():
    with pytest.raises(SpecError) as e:
        STFTSpec(n_fft=512, win_length=256, hop_length=300)
    msg = _cli(str(e.value))
    assert "hop_length=300" in msg and "--hop-length <= 256" in msg


def test_window_longer_than_n_fft():
    with pytest.raises(SpecError) as e:
        STFTSpec(n_fft=256, win_length=512, hop_length=128)
    msg = _cli(str(e.value))
    assert "win_length=512" in msg and "n_fft=256" in msg and "--win-length <= 256" in msg


@pytest.mark.parametrize("window,win,hop", [("hann", 512, 512), ("blackman", 256, 256),
                                             ("bartlett", 100, 100)])
def test_nola_failure(window, win, hop):
    # Each of these windows is 0 at its first sample: with hop == win that
    # sample is covered by no frame at all.
    assert not ss.check_NOLA(ss.get_window(window, win), win, win - hop)
    with pytest.raises(SpecError) as e:
        STFTSpec(n_fft=win, win_length=win, hop_length=hop, window=window)
    msg = _cli(str(e.value))
    assert "NOLA" in msg and "smaller --hop-length" in msg and window in msg


@pytest.mark.parametrize("window,win,hop", [("hann", 512, 256), ("hann", 512, 511),
                                             ("rectangular", 300, 300), ("hamming", 256, 256),
                                             ("blackman", 512, 170), ("sine", 400, 400)])
def test_nola_agrees_with_scipy_when_it_holds(window, win, hop):
    ref = SCIPY_NAMES.get(window, window)
    assert ss.check_NOLA(ss.get_window(ref, win), win, win - hop)
    STFTSpec(n_fft=win, win_length=win, hop_length=hop, window=window)


def test_nola_custom_window_with_zero_gap():
    w = np.ones(64)
    w[20:40] = 0
    with pytest.raises(SpecError, match="NOLA"):
        STFTSpec(n_fft=64, hop_length=64, window=w)
    STFTSpec(n_fft=64, hop_length=16, window=w)


@pytest.mark.parametrize("field,value,hint", [
    ("n_fft", 0, "n_fft"), ("n_fft", 12.5, "n_fft"), ("n_fft", "abc", "n_fft"),
    ("hop_length", -1, "hop_length"), ("win_length", 0, "win_length"),
    ("sample_rate", 0, "sample_rate"), ("sample_rate", -8000, "sample_rate"),
    ("channels", 0, "channels"),
    ("scaling", "spectrum", "window-sum"), ("phase_origin", "middle", "frame-start"),
    ("window_align", "right", "center"),
])
def test_bad_values_raise_spec_error(field, value, hint):
    with pytest.raises(SpecError, match=hint):
        STFTSpec(**{"n_fft": 512, field: value})


def test_first_frame_needs_center():
    with pytest.raises(SpecError, match="center=True"):
        STFTSpec(n_fft=512, center=False, first_frame=-1)


def test_spec_error_is_a_value_error():
    assert issubclass(SpecError, ValueError)
    assert stream.SpecError is SpecError


def test_unknown_preset():
    with pytest.raises(SpecError) as e:
        preset("matlab")
    assert "librosa" in str(e.value) and "scipy-sfft" in str(e.value)


def test_defaults_and_derived():
    s = STFTSpec(n_fft=1024)
    assert (s.win_length, s.hop_length, s.n_bins, s.start_trim, s.end_trim) == (1024, 256, 513, 512, 512)
    assert s.samples_for(0) == 0
    # librosa's frame count and length for center=True
    assert s.frames_for(22050) == 1 + 22050 // 256
    assert s.samples_for(s.frames_for(22050)) == 256 * (22050 // 256)
    s2 = s.replace(hop_length=128)
    assert s2.hop_length == 128 and s.hop_length == 256
    with pytest.raises(SpecError):
        s.replace(hop_length=2048)


def test_presets_carry_library_defaults():
    lib = preset("librosa")
    assert (lib.n_fft, lib.hop_length, lib.window, lib.center, lib.scaling,
            lib.phase_origin, lib.window_align, lib.sample_rate) == \
        (2048, 512, "hann", True, "none", "frame-start", "center", 22050)
    sp = preset("scipy")
    assert (sp.n_fft, sp.win_length, sp.hop_length, sp.scaling, sp.window_align) == \
        (256, 256, 128, "window-sum", "left")
    sp = preset("scipy", win_length=400, n_fft=512)
    assert (sp.n_fft, sp.win_length, sp.hop_length) == (512, 400, 200)
    sf = preset("scipy-sfft", n_fft=512, hop_length=128)
    assert sf.phase_origin == "window-center" and sf.first_frame == -1
    t = preset("torch", n_fft=400)
    assert (t.hop_length, t.center, t.scaling) == (100, True, "none")
    assert preset("librosa", hop_length=300).hop_length == 300


@pytest.mark.parametrize("nw,hop", [(512, 128), (1024, 256), (400, 100), (256, 200), (255, 64)])
def test_sfft_first_frame_is_p_min(nw, hop):
    sft = ss.ShortTimeFFT(ss.get_window("hann", nw), hop, fs=1.0)
    assert preset("scipy-sfft", n_fft=nw, hop_length=hop).first_frame == sft.p_min


# ----------------------------------------------------------- to_dict / from_dict
DICT_SPECS = [
    STFTSpec(),
    preset("scipy-sfft", n_fft=512, hop_length=128, sample_rate=48000),
    preset("scipy", n_fft=256, win_length=200, sample_rate=8000),
    STFTSpec(sample_rate=16000.5, n_fft=64, hop_length=16, win_length=48,
             window=ss.get_window("hamming", 48), center=False, channels=np.int64(3),
             scaling="psd", phase_origin="window-center", window_align="left"),
]


@pytest.mark.parametrize("spec", DICT_SPECS)
def test_to_dict_is_json_and_from_dict_makes_the_same_spec(spec):
    import dataclasses
    import json

    d = spec.to_dict()
    assert set(d) == {f.name for f in dataclasses.fields(STFTSpec) if f.init}
    back = json.loads(json.dumps(d, allow_nan=False))
    assert back == d
    for strict in (False, True):
        again = STFTSpec.from_dict(back, strict=strict)
        assert again == spec
        np.testing.assert_array_equal(again.window_values, spec.window_values)
    assert isinstance(d["sample_rate"], float) and type(d["channels"]) is int
    assert d["window"] == (spec.window if isinstance(spec.window, str) else list(spec.window))


def test_from_dict_takes_defaults_and_ignores_other_keys():
    d = {"n_fft": 512, "hop_length": 128, "frame_kind": "magphase", "version": 1}
    assert STFTSpec.from_dict(d) == STFTSpec(n_fft=512, hop_length=128)
    assert STFTSpec.from_dict(d, strict=True) == STFTSpec(n_fft=512, hop_length=128)
    assert STFTSpec.from_dict({}) == STFTSpec()
    with pytest.raises(SpecError, match="hop_length=600"):
        STFTSpec.from_dict({"n_fft": 512, "hop_length": 600})


@pytest.mark.parametrize("key,value,words", [
    ("n_fft", 512.0, "n_fft must be a whole number"),
    ("n_fft", "512", "n_fft must be a whole number"),
    ("n_fft", True, "n_fft must be a whole number"),
    ("hop_length", None, "hop_length must be a whole number"),
    ("sample_rate", "48k", "sample_rate must be a number"),
    ("sample_rate", False, "sample_rate must be a number"),
    ("center", 1, "center must be true or false"),
    ("scaling", 3, "scaling must be a string"),
    ("window", ["a"], "window must be a name or a list of numbers"),
    ("window", {"x": 1}, "window must be a name or a list of numbers"),
    ("window", [True] * 512, "window must be a name or a list of numbers"),
    ("first_frame", -1.5, "first_frame must be a whole number"),
])
def test_from_dict_strict_wants_the_json_types(key, value, words):
    d = STFTSpec(n_fft=512, hop_length=128).to_dict() | {key: value}
    with pytest.raises(SpecError) as e:
        STFTSpec.from_dict(d, strict=True)
    assert words in str(e.value)
    assert len(str(e.value)) < 200           # a long bad value is quoted in part only


# -------------------------------------------------------- time and frequency
def test_hop_and_latency_in_seconds():
    s = STFTSpec(sample_rate=48000, n_fft=1024, hop_length=256)
    assert s.hop_seconds == 256 / 48000
    assert s.latency_seconds == s.latency / 48000 == (1024 - 256) / 48000


@pytest.mark.parametrize("n_fft,sr", [(1024, 48000), (255, 22050), (1, 8000), (400, 16000.5)])
def test_frequencies_are_rfftfreq(n_fft, sr):
    import librosa

    s = STFTSpec(sample_rate=sr, n_fft=n_fft, hop_length=1)
    f = s.frequencies
    assert f.shape == (s.n_bins,) and f.dtype == np.float64
    np.testing.assert_array_equal(f, np.fft.rfftfreq(n_fft, 1 / sr))
    np.testing.assert_allclose(f, librosa.fft_frequencies(sr=sr, n_fft=n_fft), rtol=1e-14)
    sft = ss.ShortTimeFFT(np.ones(n_fft), 1, fs=sr, mfft=n_fft)
    np.testing.assert_allclose(f, sft.f, rtol=1e-14)


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("n_fft,win,hop", [(2048, 2048, 512), (1024, 600, 256), (400, 400, 160)])
def test_frame_times_equal_librosa(center, n_fft, win, hop):
    import librosa

    s = STFTSpec(sample_rate=22050, n_fft=n_fft, win_length=win, hop_length=hop, center=center)
    n = s.frames_for(22050)
    want = librosa.frames_to_time(np.arange(n), sr=22050, hop_length=hop,
                                  n_fft=None if center else n_fft)
    np.testing.assert_allclose(s.frame_times(n), want, rtol=1e-14, atol=1e-15)
    assert s.frame_times(0).shape == (0,)


@pytest.mark.parametrize("nw,hop", [(512, 128), (1024, 256), (400, 100), (256, 200)])
def test_frame_times_equal_shorttimefft_t(nw, hop):
    sr, n = 16000.0, 5000
    sft = ss.ShortTimeFFT(ss.get_window("hann", nw), hop, fs=sr)
    s = preset("scipy-sfft", n_fft=nw, hop_length=hop, sample_rate=sr)
    want = sft.t(n)
    assert want[0] == s.first_frame * hop / sr    # p_min <= 0: slices before the signal
    np.testing.assert_allclose(s.frame_times(len(want)), want, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("center", [True, False])
def test_frame_times_equal_scipy_stft(center):
    sr, nperseg, n = 8000.0, 256, 4000
    s = preset("scipy", n_fft=nperseg, sample_rate=sr, center=center)
    _, t, Z = ss.stft(np.zeros(n), fs=sr, nperseg=nperseg,
                      boundary="zeros" if center else None, padded=center)
    np.testing.assert_allclose(s.frame_times(len(t)), t, rtol=1e-14, atol=1e-15)
