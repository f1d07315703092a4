"""Light cache for the ``voice`` receiver (issue 14): per manifest row, a few canvas faces
and the clip's speech, under cache/voice/<clip>.npz (restartable: done clips are skipped).

Per clip: ``faces`` (N, 64, 64, 3) uint8 canvas frames (every 5th of the first
``--face-seconds``, area-downsampled from the sender's own 256x256 canvas, so the 8x8 box
means of a face equal those of the canvas frame), ``lowres`` (N, 8, 8, 3) float32 exact box
means, ``audio`` (16 kHz mono speech of the first ``--audio-seconds``, empty without audio).

    nice -n 5 .venv/bin/python -m training.build_voice_cache
"""

from __future__ import annotations

import argparse

import numpy as np

from codec.sender.canvas import load_face_clip
from codec.sender.video_io import read_audio
from training.paths import cache_dir, data_dir, manifest_rows


def area(frames: np.ndarray, size: int) -> np.ndarray:
    f = frames.shape[1] // size
    return frames.reshape(len(frames), size, f, size, f, 3).mean(axis=(2, 4))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--face-seconds", type=float, default=4.0)
    ap.add_argument("--audio-seconds", type=float, default=12.0)
    args = ap.parse_args()
    root, out = data_dir(), cache_dir() / "voice"
    out.mkdir(parents=True, exist_ok=True)
    for row in manifest_rows():
        name = row["file"].split("/")[-1].rsplit(".", 1)[0]
        dst = out / f"{name}.npz"
        if dst.exists():
            continue
        try:
            clip = load_face_clip(str(root / row["file"]), max_seconds=args.face_seconds,
                                  on_no_face="center")
        except Exception as e:  # noqa: BLE001  (a clip that fails is skipped, as build_cache)
            print(f"skip {name}: {e}", flush=True)
            continue
        frames = clip.frames[::5]
        audio = None
        if row["has_audio"] == "yes":
            audio = read_audio(str(root / row["file"]), max_seconds=args.audio_seconds)
        np.savez(dst, faces=np.round(area(frames.astype(np.float32), 64)).astype(np.uint8),
                 lowres=area(frames.astype(np.float32), 8).astype(np.float32),
                 audio=(audio if audio is not None else np.zeros(0)).astype(np.float32),
                 identity=row["identity"], split=row["split"], speech=row["speech"])
        print(f"done {name} {len(frames)} faces", flush=True)


if __name__ == "__main__":
    main()
