"""Framing: hop, window (its shape, length and placement) and phase origin.

* coarse -- for a window ``w`` and hop ``H``, the windowed segments of
  successive frames must agree where they overlap:
  ``y_t[H+k] w[k] = y_{t+1}[k] w[H+k]``.  Three FFT correlations give the
  mismatch for every hop at once, on a slice of loud frames (:class:`_PairScan`).
* window length -- ``irfft`` of a frame is zero outside the window: a window
  shorter than n_fft (librosa ``win_length``, scipy ``nperseg < nfft``)
  shows where it sits; its exact length is the one whose pair mismatch at
  the found hop is least.
* refine -- for the best few (hop, window, phase origin, unit) candidates,
  :func:`consistency`, ``||X - STFT(ISTFT(X))|| / ||X||`` with the engine's
  own transforms on interior frames: the right one is near zero (float
  rounding), wrong ones are not.  :func:`conclude` turns the scores into findings.
"""

from __future__ import annotations

import numpy as np

from ..engine import consistency
from ..spec import SpecError, STFTSpec
from .arrays import sample, sample_rate_finding
from .result import Candidate, Finding, ProbeResult
from .units import decoded

#: Windows the search tries: periodic, as the libraries make them, and
#: symmetric (MATLAB, Octave, np.hamming, essentia), which differ from the
#: periodic ones by a point and so by tens of dB of consistency; Tukey 0.25
#: is scipy.signal.spectrogram's default.
WINDOW_CANDIDATES = ("hann", "hamming", "blackman", "rectangular", "bartlett", "sine",
                     "sqrt-hann", "hann-sym", "hamming-sym", "blackman-sym", "bartlett-sym",
                     "sine-sym", "sqrt-hann-sym", "tukey:0.25")
#: Consistency below this is "an STFT made this way"; above _NOT_CONSISTENT, "not".
_CONSISTENT = 0.02
_NOT_CONSISTENT = 0.1


# ---------------------------------------------------------- coarse: pairs
class _PairScan:
    """Overlap mismatch of successive frames for every hop at once.

    ``y_t = irfft(X_t)`` is ``w * x[tH : tH+N]`` (rolled by half a frame for a
    window-centre phase).  For the right window and hop
    ``y_t[H+k] w[k] = y_{t+1}[k] w[H+k]`` on the overlap ``0 <= k < N-H``; the
    squared mismatch is ``c(y_t^2, w^2) + c(w^2, y_{t+1}^2) - 2 c(y_t w, y_{t+1} w)``
    with ``c(f, g)[L] = sum_k f[L+k] g[k]``, three FFT correlations for all L.
    """

    def __init__(self, frames: np.ndarray, n_fft: int):
        self.n = n_fft
        self.y_file = np.fft.irfft(frames.astype(np.complex128), n=n_fft, axis=1)
        self._rolled = {}

    def scores(self, window: str, origin: str, win_length: int | None = None,
               align: str = "center") -> np.ndarray:
        """Mismatch / overlap energy for hops 0..N-1 (inf where undefined)."""
        n = self.n
        spec = STFTSpec(n_fft=n, win_length=win_length or n, hop_length=1, window=window,
                        window_align=align, phase_origin=origin)
        w = spec.padded_window
        r = spec.phase_reference      # undo a window-centre phase: y_fs = roll(y_file, r)
        if r not in self._rolled:
            self._rolled[r] = np.roll(self.y_file, r, axis=1) if r else self.y_file
        y = self._rolled[r]
        a, b = y[:-1], y[1:]
        m = 2 * n
        fa2, fb2 = np.fft.rfft(a * a, m), np.fft.rfft(b * b, m)
        fw2 = np.fft.rfft(w * w, m)
        faw, fbw = np.fft.rfft(a * w, m), np.fft.rfft(b * w, m)
        t1 = np.fft.irfft((fa2 * np.conj(fw2)).sum(0), m)[:n]
        t2 = np.fft.irfft((fw2 * np.conj(fb2)).sum(0), m)[:n]
        x = np.fft.irfft((faw * np.conj(fbw)).sum(0), m)[:n]
        den = t1 + t2
        num = np.maximum(den - 2 * x, 0)
        energy = float((a * a).sum() + (b * b).sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.sqrt(num / den)
        # Tapered windows at low overlap (blackman, 25 %) share little energy:
        # keep those hops; the engine check weeds out flukes.
        s[~(den > 1e-9 * energy * float((w * w).max()))] = np.inf
        s[: max(1, n // 8)] = np.inf      # the search range: hops n_fft/8 .. n_fft
        return s


def _score_at(scan: "_PairScan", window, origin, win_length, align, hop) -> float:
    """The pair mismatch at one hop (direct sums; for trying many window lengths)."""
    n = scan.n
    spec = STFTSpec(n_fft=n, win_length=win_length, hop_length=1, window=window,
                    window_align=align, phase_origin=origin)
    w, r = spec.padded_window, spec.phase_reference
    y = np.roll(scan.y_file, r, axis=1) if r else scan.y_file
    a, b = y[:-1, hop:], y[1:, :n - hop]
    wa, wb = w[:n - hop], w[hop:]
    num = ((a * wa - b * wb) ** 2).sum()
    den = ((a * wa) ** 2 + (b * wb) ** 2).sum()
    return float(np.sqrt(num / den)) if den > 0 else np.inf


def _refine_win_length(scan, cands: list, est_range, k: int = 4) -> list:
    """For the best few candidates with a short window, the window length
    whose pair mismatch at their hop is least (tapered windows hide their
    ends below any threshold, so the support only brackets the length)."""
    out, seen = [], set()
    for c in cands:
        if c.win_length >= c.n_fft or (c.window, c.align, c.phase_origin, c.hop) in seen:
            continue
        seen.add((c.window, c.align, c.phase_origin, c.hop))
        lo, hi = est_range
        scores = {w: _score_at(scan, c.window, c.phase_origin, w, c.align, c.hop)
                  for w in range(lo, min(hi, c.n_fft) + 1) if c.hop <= w}
        if scores:
            w = min(scores, key=scores.get)
            out.append(Candidate(c.hop, c.window, c.phase_origin, c.magnitude, scores[w],
                                 n_fft=c.n_fft, win_length=w, align=c.align))
        if len(seen) >= k:
            break
    return out


def _window_shapes(y_file: np.ndarray, known: dict, origins) -> list[tuple]:
    """(win_length, window_align, phase_origin) to search, from where frames are zero.

    ``irfft`` of each frame is the windowed segment, exactly zero outside
    the window: a window shorter than n_fft shows as a run of zeros --
    at the frame's end (scipy's left placement), at both ends (librosa's
    centred placement), or in the middle (a window-centre phase rolls it).
    Tapered windows look a sample or two shorter on each side, so a few
    lengths are tried.
    """
    n = y_file.shape[1]
    if known.get("win_length"):
        w = known["win_length"]
        aligns = ["center", "left"] if w < n else ["center"]
        return [(w, a, o) for a in aligns for o in origins]
    prof = (y_file ** 2).mean(axis=0)
    quiet = prof <= 1e-9 * max(prof.max(), 1e-300)
    gap, start = _longest_circular_run(quiet)
    if gap <= max(4, n // 64):
        return [(n, "center", o) for o in origins]
    est = n - gap                                   # support length, maybe a bit short
    s0 = (start + gap) % n                          # first sample of the support
    tol = max(3, gap // 4)
    shapes = []
    for w in sorted({min(est + d, n) for d in (1, 4)}):
        for align, origin in (("center", "frame-start"), ("left", "frame-start"),
                              ("center", "window-center")):
            if origin not in origins:
                continue
            first = STFTSpec(n_fft=n, win_length=w, hop_length=1, window_align=align,
                             phase_origin=origin)
            lead = (first.window_offset - first.phase_reference) % n
            if min((s0 - lead) % n, (lead - s0) % n) <= tol:
                shapes.append((w, align, origin))
    return shapes or [(n, "center", o) for o in origins]


def _support_range(shapes, n) -> tuple[int, int]:
    """Window lengths worth trying around the support the shapes came from."""
    est = min(w for w, _, _ in shapes)
    return max(est - 3, 1), min(n, est + max(12, est // 16))


def _longest_circular_run(mask: np.ndarray) -> tuple[int, int]:
    """(length, start) of the longest run of True in a circular boolean array."""
    n = len(mask)
    if mask.all():
        return n, 0
    if not mask.any():
        return 0, 0
    k = int(np.argmin(mask))               # start just after a False: no run wraps then
    m = np.roll(mask, -k)
    best, best_start, run = 0, 0, 0
    for i, q in enumerate(np.r_[m, False]):
        if q:
            run += 1
        else:
            if run > best:
                best, best_start = run, (i - run + k) % n
            run = 0
    return best, best_start


def _hop_candidates(score: np.ndarray, k: int = 3) -> list[int]:
    """The ``k`` best local minima of a score curve."""
    s = score
    fin = np.isfinite(s)
    if not fin.any():
        return []
    idx = np.flatnonzero(fin)
    left = np.r_[np.inf, s[:-1]]
    right = np.r_[s[1:], np.inf]
    minima = [i for i in idx if s[i] <= left[i] and s[i] <= right[i]]
    minima.sort(key=lambda i: s[i])
    return [int(i) for i in minima[:k]]


# ------------------------------------------------------- refine: engine
def loud_slice(power: np.ndarray, length: int, step: int = 1, total: int | None = None) -> slice:
    """``length`` consecutive frames around the loudest stretch.

    ``power``: the power of every ``step``-th frame of ``total`` (a long
    file is sampled, not read whole: :func:`frame_power`)."""
    t = len(power) * step if total is None else total
    if t <= length:
        return slice(0, t)
    if step > 1:
        i = int(np.argmax(power)) * step
        i = min(max(i - length // 2, 0), t - length)
        return slice(i, i + length)
    c = np.convolve(power, np.ones(length), mode="valid")
    i = int(np.argmax(c))
    return slice(i, i + length)


#: Frames the probe decodes at most to find the loud stretches of a file.
MAX_POWER_FRAMES = 4096


def frame_power(fb, pb, n_fft, mag, unit) -> tuple[np.ndarray, int, int]:
    """``(power, step, n_frames)``: the power of every ``step``-th frame, at
    most :data:`MAX_POWER_FRAMES` of them (a long file costs no more)."""
    n = fb.shape[0]
    step = max(1, -(-n // MAX_POWER_FRAMES))
    power = []
    for i in range(0, n, 256 * step):        # a few MB at a time
        x = decoded(fb, pb, n_fft, mag, unit, slice(i, min(n, i + 256 * step), step))
        power.append((np.abs(x) ** 2).sum(1))
    return (np.concatenate(power) if power else np.zeros(0)), step, n


# ------------------------------------------------------------ the search
def search(fb, pb, n_fft, mags, unit, known, res, bar) -> list[Candidate]:
    """Coarse pair scan over (unit, window, origin) for all hops; refine the
    best with the engine."""
    n_frames = fb.shape[0]
    if n_frames < 3:
        res.problems.append(f"only {n_frames} frame(s): too short to tell how frames overlap; "
                            "give --hop-length and --window, or a longer file")
        return []
    windows = [known["window"]] if known.get("window") else list(WINDOW_CANDIDATES)
    origins = ([known["phase_origin"]] if known.get("phase_origin")
               else ["frame-start", "window-center"])
    power = frame_power(fb, pb, n_fft, mags[0], unit)
    sl = loud_slice(*power[:1], 25, *power[1:])
    cands: list[Candidate] = []
    for mag in mags:
        scan = _PairScan(decoded(fb, pb, n_fft, mag, unit, sl), n_fft)
        shapes = _window_shapes(scan.y_file, known, origins)
        for win in windows:
            for wl, align, origin in shapes:
                s = scan.scores(win, origin, wl, align)
                if known.get("hop_length"):
                    h = known["hop_length"]
                    hops = [h] if h < n_fft else []
                else:
                    hops = _hop_candidates(s)
                if mag == mags[0] and (wl == shapes[0][0]):
                    res.curves[f"{win}/{origin}" + (f"/{wl}" if wl != n_fft else "")] = s
                cands += [Candidate(h, win, origin, mag, float(s[h]) if h < n_fft else np.inf,
                                    n_fft=n_fft, win_length=wl, align=align) for h in hops]
        if shapes[0][0] < n_fft and not known.get("win_length"):
            mine = sorted((c for c in cands if c.magnitude == mag), key=lambda c: c.pair_score)
            cands += _refine_win_length(scan, mine, _support_range(shapes, n_fft))
    bar.step()
    cands.sort(key=lambda c: c.pair_score)
    floor = float(sample(fb).min()) if "top_db" in res.findings else None
    return _refine(fb, pb, n_fft, unit, cands, known, power, floor)


def _twin(window: str) -> str | None:
    """The symmetric window of a periodic name and the other way round."""
    if ":" in window or window == "rectangular":
        return None
    return window[:-4] if window.endswith("-sym") else window + "-sym"


def candidate_spec(c: Candidate, n_fft: int) -> STFTSpec:
    return STFTSpec(n_fft=n_fft, hop_length=c.hop, window=c.window, center=False,
                    phase_origin=c.phase_origin, win_length=c.win_length or n_fft,
                    window_align=c.align)


def _refine(fb, pb, n_fft, unit, cands, known, power, floor=None) -> list[Candidate]:
    """Engine consistency for the best distinct candidates, on a longer loud slice."""
    top, seen = [], set()
    for c in cands:
        k = (c.hop, c.window, c.phase_origin, c.magnitude, c.win_length, c.align)
        if k in seen or not np.isfinite(c.pair_score):
            continue
        seen.add(k)
        top.append(c)
        if len(top) >= 12:
            break
    # The symmetric and the periodic window of a name pair-score alike: the
    # engine check must see both of the best few.
    for c in list(top[:4]):
        twin = _twin(c.window)
        k = (c.hop, twin, c.phase_origin, c.magnitude, c.win_length, c.align)
        if twin and k not in seen:
            seen.add(k)
            top.append(Candidate(c.hop, twin, c.phase_origin, c.magnitude, c.pair_score,
                                 n_fft=c.n_fft, win_length=c.win_length, align=c.align))
    for c in top:
        r = -(-n_fft // c.hop)
        sl = loud_slice(*power[:1], 2 * r + 16, *power[1:])
        try:
            spec = candidate_spec(c, n_fft)
        except SpecError:
            c.consistency = np.inf
            continue
        mask = None if floor is None else np.asarray(fb[sl]) != floor
        c.consistency = consistency(decoded(fb, pb, n_fft, c.magnitude, unit, sl), spec,
                                    mask=mask)
    top = _distinct(top, n_fft)
    top.sort(key=lambda c: c.relative)
    return top + [c for c in cands if c not in top]


def _distinct(cands: list, n_fft: int) -> list:
    """One candidate per distinct frame model: a symmetric window of w + 1
    points whose last is 0 is the periodic one of w points (hann, bartlett),
    the same hypothesis twice; the periodic name stays."""
    out, seen = [], {}
    for c in sorted(cands, key=lambda c: c.window.endswith("-sym")):
        try:
            w = candidate_spec(c, n_fft).padded_window
        except SpecError:
            out.append(c)
            continue
        key = (c.hop, c.phase_origin, c.magnitude, np.round(w, 12).tobytes())
        if key not in seen:
            seen[key] = c
            out.append(c)
    return out


# ------------------------------------------------------------- findings
def conclude(cands: list[Candidate], n_fft: int, known, res: ProbeResult) -> STFTSpec | None:
    """The hop, window, phase origin, magnitude unit and window length findings
    from the scored candidates; the best one's spec (uncentred), or None when
    no candidate makes the frames consistent."""
    res.candidates = cands
    res.findings["sample_rate"] = sample_rate_finding(known)
    res.findings["win_length"] = Finding(known.get("win_length", n_fft), "untested",
                                         2.0 if known.get("win_length") else 0.0)
    best = cands[0] if cands and cands[0].consistency is not None else None
    # Near zero, and far below what random frames score at that hop.
    if best is None or not (best.consistency < _NOT_CONSISTENT and best.relative < 0.2):
        _cannot_tell(res, best, known, n_fft)
        return None
    best, sym_txt, sym_conf = _symmetry(cands, best)
    twin = _twin(best.window)
    alt = next((c for c in cands[1:] if c.consistency is not None
                and (c.hop, c.window, c.win_length) != (best.hop, best.window, best.win_length)
                and not (c.hop == best.hop and c.window == twin)), None)
    ratio = (alt.relative / max(best.relative, 1e-12)) if alt else np.inf
    conf = (0.97 if best.consistency < 1e-3 and best.relative < 1e-2 and ratio > 100 else
            0.85 if best.consistency < _CONSISTENT and best.relative < 0.05 and ratio > 5 else
            0.4 if ratio > 2 else 0.0)
    alt_txt = (f"; next best {alt.window} hop {alt.hop}: {alt.consistency:.2g}" if alt else "")
    ev = (f"||X - STFT(ISTFT(X))||/||X|| = {best.consistency:.2g} with hop {best.hop}, "
          f"{best.window} window{alt_txt}")
    given = lambda k: 2.0 if known.get(k) is not None else conf   # noqa: E731
    res.findings["hop_length"] = Finding(best.hop, ev, given("hop_length"))
    res.findings["window"] = Finding(best.window, ev + sym_txt,
                                     given("window") if known.get("window") else
                                     min(conf, sym_conf))
    res.findings["phase_origin"] = Finding(
        best.phase_origin, "phases referenced to the " +
        ("window centre (ShortTimeFFT)" if best.phase_origin == "window-center" else
         "frame start") + f": consistency {best.consistency:.2g}", given("phase_origin"))
    _magnitude_finding(cands, best, known, res)
    if conf == 0:
        res.problems.append(f"hop/window: {best.window} hop {best.hop} and {alt.window} hop "
                            f"{alt.hop} fit about equally well; give --hop-length or --window"
                            + ("; frames that barely overlap carry almost no redundancy, and "
                               f"if they do not overlap at all (hop = n_fft = {n_fft}) nothing "
                               "can be inferred" if best.hop > 7 * n_fft // 8 else ""))
    _window_length_finding(best, n_fft, known, res)
    return candidate_spec(best, n_fft)


def _symmetry(cands: list, best: Candidate) -> tuple[Candidate, str, float]:
    """The symmetric and the periodic window of the best name, told apart by
    consistency: ``(candidate, evidence, confidence)``.  When they fit about
    equally (a dB floor or noise hides the one point they differ by), the
    periodic one, the libraries' default, is taken and said to be a guess."""
    twin = next((c for c in cands if c.hop == best.hop and c.window == _twin(best.window)
                 and c.phase_origin == best.phase_origin and c.magnitude == best.magnitude
                 and c.consistency is not None), None)
    if twin is None:
        return best, "", 1.0
    ratio = twin.relative / max(best.relative, 1e-12)
    sym = best.window.endswith("-sym")
    text = (f"; {'symmetric' if sym else 'periodic'}: {best.consistency:.2g}, "
            f"{'periodic' if sym else 'symmetric'} {twin.window}: {twin.consistency:.2g}")
    if ratio >= 3:
        return best, text, 1.0
    pick = twin if sym else best
    return pick, text + "; they fit about equally: periodic assumed (the libraries' default)", 0.6


def _window_length_finding(best: Candidate, n_fft: int, known, res: ProbeResult):
    w = best.win_length or n_fft
    if known.get("win_length"):
        ev, conf = "given", 2.0
    elif w < n_fft:
        ev = (f"the frames are zero outside {w} samples "
              + ("at the start of the frame (scipy: nperseg < nfft)" if best.align == "left"
                 else "in the middle of the frame (librosa/torch: win_length < n_fft)")
              + f"; consistency {best.consistency:.2g}")
        conf = res.confidence("hop_length")
    else:
        ev, conf = "the frames are non-zero across all n_fft samples", res.confidence("hop_length")
    res.findings["win_length"] = Finding(w, ev, conf)
    res.findings["window_align"] = Finding(best.align, ev if w < n_fft else "full-length window",
                                           conf)


def _magnitude_finding(cands, best, known, res):
    if best.magnitude == "complex":
        res.findings["magnitude"] = Finding("linear", "complex values", 1.0)
        return
    others = [c for c in cands if c.consistency is not None and c.magnitude != best.magnitude]
    ev = f"{best.magnitude} makes the frames consistent ({best.consistency:.2g})"
    if others:
        o = min(others, key=lambda c: c.consistency)
        ev += f"; {o.magnitude} at best {o.consistency:.2g}"
    res.findings["magnitude"] = Finding(best.magnitude, ev, 2.0 if known.get("magnitude") else
                                        res.confidence("hop_length") if not others else
                                        min(res.confidence("hop_length"), 0.97))
    if "db_ref" not in res.findings:
        res.findings["db_ref"] = Finding(1.0, "dB relative to 1 (the values are not relative "
                                         "to their maximum)" if best.magnitude.startswith("db")
                                         else "not dB", 0.6)


def _cannot_tell(res, best, known, n_fft):
    c = "none" if best is None else f"{best.consistency:.2g}"
    for k in ("hop_length", "window", "phase_origin", "magnitude"):
        if k not in res.findings or res.findings[k].value is None:
            res.findings[k] = Finding(known.get(k), "no candidate makes the frames consistent "
                                      f"(best {c})", 2.0 if known.get(k) else 0.0)
    res.findings.setdefault("center", Finding(known.get("center"), "untested", 0.0))
    res.findings.setdefault("scaling", Finding(known.get("scaling"), "untested", 0.0))
    res.findings.setdefault("db_ref", Finding(1.0, "untested", 0.0))
    if best is not None:
        res.problems.append(
            f"no hop from n_fft/8 to n_fft and no window ({', '.join(WINDOW_CANDIDATES)}) makes "
            f"these frames consistent (best {best.window} hop {best.hop}: {c}); they may be noise, "
            "edited, not from a real signal, use a window shorter than n_fft, or frames that do "
            f"not overlap (hop = n_fft = {n_fft}, which any frames fit). Give --hop-length and "
            "--window if you know them")


def magnitude_only(res, known, mags, n_fft):
    """The findings a magnitude alone allows: hop and window only when given."""
    if mags[0].startswith("db") and "db_ref" in res.findings and res.confidence("db_ref") < 0.5:
        res.level_lost = "dB values relative to their maximum, ref=np.max"
    res.findings["magnitude"] = Finding(mags[0], "magnitude only: linear or power cannot be told "
                                        "apart without a phase (consistency needs one)", 0.3)
    for name in ("hop_length", "window"):
        if known.get(name) is not None:
            res.findings[name] = Finding(known[name], "given", 2.0)
        else:
            res.findings[name] = Finding(None, "a magnitude alone cannot show how frames overlap",
                                         0.0)
    res.findings["center"] = Finding(known.get("center", True),
                                     "given" if "center" in known else "assumed (librosa default)",
                                     2.0 if "center" in known else 0.2)
    res.findings["win_length"] = Finding(n_fft, "assumed n_fft", 0.3)
    res.findings["scaling"] = Finding(known.get("scaling", "none"), "unknown without a phase", 0.0)
    res.findings["sample_rate"] = sample_rate_finding(known)
    res.findings["phase_origin"] = Finding("frame-start", "assumed", 0.2)
    res.findings["db_ref"] = res.findings.get("db_ref", Finding(1.0, "assumed", 0.2))
    if not (known.get("hop_length") and known.get("window")):
        res.problems.append("magnitude only: hop and window cannot be inferred from a magnitude "
                            "alone; give the phase file (or complex frames), or --hop-length and "
                            "--window (then phase reconstruction rebuilds a phase)")
