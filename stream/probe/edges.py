"""Edges, length and level: centre padding, the frame count, the amplitude scaling.

* edges -- centre padding leaves the first frame's first half zero (or a
  mirror image, torch's reflect padding); ``ShortTimeFFT`` starts earlier.
  A known signal length fixes the frame count, which differs with centring.
* level -- the amplitude scaling only shows in the absolute level; it is a
  guess that assumes audio peaks near full scale, and is said to be one.
"""

from __future__ import annotations

import math

import numpy as np

from ..engine import istft
from ..spec import STFTSpec
from .arrays import sample
from .framing import loud_slice
from .result import Finding, ProbeResult
from .units import decoded


def centre(fb, pb, spec: STFTSpec, mag, unit, known, res: ProbeResult):
    """Where frame 0 starts, from the first frames: after zeros (or a mirror)
    the padding put before the signal, or at the signal's first sample."""
    if known.get("center") is not None or known.get("first_sample") is not None:
        c = known.get("center", not known.get("first_sample"))
        res.findings["center"] = Finding(c, "given", 2.0)
        res.findings["first_frame"] = Finding(0, "given centre", 2.0)
        res.findings["first_sample"] = Finding(known.get("first_sample", 0), "given", 2.0)
        return
    n, h = spec.n_fft, spec.hop_length
    centred = spec.replace(center=True)
    half = centred.start_trim          # frame_span // 2: where centring puts sample 0
    t = fb.shape[0]
    k = min(t, -(-n // h) + 2)
    w = spec.padded_window
    y = _frames_time(fb, pb, spec, mag, unit, slice(0, k))
    y_end = _frames_time(fb, pb, spec, mag, unit, slice(t - k, t))[::-1, ::-1]
    i = np.arange(1, min(half, n - half))
    mirror = np.abs(y[0, half - i] - y[0, half + i]).sum() / max(np.abs(y[0]).sum(), 1e-300)
    est, est_end = _signal_estimate(y, spec, w), _signal_estimate(y_end, spec, w[::-1])
    hyps = _start_hypotheses(spec, centred, half)
    onset = _onset(est)
    # the level before each start against the sound after it (the signal's
    # own silence, or the LSB noise of a 16-bit file, is no sound to compare with)
    drops = {hy.pad: _drop(est, hy.pad, n, post_start=max(hy.pad, min(onset, len(est) - 1)))
             for hy in hyps}
    valid = [hy for hy in hyps if drops[hy.pad] < 0.01 and hy.pad <= onset + max(3, n // 128)]
    end_drop = (_drop(est_end, n - half - h, n, post_start=n - half)
                if half - h >= max(spec.frame_span // 16, 1) else np.inf)
    level = _edge_level(fb, pb, n, mag, unit, k)
    floored = _floor_fraction(fb, k) if "top_db" in res.findings else 0.0
    silent = not np.any(est) or np.abs(y[0]).max() < 1e-6 * max(np.abs(y).max(), 1e-300)
    hy, conf, ev = _judge_centre(silent, mirror, valid, drops, onset, hyps[0], end_drop, level,
                                 floored)
    c, first, ev, conf = _centre_from_length(known, spec, fb.shape[0], hy.center, hy.first_frame,
                                             ev, conf)
    res.findings["center"] = Finding(c, ev, conf)
    res.findings["first_frame"] = Finding(first if c else 0, ev, conf)
    res.findings["first_sample"] = Finding(0 if c else hy.first_sample, ev, conf)


class _Start:
    """One hypothesis of where frame 0 starts: ``pad`` samples of it before
    the signal, as ``center``/``first_frame``/``first_sample`` say."""

    def __init__(self, pad, center, first_frame, first_sample, how):
        self.pad, self.center, self.first_frame = pad, center, first_frame
        self.first_sample, self.how = first_sample, how


def _start_hypotheses(spec: STFTSpec, centred: STFTSpec, half: int) -> list:
    """The frame starts tools use: centred (librosa, torch, scipy, essentia),
    ShortTimeFFT's ``p_min`` hops earlier, pyroomacoustics' ``n_fft - hop``
    zeros, and none (tensorflow, MATLAB, Octave, audioflux, numpy loops)."""
    n, h, wl = spec.n_fft, spec.hop_length, spec.win_length
    out = [_Start(half, True, 0, 0, f"centre padding of {half}")]
    ff = -((wl - wl // 2 - 1) // h)    # ShortTimeFFT's p_min
    sfft = centred.replace(first_frame=ff).start_trim if ff < 0 else None
    pra = n - h if n - h > half else None
    if sfft is not None and (sfft != pra or spec.phase_origin == "window-center"):
        out.append(_Start(sfft, True, ff, 0, f"centre padding of {half} and {-ff} hop(s) before "
                          "sample 0 (ShortTimeFFT's p_min)"))
    if pra is not None and not (pra == sfft and spec.phase_origin == "window-center"):
        out.append(_Start(pra, False, 0, -pra, f"zero padding of n_fft - hop = {pra} before "
                          "the signal (pyroomacoustics)"))
    return out


def _onset(est: np.ndarray) -> int:
    """The first sample of the signal estimate that is not silent (its length if none)."""
    a = np.abs(est)
    top = float(a.max()) if a.size else 0.0
    nz = np.flatnonzero(a > 1e-5 * top) if top > 0 else []
    return int(nz[0]) if len(nz) else len(a)


def _judge_centre(silent, mirror, valid, drops, onset, centred, end_drop, level, floored):
    """Where frame 0 starts, from the edge evidence, most telling first:
    (hypothesis, confidence, evidence)."""
    none = _Start(0, False, 0, 0, "no padding")
    half = centred.pad
    if silent:
        return centred, 0.2, ("the first frame is silent: the edges cannot show padding; "
                              "assumed centred, the libraries' default; give --center/--no-center")
    if mirror < 1e-2:
        return centred, 0.9, ("the first frame is mirror-symmetric about its centre: reflect "
                              "padding (torch)")
    if valid:
        # The start the sound begins at, if one does; else (the signal's own
        # silence before it) centring, the libraries' default, if it fits.
        exact = [v for v in valid if abs(onset - v.pad) <= 3]
        hy = (exact[0] if exact else centred if centred in valid
              else max(valid, key=lambda v: v.pad))
        p = hy.pad
        conf = 0.9 if drops[p] < 1e-3 else 0.7
        ev = (f"the first {p} samples of the first frame are silent "
              f"({_db(drops[p])} below what follows): {hy.how}")
        if onset > p + 3:
            # the sound starts later than any padding would: the signal's own silence
            conf = min(conf, 0.5)
            ev += (f"; but the first sound is at sample {onset}, later: the signal may start "
                   "with silence of its own, and frames from sample 0 fit as well; give "
                   "--center or --no-center")
        return hy, conf, ev
    if drops[half] > 0.1 and floored < 0.2:
        return none, 0.85, (f"the signal is already there in the first frame's first half "
                            f"({_db(drops[half])} of the level after it, from sample {onset}; "
                            f"{_db(level)} re the loudest frame): frames start at sample 0, "
                            "no padding")
    if end_drop < 0.01:
        return centred, 0.8, (f"the last frame ends in silent samples ({_db(end_drop)}): "
                              "centre padding")
    return centred, 0.3, (f"the edges are too quiet to show padding ({_db(level)} re the "
                          "loudest frame" + (f", {floored:.0%} of their bins at the dB floor"
                                             if floored else "")
                          + "): assumed centred, the libraries' default; give "
                          "--center/--no-center")


def _centre_from_length(known, spec: STFTSpec, n_frames, c, first, ev, conf):
    """A known signal length fixes the frame count, which differs with centring."""
    if not known.get("length"):
        return c, first, ev, conf
    length = int(known["length"])
    fits = {cc: spec.replace(center=cc, first_frame=first if cc else 0).frames_for(length)
            == n_frames for cc in (True, False)}
    if fits[c] and not fits[not c]:
        return c, first, ev + f"; {length} samples make {n_frames} frames only so", max(conf, 0.95)
    if fits[not c] and not fits[c] and conf < 0.85:
        return (not c, 0, f"{length} samples make {n_frames} frames only with "
                f"center={not c} (the edges were unclear: {ev})", 0.9)
    return c, first, ev, conf


def _frames_time(fb, pb, spec, mag, unit, sl) -> np.ndarray:
    """Windowed frames in time, ``w * x[tH : tH+N]``, with the phase origin undone."""
    y = np.fft.irfft(decoded(fb, pb, spec.n_fft, mag, unit, sl), n=spec.n_fft, axis=1)
    r = spec.phase_reference
    return np.roll(y, r, axis=1) if r else y


def _edge_level(fb, pb, n_fft, mag, unit, k) -> float:
    """RMS of the first and last ``k`` frames over the loudest frame's (both edges' max)."""
    t = fb.shape[0]
    h = min(t, 4096)                  # the loudest of the first frames (one piece of a file)
    e = np.concatenate([(np.abs(decoded(fb, pb, n_fft, mag, unit, slice(i, min(h, i + 256))))
                         ** 2).sum(1) for i in range(0, h, 256)])
    ends = (np.abs(decoded(fb, pb, n_fft, mag, unit, slice(0, k))) ** 2).sum(1).mean(), \
        (np.abs(decoded(fb, pb, n_fft, mag, unit, slice(t - k, t))) ** 2).sum(1).mean()
    return float(np.sqrt(max(ends) / max(e.max(), 1e-300)))


def _signal_estimate(y: np.ndarray, spec: STFTSpec, w: np.ndarray) -> np.ndarray:
    """The signal under the first frames, from windowed frames ``y`` (frame-start phase).

    ``w`` is the padded window (reversed for frames read backwards).
    Each sample is read from the frame whose window weighs it most, divided
    by that weight; samples no window weighs at 0.1 of its peak are left 0.
    """
    n, h = spec.n_fft, spec.hop_length
    k = y.shape[0]
    span = (k - 1) * h + n
    best_w = np.zeros(span)
    est = np.zeros(span)
    for t in range(k):
        seg = slice(t * h, t * h + n)
        better = w > best_w[seg]
        best_w[seg] = np.where(better, w, best_w[seg])
        est[seg] = np.where(better, y[t] / np.where(w > 0, w, 1), est[seg])
    est[best_w < 0.1 * w.max()] = 0
    return est


def _floor_fraction(fb, k: int) -> float:
    """Fraction of the stored values at the dB floor in the first or the last
    ``k`` frames (the larger)."""
    lo = float(sample(fb[:4096]).min())
    ends = np.asarray(fb[:k]), np.asarray(fb[-k:])
    return max(float(np.mean(e == lo)) for e in ends)


def _drop(est: np.ndarray, p: int, n: int, post_start: int | None = None) -> float:
    """RMS before sample ``p`` over RMS of the quarter frame after ``post_start``
    (default ``p``); inf if nothing is there."""
    q = p if post_start is None else post_start
    pre, post = est[:p], est[q:q + max(n // 4, 1)]
    pre = pre[pre != 0]          # exactly 0: no window weighs the sample (no evidence)
    if post.size == 0 or not np.any(post) or pre.size == 0:
        return np.inf
    r_pre = np.sqrt(np.mean(pre ** 2))
    return float(r_pre / np.sqrt(np.mean(post ** 2)))


def _db(ratio: float) -> str:
    return "-inf dB" if ratio <= 0 else f"{20 * math.log10(ratio):+.0f} dB"


def check_length(known, n_frames, res: ProbeResult):
    if not known.get("length") or res.confidence("hop_length") == 0:
        return
    f = res.findings["hop_length"]
    c = res.value("center")
    spec = STFTSpec(n_fft=res.value("n_fft"), hop_length=f.value, window=res.value("window"),
                    center=bool(c), first_frame=res.value("first_frame", 0) if c else 0,
                    first_sample=0 if c else res.value("first_sample", 0))
    want = spec.frames_for(int(known["length"]))
    if want == n_frames:
        f.evidence += f"; {known['length']} samples make exactly {n_frames} frames: confirmed"
        f.confidence = max(f.confidence, 0.97) if f.confidence <= 1 else f.confidence
    else:
        f.evidence += (f"; but {known['length']} samples would make {want} frames, not "
                       f"{n_frames}")
        f.confidence = min(f.confidence, 0.4)
        res.problems.append(f"--length {known['length']} does not match hop {f.value} "
                            f"({want} frames expected, {n_frames} found)")


def guess_scaling(fb, pb, spec: STFTSpec, mag, unit, known, res: ProbeResult):
    """Amplitude scaling from the level: audio usually peaks between -40 and 0 dBFS."""
    if known.get("scaling"):
        res.findings["scaling"] = Finding(known["scaling"], "given", 2.0)
        return
    if mag.startswith("db") and res.confidence("db_ref") < 0.5:
        res.findings["scaling"] = Finding("none", "dB relative to the maximum: the absolute "
                                          "level is lost, so the scaling cannot be known; a "
                                          "global gain is left to --normalize", 0.0)
        res.level_lost = "dB values relative to their maximum, ref=np.max"
        return
    r = -(-spec.n_fft // spec.hop_length)
    n = fb.shape[0]
    x = decoded(fb, pb, spec.n_fft, mag, unit, slice(0, n) if n <= 4096 else slice(0, 4096))
    sl = loud_slice((np.abs(x) ** 2).sum(1), 2 * r + 8)
    y = istft(x[sl], spec, dtype=np.float64)
    peak = float(np.abs(y[len(y) // 4: 3 * len(y) // 4] if len(y) > 8 else y).max())
    w = spec.window_values
    gains = {"none": 1.0, "window-sum": float(w.sum()), "sqrt-n": math.sqrt(spec.n_fft),
             "essentia": float(w.sum()) / 2}
    dist = {k: abs(math.log10(max(peak * g, 1e-30)) - math.log10(0.3)) for k, g in gains.items()}
    # essentia's frames (Windowing: normalized, zeroPhase, symmetric by
    # default) are the only ones with a symmetric window and a window-centre
    # phase: its 2/sum(w) then beats window-sum, 6 dB away, when both fit.
    tool = ("essentia" if spec.window_symmetric and spec.phase_origin == "window-center"
            else "window-sum")
    other = "window-sum" if tool == "essentia" else "essentia"
    if dist[tool] < 1.0:
        dist[other] = max(dist[other], dist[tool] + 0.5)
    order = sorted(dist, key=dist.get)
    best, second = order[0], order[1]
    implied = peak * gains[best]
    if not (1e-3 <= implied <= 3):
        res.findings["scaling"] = Finding("none", f"no scaling puts the peak in the range of "
                                          f"audio (none: {20 * math.log10(max(peak, 1e-30)):.0f} "
                                          "dBFS); cannot be known, use --normalize", 0.0)
        res.level_lost = (f"no amplitude scaling puts the peak in the range of audio, "
                          f"{20 * math.log10(max(implied, 1e-30)):+.0f} dBFS at best")
        return
    conf = 0.6 if dist[second] - dist[best] > 1 else 0.3
    res.findings["scaling"] = Finding(
        best, f"a guess from the level: with '{best}' the signal peaks at "
        f"{20 * math.log10(implied):+.0f} dBFS ('{second}': "
        f"{20 * math.log10(max(peak * gains[second], 1e-30)):+.0f}); "
        "window-energy and psd differ from sqrt-n by a gain only", conf)
