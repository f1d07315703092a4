"""Speech through ``codec.audio.opus``: measured bitrate, alignment and speed per target rate.

Usage: nice .venv/bin/python -m benchmarks.bench_opus [--seconds 10] [--bitrates 6000 8000 12000]

The speech is the audio of the val clips with speech (manifest), concatenated to
``--seconds``. For each target it prints the measured payload bitrate (Opus packet bytes
only, no talkcodec headers), the lag of the best input/output cross-correlation (samples at
16 kHz; 0 means the decoder's 7 ms delay compensation is exact), the correlation of the
20 ms loudness envelopes, and the encode and decode speed in x real time.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.bench_opus ...")

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from codec.audio.opus import OpusDecoder, OpusEncoder  # noqa: E402
from codec.data import data_dir as data_root  # noqa: E402
from codec.sender.video_io import read_audio  # noqa: E402

RATE = 16000


def val_speech(seconds: float) -> np.ndarray:
    with open(data_root() / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "val" and r["speech"] == "yes"]
    parts: list[np.ndarray] = []
    for row in rows:
        pcm = read_audio(data_root() / row["file"])
        if pcm is not None:
            parts.append(pcm)
        if sum(len(p) for p in parts) >= seconds * RATE:
            break
    return np.concatenate(parts)[: int(seconds * RATE)]


def envelope(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.convolve(x**2, np.ones(320) / 320, "valid"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--bitrates", type=int, nargs="*", default=[6000, 8000, 12000])
    args = ap.parse_args()
    pcm = val_speech(args.seconds)
    secs = len(pcm) / RATE
    print(f"{secs:.1f} s of val speech; load average {os.getloadavg()[0]:.1f}")
    print(f"{'target':>7s} {'measured':>9s} {'packets':>7s} {'lag':>4s} {'env corr':>8s} "
          f"{'enc xRT':>8s} {'dec xRT':>8s}")
    for bitrate in args.bitrates:
        t0 = time.perf_counter()
        enc = OpusEncoder(bitrate=bitrate)
        packets = enc.encode(pcm) + enc.flush()
        t_enc = time.perf_counter() - t0
        measured = sum(len(b) for b, _ in packets) * 8 / secs
        t0 = time.perf_counter()
        dec = OpusDecoder()
        out = np.zeros(len(pcm), np.float32)
        for b, ts in packets:
            c = dec.decode(b, ts)
            off = int(round(c.timestamp_ms * RATE / 1000))
            s0, s1 = max(0, off), min(len(out), off + len(c.samples))
            if s1 > s0:
                out[s0:s1] = c.samples[s0 - off: s1 - off]
        t_dec = time.perf_counter() - t0
        seg = slice(RATE, len(pcm) - RATE)
        lags = np.arange(-48, 49)
        lag = int(lags[np.argmax([np.dot(pcm[seg], np.roll(out, -k)[seg]) for k in lags])])
        corr = float(np.corrcoef(envelope(pcm), envelope(out))[0, 1])
        print(f"{bitrate:7d} {measured:9.0f} {len(packets):7d} {lag:4d} {corr:8.3f} "
              f"{secs / t_enc:8.0f} {secs / t_dec:8.0f}")


if __name__ == "__main__":
    main()
