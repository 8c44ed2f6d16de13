"""Decoder: stored units -> complex bins; non-finite values zeroed and counted."""

import numpy as np
import pytest

from stream import Decoder, Encoding, SpecError, preset

SPEC = preset("librosa", n_fft=62, hop_length=16)     # 32 bins


@pytest.fixture
def bins():
    rng = np.random.default_rng(7)
    X = (rng.standard_normal((5, SPEC.n_bins)) + 1j * rng.standard_normal((5, SPEC.n_bins)))
    X[0, 3] = 0.0                 # one exact zero
    return X


def dec(magnitude="linear", phase_unit="rad", db_ref=1.0):
    return Decoder(SPEC, Encoding(magnitude=magnitude, db_ref=db_ref, phase_unit=phase_unit),
                   dtype=np.complex128)


def close(a, b, tol=1e-12):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())


@pytest.mark.parametrize("unit,encode", [
    ("linear", lambda m, ref: m),
    ("power", lambda m, ref: m ** 2),
    ("db", lambda m, ref: 20 * np.log10(m / ref)),
    ("db-power", lambda m, ref: 10 * np.log10(m ** 2 / ref)),
    ("log", lambda m, ref: np.log(m)),
    ("log1p", lambda m, ref: np.log1p(m)),
])
@pytest.mark.parametrize("ref", [1.0, 0.37, 250.0])
def test_magnitude_units(bins, unit, encode, ref):
    mag, ph = np.abs(bins), np.angle(bins)
    with np.errstate(divide="ignore"):
        stored = encode(mag, ref)
    d = dec(unit, db_ref=ref)
    out = d.decode(stored, ph)
    close(out, bins, 1e-10)
    assert out.dtype == np.complex128
    assert d.nonfinite == 0            # log(0) = -inf dB is a zero magnitude, not an error


def test_librosa_amplitude_and_power_to_db():
    import librosa
    rng = np.random.default_rng(0)
    m = np.abs(rng.standard_normal((4, SPEC.n_bins))) + 1e-3
    got = dec("db", db_ref=2.5).magnitude(librosa.amplitude_to_db(m, ref=2.5, top_db=None))
    close(got, m, 1e-9)
    p = m ** 2
    got = dec("db-power", db_ref=3.0).magnitude(librosa.power_to_db(p, ref=3.0, top_db=None))
    close(got, m, 1e-9)


def test_linear_and_power_tolerate_sign_and_negative_power():
    d = dec("linear")
    np.testing.assert_array_equal(d.magnitude([-2.0, 3.0]), [2.0, 3.0])
    np.testing.assert_array_equal(dec("power").magnitude([-1e-12, 4.0]), [0.0, 2.0])
    np.testing.assert_array_equal(dec("log1p").magnitude([-0.5, 0.0]), [0.0, 0.0])


@pytest.mark.parametrize("unit,factor", [("rad", 1.0), ("deg", 180 / np.pi),
                                         ("cycles", 0.5 / np.pi)])
@pytest.mark.parametrize("wrap", ["signed", "positive"])
def test_phase_units_both_ranges(bins, unit, factor, wrap):
    ph = np.angle(bins)                                  # [-pi, pi]
    if wrap == "positive":
        ph = np.mod(ph, 2 * np.pi)                       # [0, 2pi)
        assert ph.min() >= 0 and ph.max() < 2 * np.pi
    else:
        assert ph.min() < 0
    out = dec(phase_unit=unit).decode(np.abs(bins), ph * factor)
    close(out, bins, 1e-12)


def test_phase_values_in_radians():
    d = dec(phase_unit="deg")
    close(d.phase([0.0, 90.0, -180.0, 270.0]), np.array([0, np.pi / 2, -np.pi, 1.5 * np.pi]))
    close(dec(phase_unit="cycles").phase([0.25, 0.75]), np.array([np.pi / 2, 1.5 * np.pi]))


def test_complex_input_passes_through(bins):
    d = dec()
    out = d.decode(bins)
    np.testing.assert_array_equal(out, bins)
    assert out is not bins
    assert d.decode(bins.astype(np.complex64)).dtype == np.complex128


def test_float32_decoder(bins):
    d = Decoder(SPEC, Encoding(magnitude="db"))
    out = d.decode(20 * np.log10(np.abs(bins) + 1e-30), np.angle(bins))
    assert out.dtype == np.complex64
    np.testing.assert_allclose(out, bins, atol=1e-5 * np.abs(bins).max())


@pytest.mark.parametrize("where", ["mag", "phase"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_zeroed_and_counted(bins, where, bad):
    mag, ph = np.abs(bins).copy(), np.angle(bins).copy()
    spots = [(0, 1), (2, 5), (4, 31)]
    for i, j in spots:
        (mag if where == "mag" else ph)[i, j] = bad
    d = dec()
    out = d.decode(mag, ph)
    for i, j in spots:
        assert out[i, j] == 0
    assert np.all(np.isfinite(out))
    assert d.nonfinite == len(spots)
    mask = np.ones(bins.shape, bool)
    for i, j in spots:
        mask[i, j] = False
    close(out[mask], bins[mask])
    d.decode(mag, ph)
    assert d.nonfinite == 2 * len(spots)        # a running count


def test_nonfinite_complex_and_overflowing_db(bins):
    X = bins.copy()
    X[1, 2] = complex(np.nan, 1.0)
    X[3, 4] = complex(1.0, np.inf)
    d = dec()
    out = d.decode(X)
    assert out[1, 2] == 0 and out[3, 4] == 0 and d.nonfinite == 2
    assert np.isnan(X[1, 2].real)               # the caller's array is left alone
    # 20 log10 of a value that overflows float32 when decoded
    d32 = Decoder(SPEC, Encoding(magnitude="db"))
    v = np.zeros((1, SPEC.n_bins), np.float32)
    v[0, 0] = 1000.0                             # 1e50: beyond float32
    with np.errstate(over="ignore"):
        out = d32.decode(v, np.zeros_like(v))
    assert out[0, 0] == 0 and d32.nonfinite == 1 and np.all(out[0, 1:] == 1)


def test_errors_say_what_to_change(bins):
    with pytest.raises(SpecError, match="phase"):
        dec().decode(np.abs(bins))
    with pytest.raises(SpecError, match=r"shape .* differ"):
        dec().decode(np.abs(bins), np.angle(bins)[:, :-1])
    with pytest.raises(SpecError) as e:
        dec().decode(np.ones((2, 513)), np.zeros((2, 513)))
    assert "n_fft=1024" in str(e.value) and "513 bins" in str(e.value)
    with pytest.raises(SpecError, match="db-power"):
        Encoding(magnitude="decibel")
    with pytest.raises(SpecError, match="cycles"):
        Encoding(phase_unit="grad")
    for ref in (0, -1, np.inf, np.nan):
        with pytest.raises(SpecError, match="db_ref"):
            Encoding(magnitude="db", db_ref=ref)
