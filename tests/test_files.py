"""File readers: npy/npz mapped, raw binary, text; FrameSource in both layouts; errors."""

import zipfile

import numpy as np
import pytest

from stream.files import FileError, FrameSource, array_names, guess_layout, load_array
from stream.errors import SpecstreamError

BINS = 33   # n_fft 64


@pytest.fixture
def mag():
    rng = np.random.default_rng(11)
    return np.abs(rng.standard_normal((BINS, 50))).astype(np.float32)   # bins x frames


@pytest.fixture
def phase():
    rng = np.random.default_rng(12)
    return rng.uniform(-np.pi, np.pi, (BINS, 50)).astype(np.float32)


# -------------------------------------------------------------------- npy
def test_npy_is_memory_mapped(tmp_path, mag):
    p = tmp_path / "m.npy"
    np.save(p, mag)
    a = load_array(p)
    assert isinstance(a, np.memmap)
    np.testing.assert_array_equal(a, mag)


def test_npy_fortran_and_complex(tmp_path, mag, phase):
    X = (mag * np.exp(1j * phase)).astype(np.complex64)
    p = tmp_path / "c.npy"
    np.save(p, np.asfortranarray(X))
    a = load_array(p)
    assert isinstance(a, np.memmap) and np.iscomplexobj(a)
    np.testing.assert_array_equal(a, X)


def test_npy_with_objects_is_refused(tmp_path):
    p = tmp_path / "o.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FileError, match="o.npy"):
        load_array(p)


# -------------------------------------------------------------------- npz
def test_npz_uncompressed_members_are_mapped(tmp_path, mag, phase):
    p = tmp_path / "both.npz"
    np.savez(p, magnitude=mag, phase=phase, extra=np.arange(3))
    assert array_names(p) == ["magnitude", "phase", "extra"]
    m = load_array(p, key="magnitude")
    ph = load_array(p, key="phase")
    assert isinstance(m, np.memmap) and isinstance(ph, np.memmap)
    np.testing.assert_array_equal(m, mag)
    np.testing.assert_array_equal(ph, phase)
    np.testing.assert_array_equal(load_array(p), mag)        # first array by default


def test_npz_fortran_member_is_mapped_right(tmp_path, mag):
    p = tmp_path / "f.npz"
    f = np.asfortranarray(mag.astype(np.float64))
    np.savez(p, m=f)
    a = load_array(p, key="m")
    assert isinstance(a, np.memmap)
    np.testing.assert_array_equal(a, mag)


def test_npz_compressed_is_loaded(tmp_path, mag, phase):
    p = tmp_path / "z.npz"
    np.savez_compressed(p, mag=mag, phase=phase)
    with zipfile.ZipFile(p) as z:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    a = load_array(p, key="phase")
    assert not isinstance(a, np.memmap)
    np.testing.assert_array_equal(a, phase)


def test_npz_unknown_key_lists_the_names(tmp_path, mag, phase):
    p = tmp_path / "k.npz"
    np.savez(p, S=mag, P=phase)
    with pytest.raises(FileError) as e:
        load_array(p, key="angles")
    msg = str(e.value)
    assert "'angles'" in msg and "S" in msg and "P" in msg


def test_npz_empty_and_broken(tmp_path):
    p = tmp_path / "empty.npz"
    np.savez(p)
    with pytest.raises(FileError, match="no arrays"):
        load_array(p)
    q = tmp_path / "broken.npz"
    q.write_bytes(b"this is not a zip file")
    with pytest.raises(FileError, match="broken.npz"):
        load_array(q)


# -------------------------------------------------------------------- raw
@pytest.mark.parametrize("dtype,np_dtype", [("float32", "<f4"), ("float64", "<f8"),
                                            ("complex64", "<c8")])
@pytest.mark.parametrize("layout", ["frames-bins", "bins-frames"])
def test_raw_binary(tmp_path, mag, phase, dtype, np_dtype, layout):
    data = mag if "float" in dtype else mag * np.exp(1j * phase)
    stored = data.T if layout == "frames-bins" else data       # element order on disk
    p = tmp_path / "x.bin"
    np.ascontiguousarray(stored).astype(np_dtype).tofile(p)
    a = load_array(p, dtype=dtype, bins=BINS, layout=layout)
    assert isinstance(a, np.memmap)
    np.testing.assert_allclose(a, stored.astype(np_dtype))
    src = FrameSource(a, None, layout)
    assert (src.n_bins, src.n_frames) == (BINS, 50)
    first, _ = next(src.blocks(20))
    np.testing.assert_allclose(first, data.T[:20].astype(np_dtype))


def test_raw_errors(tmp_path, mag):
    p = tmp_path / "x.raw"
    mag.T.astype("<f4").tofile(p)
    with pytest.raises(FileError) as e:
        load_array(p, bins=BINS + 1)
    assert "bins" in str(e.value) and "--dtype" in str(e.value)
    with pytest.raises(FileError, match="--bins"):
        load_array(p)
    q = tmp_path / "odd.bin"
    q.write_bytes(b"\0" * 7)
    with pytest.raises(FileError, match="whole number of float32"):
        load_array(q, bins=1)
    with pytest.raises(FileError, match="--dtype 'int8'"):
        load_array(p, dtype="int8", bins=BINS)


# ------------------------------------------------------------------- text
@pytest.mark.parametrize("suffix,delim", [(".csv", ","), (".txt", " "), (".tsv", "\t")])
@pytest.mark.parametrize("orientation", ["bins-frames", "frames-bins"])
def test_text_both_orientations(tmp_path, mag, suffix, delim, orientation):
    data = mag.astype(np.float64)
    stored = data if orientation == "bins-frames" else data.T
    p = tmp_path / f"m{suffix}"
    np.savetxt(p, stored, delimiter=delim, fmt="%.9g")
    a = load_array(p)
    np.testing.assert_allclose(a, stored, rtol=1e-8)
    src = FrameSource(a, None, guess_layout(a.shape, 64))
    assert src.layout == orientation
    np.testing.assert_allclose(src.block(0, 50), data.T, rtol=1e-8)


def test_text_with_header_row(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("f0,f1,f2\n1,2,3\n4,5,6\n")
    np.testing.assert_array_equal(load_array(p), [[1, 2, 3], [4, 5, 6]])


def test_text_garbage_says_which_file(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("1,2,3\n4,x,6\n")
    with pytest.raises(FileError, match="bad.csv"):
        load_array(p)


# ------------------------------------------------------------ everything
def test_missing_file(tmp_path):
    with pytest.raises(FileError) as e:
        load_array(tmp_path / "nope.npy")
    assert "nope.npy" in str(e.value) and "no such file" in str(e.value)
    assert issubclass(FileError, SpecstreamError)


def test_frame_source_layouts_agree(tmp_path, mag, phase):
    a = FrameSource(mag, phase, "bins-frames")
    b = FrameSource(np.ascontiguousarray(mag.T), np.ascontiguousarray(phase.T), "frames-bins")
    for (m1, p1), (m2, p2) in zip(a.blocks(7), b.blocks(7)):
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(p1, p2)
        assert m1.shape[-1] == BINS
    assert sum(m.shape[0] for m, _ in a.blocks(7)) == 50


def test_frame_source_second_layout_reads_a_transposed_phase(tmp_path, mag, phase):
    np.save(tmp_path / "p.npy", np.ascontiguousarray(phase.T))        # frames x bins
    p_t = load_array(tmp_path / "p.npy")
    a = FrameSource(mag, phase, "bins-frames")
    b = FrameSource(mag, p_t, "bins-frames", second_layout="frames-bins")
    assert isinstance(b.second, np.memmap) and (b.n_bins, b.n_frames) == (BINS, 50)
    for (m1, p1), (m2, p2) in zip(a.blocks(7), b.blocks(7), strict=True):
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(b.block(3, 9, b.second), phase.T[3:9])
    assert FrameSource(mag, phase).second_layout == "bins-frames"       # default: the same
    with pytest.raises(FileError, match="differ"):
        FrameSource(mag, phase, "bins-frames", second_layout="frames-bins")
    with pytest.raises(FileError, match="layout"):
        FrameSource(mag, phase, "bins-frames", second_layout="rows")


def test_frame_source_channels():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, BINS, 10))
    src = FrameSource(x, None, "bins-frames")
    assert (src.channels, src.n_bins, src.n_frames) == (2, BINS, 10)
    blk, _ = next(src.blocks(4))
    assert blk.shape == (2, 4, BINS)
    np.testing.assert_array_equal(blk[1, 2], x[1, :, 2])


def test_frame_source_errors(mag, phase):
    with pytest.raises(FileError, match="differ"):
        FrameSource(mag, phase[:, :-1])
    with pytest.raises(FileError, match="2-D"):
        FrameSource(mag[0])
    with pytest.raises(FileError, match="layout"):
        FrameSource(mag, None, "rows")


def test_guess_layout_says_which_n_fft_fits():
    assert guess_layout((50, 513), 1024) == "frames-bins"
    assert guess_layout((513, 50), 1024) == "bins-frames"
    with pytest.raises(FileError) as e:
        guess_layout((257, 40), 1024)
    assert "n_fft=512" in str(e.value)


def test_guess_layout_without_n_fft():
    assert guess_layout((513, 50), None) == "bins-frames"        # librosa's order
    assert guess_layout((50, 513), None) == "bins-frames"        # ambiguous: librosa's
    assert guess_layout((513, 9000), None) == "bins-frames"
    # (93750, 257) as bins-frames would be n_fft=187498: it is frames-bins
    assert guess_layout((93750, 257), None) == "frames-bins"
    assert guess_layout((2, 93750, 257), None) == "frames-bins"
