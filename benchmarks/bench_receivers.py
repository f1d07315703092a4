"""Quick quality of the baseline receivers on the val clips.

For each val clip (first ``--seconds`` s of its 256x256, 25 fps canvas): the identity frame
is canvas frame 0, the low-res stream is the exact 8x8 box downsampling of every 5th canvas
frame (5 fps, unquantised), and each receiver rebuilds 25 fps. Prints PSNR (dB, RGB) and
SSIM (luma) against the canvas, excluding frame 0 (the identity frame itself), per clip and
averaged over clips. The full benchmark through the bitstream, with every metric, is
``bench_bpp.py``; the receivers' speed is ``bench_speed.py``.

    nice .venv/bin/python -m benchmarks.bench_receivers [--seconds 10] [--receivers a,b]
        [--low-latency] [--bitstream] [--cache DIR]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.bench_receivers ...")

import cv2
import numpy as np

from codec import FRAME_MS
from codec.bitstream.packet import Packet
from codec.data import data_dir as data_root
from codec.metrics.fidelity import mean_psnr, psnr, ssim
from codec.receiver.pipeline import decode_packets
from codec.receiver.registry import get_receiver
from codec.sender.downsample import box_downsample
from codec.sender.sender import Sender
from codec.types import FaceClip, IdentityFrame, LowResFrame

BASELINES = ("identity", "bicubic", "backproject", "align")


def cached_canvas(path: Path, seconds: float, cache: Path | None) -> np.ndarray:
    """``load_canvas``, kept as .npy under ``cache`` (when given) for repeated runs."""
    if cache is None:
        return load_canvas(path, seconds)
    cache.mkdir(parents=True, exist_ok=True)
    file = cache / f"{path.stem}_{seconds:g}s.npy"
    if file.exists():
        return np.load(file)
    frames = load_canvas(path, seconds)
    np.save(file, frames)
    return frames


def load_canvas(path: Path, seconds: float) -> np.ndarray:
    """(T, 256, 256, 3) uint8 canvas frames at 25 fps: the sender's own front end when it is
    there, else a centre square crop resized to 256 (nearest frame in time)."""
    try:
        from codec.sender.canvas import load_face_clip
    except ImportError:
        pass
    else:
        return load_face_clip(path, max_seconds=seconds).frames
    from codec.sender.video_io import iter_video_frames

    frames: list[np.ndarray] = []
    times: list[float] = []
    for f in iter_video_frames(path, max_side=720, max_seconds=seconds):
        h, w = f.image.shape[:2]
        s = min(h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        crop = f.image[y0 : y0 + s, x0 : x0 + s]
        frames.append(cv2.resize(crop, (256, 256), interpolation=cv2.INTER_AREA))
        times.append(f.time_s)
    n = int(np.floor(times[-1] * 25.0)) + 1
    pick = np.searchsorted(times, np.arange(n) / 25.0 - 1e-6).clip(0, len(frames) - 1)
    return np.stack([frames[i] for i in pick])


def val_clips(limit: int | None) -> list[Path]:
    root = data_root()
    with open(root / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "val"]
    paths = [root / r["file"] for r in rows]
    return paths[:limit] if limit else paths


def evaluate(
    name: str, canvas: np.ndarray, packets: list[Packet] | None = None, **kw: object
) -> tuple[float, float]:
    """(mean PSNR, mean SSIM) of one receiver on one canvas clip: from the exact 8x8 frames,
    or from ``packets`` through the bitstream decoders."""
    receiver = get_receiver(name, **kw)
    if packets is not None:
        out = decode_packets(packets, receiver).frames
    else:
        identity = IdentityFrame(image=canvas[0])
        keys = range(0, len(canvas), 5)
        lowres = [LowResFrame(box_downsample(canvas[k], 32), int(k * 40)) for k in keys]
        out = receiver.run(identity, lowres, end_ms=len(canvas) * FRAME_MS)
    if len(out) != len(canvas):
        raise RuntimeError(f"{name}: {len(out)} frames for a {len(canvas)}-frame clip")
    p = [psnr(o.image, c) for o, c in zip(out[1:], canvas[1:], strict=True)]
    s = [ssim(o.image, c) for o, c in zip(out[1:], canvas[1:], strict=True)]
    return mean_psnr(p), float(np.mean(s))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--receivers", default=",".join(BASELINES))
    ap.add_argument("--clips", type=int, default=None, help="only the first N val clips")
    ap.add_argument("--kind", default=None, help="upsampler kind for all: cubic or linear")
    ap.add_argument("--plain", action="store_true", help="plain (not box-consistent) cubic")
    ap.add_argument("--cache", type=Path, default=None, help="keep decoded canvases here")
    ap.add_argument("--low-latency", action="store_true", help="receivers in low-latency mode")
    ap.add_argument("--bitstream", action="store_true",
                    help="through the default Sender and the packet decoders (quantised 8x8, "
                         "coded identity frame, no audio) instead of exact 8x8 frames")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    names = args.receivers.split(",")
    kw: dict[str, object] = {"low_latency": args.low_latency}
    if args.kind:
        kw["kind"] = args.kind
    results: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    print(f"{'clip':44s} " + " ".join(f"{n:>16s}" for n in names))
    for path in val_clips(args.clips):
        canvas = cached_canvas(path, args.seconds, args.cache)
        packets = None
        if args.bitstream:
            packets = Sender(with_audio=False).encode_clip(FaceClip(frames=canvas))
        row = []
        for n in names:
            extra = dict(kw)
            if args.plain and n in ("bicubic", "backproject"):
                extra["consistent"] = False
            r = evaluate(n, canvas, packets, **extra)
            results[n].append(r)
            row.append(f"{r[0]:6.2f} dB {r[1]:.3f}")
        print(f"{path.name[-44:]:44s} " + " ".join(f"{c:>16s}" for c in row), flush=True)
    print(f"{'mean over clips':44s} " + " ".join(
        f"{np.mean([r[0] for r in results[n]]):6.2f} dB "
        f"{np.mean([r[1] for r in results[n]]):.3f}"
        for n in names
    ))


if __name__ == "__main__":
    main()
