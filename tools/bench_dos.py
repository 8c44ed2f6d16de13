"""Denial-of-service check: a good real-time stream while a second sender floods the player.

    python tools/bench_dos.py [--seconds 30] [--flood garbage,headers,frames]

A ``specstream play --sink null`` listens on loopback; ``specstream send --analyze``
streams a synthesised clip to it at real time; meanwhile this process floods the
same endpoint from a raw ZeroMQ PUSH socket, as fast as it can, with garbage
(random bytes, bit-flipped and truncated messages), valid headers of foreign
streams (a hijack attempt: each one a new stream id) and frames of streams that
never sent a header.  The player's summary says what reached the sink: frames
played, dropped, late, concealed, the messages it rejected, and the latency
from the producer's timestamp to the engine's output (p50/p99).  The good
stream should play whole, with its latency as without the flood.

Prints figures; never fails.  Loopback only; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream.protocol import MsgType, StreamHeader, frames_message, pack_envelope  # noqa: E402
from stream.spec import STFTSpec  # noqa: E402

PY = [sys.executable, "-m", "stream"]
SR, N_FFT, HOP = 48000, 1024, 256


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH")
                                                     else []))
    return e


def flood_messages(kinds: set, rng: np.random.Generator):
    """An endless supply of hostile messages of the asked kinds."""
    spec = STFTSpec(sample_rate=SR, n_fft=N_FFT, hop_length=HOP)
    good_frames = [bytes(p) for p in frames_message(
        StreamHeader(1, spec), 0, np.zeros((1, 4, spec.n_bins), "<c8"))]
    makers = []
    if "garbage" in kinds:
        def garbage():
            parts = [bytearray(p) for p in good_frames]
            how = rng.integers(3)
            if how == 0:
                return [rng.bytes(int(rng.integers(1, 512)))]
            if how == 1:
                j = int(rng.integers(len(parts[0])))
                parts[0][j] ^= 1 << int(rng.integers(8))
            else:
                parts[1] = parts[1][:int(rng.integers(len(parts[1])))]
            return [bytes(p) for p in parts]
        makers.append(garbage)
    if "headers" in kinds:
        def header():
            sid = int(rng.integers(1, 1 << 32))
            return [pack_envelope(MsgType.HEADER, sid, 0),
                    StreamHeader(sid, spec).to_json()]
        makers.append(header)
    if "frames" in kinds:
        def frames():
            sid = int(rng.integers(1, 1 << 32))
            return [pack_envelope(MsgType.FRAMES, sid, 0, 4)] + good_frames[1:]
        makers.append(frames)
    while True:
        yield makers[int(rng.integers(len(makers)))]()


def flood(endpoint: str, seconds: float, kinds: set, counts: dict):
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 1000)
    s.setsockopt(zmq.SNDTIMEO, 100)     # a player that falls behind holds us back
    s.connect(endpoint)
    end = time.monotonic() + seconds
    for msg in flood_messages(kinds, np.random.default_rng(7)):
        if time.monotonic() >= end:
            break
        try:
            s.send_multipart(msg)
            counts["sent"] += 1
        except zmq.Again:
            counts["blocked"] += 1
    s.close(linger=0)
    ctx.term()


def run(seconds: float, kinds: set) -> dict:
    with tempfile.TemporaryDirectory(prefix="specstream-dos-") as tmp:
        from stream.cli.live import synth_clip
        import soundfile as sf
        clip = Path(tmp) / "clip.wav"
        sf.write(clip, synth_clip(seconds, SR), SR, subtype="FLOAT")
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        play = subprocess.Popen(PY + ["play", "--bind", endpoint, "--sink", "null"],
                                stderr=subprocess.PIPE, text=True, env=env())
        lines = []
        ready = threading.Event()

        def relay():
            for line in play.stderr:
                lines.append(line)
                if "listening on" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=relay, daemon=True).start()
        ready.wait(30)
        counts = {"sent": 0, "blocked": 0}
        flooder = None
        if kinds:
            flooder = threading.Thread(target=flood, args=(endpoint, seconds + 2, kinds,
                                                           counts), daemon=True)
            flooder.start()
        send = subprocess.run(PY + ["send", "--analyze", str(clip), "--connect", endpoint,
                                    "--n-fft", str(N_FFT), "--hop-length", str(HOP),
                                    "--rate", "realtime"], capture_output=True, text=True,
                              env=env(), timeout=seconds * 3 + 60)
        try:
            play.wait(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            play.kill()
        if flooder is not None:
            flooder.join(seconds + 10)
        time.sleep(0.2)
        return {"player": "".join(lines), "sender_rc": send.returncode, "flood": counts,
                "sent": re.search(r"(\d+) frames", send.stderr)}


def figures(result: dict) -> dict:
    text = result["player"]

    def num(pattern):
        m = re.search(pattern, text)
        return m.group(1) if m else "?"
    return {
        "frames_in": num(r"frames: (\d+) in"), "played": num(r"(\d+) played"),
        "dropped": num(r"played, (\d+) dropped"), "late": num(r"\((\d+) late"),
        "concealed": num(r"(\d+) concealed"), "messages": num(r"messages: (\d+)"),
        "malformed": num(r"(\d+) malformed"),
        "waiting_headers": num(r"streams: (\d+) header"),
        "latency": num(r"latency producer->engine: ([^\n]+)"),
        "flood_sent": result["flood"]["sent"], "flood_blocked": result["flood"]["blocked"],
        "sender_frames": result["sent"].group(1) if result["sent"] else "?",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--flood", default="garbage,headers,frames",
                    help="comma-separated kinds: garbage, headers, frames")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    kinds = {k for k in args.flood.split(",") if k}
    rows = {"quiet (no flood)": figures(run(args.seconds, set())),
            f"flood ({', '.join(sorted(kinds))})": figures(run(args.seconds, kinds))}
    if args.json:
        print(json.dumps(rows))
        return
    print(f"specstream DoS check: {args.seconds:g} s real-time stream, {SR} Hz, n_fft {N_FFT}, "
          f"hop {HOP}, player --sink null; flood from a raw PUSH socket, as fast as it goes")
    keys = ["sender_frames", "frames_in", "played", "dropped", "late", "concealed",
            "messages", "malformed", "waiting_headers", "flood_sent", "flood_blocked",
            "latency"]
    for name, row in rows.items():
        print(f"\n{name}")
        for k in keys:
            print(f"  {k:<16} {row[k]}")


if __name__ == "__main__":
    main()
