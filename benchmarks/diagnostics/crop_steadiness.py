"""How steady the sender's face crop is, per clip: crop jitter, crop shake, A/V length.

    python -m benchmarks.diagnostics.crop_steadiness [--clips PATTERN ...] [--max-seconds N]

For each clip (default: the 71 s 512x512 news clip and clips whose crop is smaller than the
frame, wide shots, portrait HEVC, a split screen) it prints the source size and fps, the
canvas frames of ``load_face_clip``, the crop jitter (mean frame-to-frame movement of the
crop centre in canvas pixels, ``canvas_jitter``), the crop shake (mean absolute second
difference of the centre: what is left after smooth re-centring) and the difference between
the audio and canvas durations. The front end's speed is ``bench_speed.py`` (``--clip``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: "
             "python -m benchmarks.diagnostics.crop_steadiness ...")

import numpy as np

from codec.data import data_dir as data_root
from codec.sender.canvas import load_face_clip
from codec.sender.crop_plan import canvas_jitter

DEFAULT_CLIPS = [
    "sstzal__DFRF__dataset__vids__cnn2_25fps.mp4",  # 512x512, 71 s
    "video-retalking__examples__face__1.mp4",  # 700x700, 22 fps (val)
    "icpr2020dfdc__notebook__samples__lynaeydofd.mp4",  # 1920x1080 wide shot, 29.97 fps
    "ajay-sainy__Wav2Lip-GFPGAN__inputs__kim_7s_raw.mp4",  # 1920x1080, 30 fps
    "bytedance__LatentSync__assets__demo2_video.mp4",  # portrait 1080x1920 HEVC
    "VisualVoice__test_videos__interview.mp4",  # split screen, two people
]


def shake(boxes_xys: np.ndarray, size: int = 256) -> float:
    b = np.asarray(boxes_xys, dtype=np.float64)
    if len(b) < 3:
        return 0.0
    c = (b[:, :2] + b[:, 2:3] / 2) * size / b[:, 2:3]
    return float(np.hypot(*np.diff(c, n=2, axis=0).T).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="*", default=DEFAULT_CLIPS, help="file name parts")
    ap.add_argument("--max-seconds", type=float, default=None)
    args = ap.parse_args()
    with open(data_root() / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    print(f"{'clip':44s} {'source':>15s} {'frames':>6s} {'jitter':>7s} {'shake':>6s} "
          f"{'A-V ms':>7s}")
    for part in args.clips:
        row = next((r for r in rows if part in r["file"]), None)
        if row is None:
            print(f"{part[:44]:44s} not in the manifest")
            continue
        clip = load_face_clip(data_root() / row["file"], max_seconds=args.max_seconds)
        assert clip.boxes is not None
        av_ms = float("nan")
        if clip.audio is not None:
            av_ms = (len(clip.audio) / clip.sample_rate - clip.duration_s) * 1000
        src = f"{row['width']}x{row['height']}@{float(row['fps']):.3g}"
        name = Path(row["file"]).name.split("__", 1)[-1]
        print(f"{name[:44]:44s} {src:>15s} {clip.n_frames:6d} "
              f"{canvas_jitter(clip.boxes):7.3f} {shake(clip.boxes):6.3f} {av_ms:7.1f}")


if __name__ == "__main__":
    main()
