"""Val quality of the neural receiver vs baselines, the interpolator vs linear, and the
audio ablation (true speech vs another clip's speech vs silence).

Per val clip (first ``--seconds`` s of the sender's 256x256 25 fps canvas): identity =
canvas frame 0; low-res stream = 8x8 box means of every 5th frame through the bitstream's
low-res codec (default parameters; ``--exact`` skips it); audio through Opus at 8 kbit/s
(``--raw-audio`` skips it). Metrics over all frames but frame 0, by the one scoring harness
``benchmarks/clip_metrics.py`` (``bench_bpp.py``'s, here sampled densely): PSNR (RGB), SSIM
(luma), ERQA (every 10th frame), landmark distance (all 68 points and the mouth's; px, box
found on the ground truth), mouth-motion correlation (inner-lip opening over time),
mouth-region PSNR (the true mouth's box grown by a quarter of its width), dlib
identity-descriptor distance on every 5th frame (mean, and the pooled share under 0.6). Ablation on the speech clips:
``neural:true`` (the clip's own speech), ``neural:swapped`` (the next speech clip's audio) and
``neural:silence`` (no audio) over the same clips. The interpolator is scored at 8x8 on the 4
in-between frames of every key pair (PSNR against the exact box means).

    nice .venv/bin/python -m benchmarks.eval_neural [--seconds 10] [--receivers align,neural]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.eval_neural ...")

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from benchmarks.clip_metrics import GroundTruth, Sampling, score_clip  # noqa: E402
from codec import FRAME_MS  # noqa: E402
from codec.audio.opus import OpusDecoder, OpusEncoder  # noqa: E402
from codec.bitstream.lowres_codec import LowResEncoder, LowResParams  # noqa: E402
from codec.data import data_dir as data_root  # noqa: E402
from codec.metrics.fidelity import mean_psnr, psnr  # noqa: E402
from codec.metrics.identity import (  # noqa: E402
    face_descriptor,
)
from codec.metrics.landmarks import (  # noqa: E402
    FaceBox,
    detect_face,
    landmarks,
)
from codec.receiver.base import Receiver  # noqa: E402
from codec.receiver.registry import get_receiver  # noqa: E402
from codec.sender.downsample import box_downsample  # noqa: E402
from codec.types import AudioChunk, IdentityFrame, LowResFrame  # noqa: E402

ID_EVERY = 5  # identity descriptor on every 5th frame
# clip_metrics' measures, denser than bench_bpp.py's (landmarks, SSIM on every frame).
EVAL_SAMPLING = Sampling(psnr=1, ssim=1, landmarks=1, erqa=10, identity=ID_EVERY, fid=31)


def val_rows() -> list[dict]:
    with open(data_root() / "manifest.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["split"] == "val"]


def load_val(row: dict, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(canvas frames, 16 kHz audio) through the sender's front end, cached in cache/eval."""
    store = REPO / "cache" / "eval" / f"{Path(row['file']).stem}-{seconds:g}s.npz"
    if store.exists():
        z = np.load(store)
        return z["frames"], z["audio"]
    from codec.sender.canvas import load_face_clip

    clip = load_face_clip(str(data_root() / row["file"]), max_seconds=seconds)
    audio = clip.audio if clip.audio is not None else np.zeros(0, np.float32)
    store.parent.mkdir(parents=True, exist_ok=True)
    np.savez(store, frames=clip.frames, audio=audio)
    return clip.frames, audio


def lowres_stream(canvas: np.ndarray, exact: bool) -> list[LowResFrame]:
    """The 8x8 frames a receiver gets: quantised by the 8x8 codec (each frame says its
    quantiser, as the stream decoder's do), or exact."""
    params = LowResParams()
    enc = LowResEncoder(params)
    out = []
    for k in range(0, len(canvas), 5):
        px = box_downsample(canvas[k], 32)
        if not exact:
            enc.encode(px)
            px = enc.reconstruction()
        out.append(LowResFrame(px.astype(np.float32), int(k * 40),
                               quant=0.0 if exact else params.quant))
    return out


def audio_chunks(audio: np.ndarray, raw: bool) -> list[AudioChunk]:
    if raw:
        return [AudioChunk(audio[i : i + 320], i // 16) for i in range(0, len(audio), 320)]
    enc, dec = OpusEncoder(bitrate=8000), OpusDecoder()
    packets = enc.encode(audio) + enc.flush()
    return [dec.decode(p, ts) for p, ts in packets]


class MouthTruth:
    """Face boxes and landmarks of the ground-truth frames (the reference for mouth scores)."""

    def __init__(self, canvas: np.ndarray, store: Path | None = None) -> None:
        self._gt: GroundTruth | None = None  # for scoring, built once (``ground_truth``)
        if store is not None and store.exists():
            z = np.load(store)
            self.boxes = [FaceBox(*map(int, b)) if b[0] >= 0 else None for b in z["boxes"]]
            self.points = [p if not np.isnan(p).any() else None for p in z["points"]]
            return
        self.boxes = [detect_face(f) for f in canvas]
        self.points = [landmarks(f, b) if b is not None else None
                       for f, b in zip(canvas, self.boxes, strict=True)]
        if store is not None:
            np.savez(store, boxes=np.array([[b.left, b.top, b.right, b.bottom] if b else
                                            [-1, -1, -1, -1] for b in self.boxes]),
                     points=np.array([p if p is not None else np.full((68, 2), np.nan)
                                      for p in self.points]))

    def ground_truth(self, canvas: np.ndarray) -> GroundTruth:
        """This clip's ground truth for ``clip_metrics.score_clip`` (the one scoring
        harness, also ``bench_bpp.py``'s), from the cached boxes and landmarks: landmarks
        on every frame, descriptors on every ``ID_EVERY``-th (computed once per clip)."""
        if self._gt is None:
            gt = GroundTruth(frames=canvas, sampling=EVAL_SAMPLING)
            gt.boxes = {i: b for i, b in enumerate(self.boxes) if b is not None}
            gt.points = {i: p for i, p in enumerate(self.points)
                         if i >= 1 and p is not None and i in gt.boxes}
            gt.descriptors = {int(i): face_descriptor(canvas[i], gt.boxes[int(i)])
                              for i in EVAL_SAMPLING.frames(ID_EVERY, len(canvas))
                              if int(i) in gt.boxes}
            self._gt = gt
        return self._gt

    def scores(self, frames: list[np.ndarray], canvas: np.ndarray) -> dict[str, float]:
        """``clip_metrics.score_clip``'s measures of ``frames`` (no FID: that pools over
        clips), under the names this script prints."""
        sc = score_clip(np.stack(frames), self.ground_truth(canvas), with_fid=False)
        return {"psnr": sc.psnr, "ssim": sc.ssim, "erqa": sc.erqa, "lmd": sc.lmd,
                "mouth_dist": sc.lmd_mouth, "mouth_psnr": sc.psnr_mouth,
                "mouth_corr": sc.mouth_corr, "id_dist": sc.id_distance,
                "id_match": sc.id_match * len(self.ground_truth(canvas).descriptors),
                "id_n": float(len(self.ground_truth(canvas).descriptors))}


def run_receiver(name: str, canvas: np.ndarray, lows: list[LowResFrame],
                 audio: list[AudioChunk], **kw: object) -> tuple[list[np.ndarray], float]:
    return run_built(get_receiver(name, **kw), canvas, lows, audio)


def run_built(rx: Receiver, canvas: np.ndarray, lows: list[LowResFrame],
              audio: list[AudioChunk]) -> tuple[list[np.ndarray], float]:
    """(frames, frames/s) of a receiver over a clip: the identity frame is canvas[0]."""
    t0 = time.perf_counter()
    out = rx.run(IdentityFrame(image=canvas[0]), lows, audio, end_ms=len(canvas) * FRAME_MS)
    fps = len(out) / (time.perf_counter() - t0)
    frames = [o.image for o in out][: len(canvas)]
    if len(frames) != len(canvas):
        raise RuntimeError(f"{rx.name}: {len(frames)} frames for a {len(canvas)}-frame clip")
    return frames, fps


def interpolator_scores(canvas: np.ndarray, lows: list[LowResFrame]) -> tuple[float, float]:
    """(interpolator PSNR, linear PSNR) at 8x8 on the in-between frames of this clip."""
    from codec.receiver.neural import NeuralReceiver

    rx = NeuralReceiver(threads=1)
    exact = box_downsample(canvas, 32)
    for f in lows:
        rx.push_lowres(f)
    net, lin = [], []
    for j in range(len(lows) - 1):
        mids = rx._in_between(j)  # noqa: SLF001 - the interpolator stage itself
        for i in range(4):
            t = lows[j].timestamp_ms // 40 + i + 1
            w = (i + 1) / 5
            net.append(psnr(mids[i], exact[t]))
            lin.append(psnr((1 - w) * lows[j].pixels + w * lows[j + 1].pixels, exact[t]))
    return mean_psnr(net), mean_psnr(lin)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--receivers", default="bicubic,backproject,align,neural")
    ap.add_argument("--clips", type=int, default=None)
    ap.add_argument("--exact", action="store_true", help="unquantised 8x8 stream")
    ap.add_argument("--raw-audio", action="store_true", help="skip Opus")
    ap.add_argument("--no-ablation", action="store_true", help="skip the audio ablation")
    args = ap.parse_args()
    rows = val_rows()[: args.clips] if args.clips else val_rows()
    clips = [(r, *load_val(r, args.seconds)) for r in rows]
    speech = [i for i, (r, _, a) in enumerate(clips) if r["speech"] == "yes" and len(a)]
    table: dict[str, list[dict[str, float]]] = {}
    interp = []
    for ci, (row, canvas, audio) in enumerate(clips):
        lows = lowres_stream(canvas, args.exact)
        chunks = audio_chunks(audio, args.raw_audio)
        truth = MouthTruth(canvas, REPO / "cache" / "eval" /
                           f"{Path(row['file']).stem}-{args.seconds:g}s-truth.npz")
        runs: dict[str, tuple[str, dict, list[AudioChunk]]] = {
            n: (n, {}, chunks) for n in args.receivers.split(",")}
        if "neural" in runs and ci in speech and len(speech) > 1 and not args.no_ablation:
            other = clips[speech[(speech.index(ci) + 1) % len(speech)]][2]
            other = np.resize(other, max(len(audio), 1)).astype(np.float32)
            runs["neural:swapped"] = ("neural", {}, audio_chunks(other, args.raw_audio))
            runs["neural:silence"] = ("neural", {"use_audio": False}, chunks)
        for label, (name, kw, ch) in runs.items():
            frames, fps = run_receiver(name, canvas, lows, ch, **kw)
            res = {**truth.scores(frames, canvas), "fps": fps}
            table.setdefault(label, []).append(res)
            if label == "neural" and "neural:silence" in runs:
                table.setdefault("neural:true", []).append(res)  # same clips as the ablation
            print(f"{Path(row['file']).stem[-40:]:40s} {label:15s} " + " ".join(
                f"{k} {v:.3f}" for k, v in res.items()), flush=True)
        if "neural" in runs:
            interp.append(interpolator_scores(canvas, lows))
    print("\nmean over clips (val, all frames but the identity frame):")
    for label, res in table.items():
        keys = [k for k in res[0] if k not in ("id_match", "id_n")]
        pooled = sum(r["id_match"] for r in res) / max(1.0, sum(r["id_n"] for r in res))
        print(f"  {label:15s} n={len(res):2d} " + " ".join(
            f"{k} {np.nanmean([r[k] for r in res]):.3f}" for k in keys)
            + f" ID<0.6 {pooled:.3f} of {sum(r['id_n'] for r in res):.0f} frames")
    if interp:
        a = np.array(interp)
        print(f"  interpolator 8x8 in-between PSNR {a[:, 0].mean():.2f} dB "
              f"vs linear {a[:, 1].mean():.2f} dB")


if __name__ == "__main__":
    main()
