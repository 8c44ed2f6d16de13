#!/usr/bin/env python
"""Plot a run of ``specstream play --stats-file F.jsonl``: latency, target and drift.

Usage::

    specstream play --stats-file run.jsonl ...
    python tools/plot_latency.py run.jsonl -o run.png [--title TEXT] [--truth-ppm 2000]

Three panels over the run's time (s):

1. the output latency (ms: from a write to its first sample at the DAC, as
   PortAudio's ``outputBufferDacTime`` tells it, averaged over each second),
   the latency target and the sink's queue; underruns are marked;
2. the producer/device rate ratio the drift controller estimates (ppm off
   1) and the factor it resamples by, with ``--truth-ppm`` drawn if known;
3. the arrival jitter (peak and mean over the tuner's window, ms).

Needs matplotlib (``pip install 'specstream[plot]'``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load(path: Path) -> dict[str, list]:
    """The stats file as columns (None where a line has no value)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"{path}: no statistics lines")
    keys = sorted({k for r in rows for k in r})
    return {k: [r.get(k) for r in rows] for k in keys}


def _xy(cols, key):
    pts = [(t, v) for t, v in zip(cols["time"], cols.get(key, [])) if v is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot(cols: dict, out: Path, title: str = "", truth_ppm: float | None = None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2, a3) = plt.subplots(3, 1, figsize=(10, 8), sharex=True,
                                     gridspec_kw={"height_ratios": [3, 2, 1.3]})
    for key, label, style in (("latency_ms", "output latency (to the DAC)", "-"),
                              ("target_ms", "latency target", "--"),
                              ("queue_ms", "sink queue (ring)", ":")):
        a1.plot(*_xy(cols, key), style, label=label, lw=1.2)
    under = cols.get("underruns") or []
    t = cols["time"]
    marks = [t[i] for i in range(1, len(under)) if (under[i] or 0) > (under[i - 1] or 0)]
    for i, x in enumerate(marks):
        a1.axvline(x, color="red", alpha=0.4, lw=0.8, label="underrun" if i == 0 else None)
    a1.set_ylabel("ms")
    a1.legend(loc="upper right", fontsize=8)
    a1.grid(alpha=0.3)
    a2.plot(*_xy(cols, "ratio_ppm"), label="ratio estimate", lw=1.2)
    a2.plot(*_xy(cols, "factor_ppm"), label="resampling factor", lw=0.6, alpha=0.6)
    if truth_ppm is not None:
        a2.axhline(truth_ppm, color="k", ls="--", lw=0.8, label=f"truth {truth_ppm:+g} ppm")
        est = _xy(cols, "ratio_ppm")[1]
        if est and max(abs(v - truth_ppm) for v in est[len(est) // 10:]) < 300:
            a2.set_ylim(truth_ppm - 300, truth_ppm + 300)     # zoom on the settled estimate
    a2.set_ylabel("ppm (producer vs device)")
    a2.legend(loc="upper right", fontsize=8)
    a2.grid(alpha=0.3)
    a3.plot(*_xy(cols, "jitter_peak_ms"), label="arrival jitter, peak", lw=1)
    a3.plot(*_xy(cols, "jitter_mean_ms"), label="mean", lw=1)
    a3.set_ylabel("ms")
    a3.set_xlabel("time (s)")
    a3.legend(loc="upper right", fontsize=8)
    a3.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stats", type=Path, help="a --stats-file of specstream play (JSON lines)")
    p.add_argument("-o", "--output", type=Path, help="PNG to write (default: STATS.png)")
    p.add_argument("--title", default="", help="figure title")
    p.add_argument("--truth-ppm", type=float, help="the producer's true drift, to draw")
    args = p.parse_args(argv)
    out = args.output or args.stats.with_suffix(".png")
    try:
        plot(load(args.stats), out, args.title, args.truth_ppm)
    except ImportError:
        print("plot_latency: matplotlib is missing: pip install matplotlib", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
