"""Rate-quality benchmark: talkcodec (every receiver) against H.264, H.265, VP9 and AV1.

For each clip: the sender's 256x256, 25 fps face canvas (first ``--max-seconds`` s, cached
under ``cache/canvas``); talkcodec encoded once and decoded by each receiver; each standard
codec over its constant-quality ladder down to its floor (``standard_codecs.py``). Every
output is scored against the canvas (``clip_metrics.py``: PSNR, SSIM, ERQA, landmark
distances, mouth-motion correlation, identity distance; FID pooled over clips).

Rates: bits counted from the produced packets, no container. "video" = everything but
audio (for talkcodec the 8x8 stream, the identity frame, CONFIG packets and packet
headers; for a standard codec its elementary stream). "total" adds the clip's Opus speech
at talkcodec's audio bitrate (the same bits for every codec). bpp = bits / (256*256*frames).

Writes ``<out>/bpp_<tag>.{md,csv}``, ``<out>/bpp_<tag>_clips.csv`` and ``<out>/rd_<tag>.png``.

    nice .venv/bin/python -m benchmarks.bench_bpp --split val            # full val (~15 min)
    .venv/bin/python -m benchmarks.bench_bpp --split val --quick         # CI smoke run
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import multiprocessing
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.bench_bpp ...")

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from benchmarks import rd_report, talkcodec_runner  # noqa: E402
from benchmarks.clip_metrics import GroundTruth, Sampling, score_clip  # noqa: E402
from benchmarks.standard_codecs import CODECS, encode_decode  # noqa: E402
from codec.data import data_dir as data_root  # noqa: E402
from codec.errors import InputError  # noqa: E402
from codec.metrics.rate import bits_per_pixel, kbit_per_s  # noqa: E402
from codec.types import FaceClip  # noqa: E402

VIDEO_EXT = {".mp4", ".mpg", ".mpeg", ".avi", ".mov", ".mkv", ".webm"}
QUICK_SAMPLING = Sampling(psnr=1, ssim=4, landmarks=3, erqa=10, identity=25, fid=25)


def list_clips(source: Path, split: str | None) -> list[Path]:
    """Video files of a folder, or the rows of a manifest.csv (of one split)."""
    if source.is_dir() and (source / "manifest.csv").exists():
        source = source / "manifest.csv"
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in VIDEO_EXT)
    with open(source, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [source.parent / r["file"] for r in rows if split is None or r["split"] == split]


def load_canvas(path: Path, max_seconds: float) -> FaceClip:
    """The sender's face canvas of a clip, cached (keyed by file, size, mtime, seconds and
    the sender front end's source, so a changed front end is never served stale)."""
    from codec.sender.canvas import load_face_clip

    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime}|{max_seconds}".encode())
    for src in sorted((REPO / "codec" / "sender").glob("*.py")):  # front-end changes
        key.update(src.read_bytes())
    cache = REPO / "cache" / "canvas" / f"{path.stem[:60]}-{key.hexdigest()[:12]}.npz"
    if cache.exists():
        with np.load(cache) as z:
            audio = z["audio"] if z["has_audio"] else None
            return FaceClip(frames=z["frames"], audio=audio, source=str(path))
    clip = load_face_clip(path, max_seconds=max_seconds)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, frames=clip.frames, has_audio=clip.audio is not None,
             audio=clip.audio if clip.audio is not None else np.zeros(0, np.float32))
    os.replace(tmp, cache)
    return clip


def progress(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def rate_row(clip: FaceClip, bits_video: float, bits_audio: float) -> dict[str, float]:
    n, dur = clip.n_frames, clip.duration_s
    total = bits_video + bits_audio
    return {
        "frames": n,
        "seconds": dur,
        "kbps_video": kbit_per_s(bits_video, dur),
        "kbps_total": kbit_per_s(total, dur),
        "bpp_video": bits_per_pixel(bits_video, n),
        "bpp_total": bits_per_pixel(total, n),
    }


def score_row(scores: object) -> dict[str, object]:
    return dict(vars(scores))


def run_clip(
    path: Path, args: argparse.Namespace, sampling: Sampling
) -> tuple[list[dict], np.ndarray | None]:
    clip = load_canvas(path, args.max_seconds)
    if clip.n_frames < 10:
        raise InputError(f"{path.name}: only {clip.n_frames} canvas frames")
    gt = GroundTruth.build(clip.frames, sampling, with_fid=not args.no_fid, audio=clip.audio)
    if not gt.points:
        progress(f"  {path.name}: no face found in the ground truth; landmark metrics blank")
    rows: list[dict] = []
    name = path.stem[:48]
    # The 8x8-only stream, decoded by every receiver; then each motion-code setting,
    # decoded by the receivers that use the code.
    points = [(talkcodec_runner.NO_CODE, args.receivers)]
    points += [(c, [r for r in args.receivers if r in talkcodec_runner.CODE_RECEIVERS])
               for c in args.code_settings]
    audio_payload = 0.0
    for code, receivers in points:
        stream = talkcodec_runner.encode(clip, talkcodec_runner.sender_config(code))
        if code == talkcodec_runner.NO_CODE:
            audio_payload = stream.bits_audio_payload
        for receiver in receivers:
            t0 = time.perf_counter()
            frames = talkcodec_runner.decode(stream.packets, receiver, clip.n_frames)
            decode_s = time.perf_counter() - t0
            setting = receiver if code == talkcodec_runner.NO_CODE else f"{receiver} + code {code}"
            row = {"clip": name, "codec": "talkcodec", "setting": setting}
            row |= rate_row(clip, stream.bits_video, stream.bits_audio)
            row["kbps_total"] = kbit_per_s(stream.bits_total, clip.duration_s)
            row["bpp_total"] = bits_per_pixel(stream.bits_total, clip.n_frames)
            row["kbps_lowres"] = kbit_per_s(stream.bits_lowres, clip.duration_s)
            row["kbps_code"] = kbit_per_s(stream.bits_code, clip.duration_s)
            row["kbps_stream"] = kbit_per_s(stream.bits_lowres + stream.bits_code,
                                            clip.duration_s)
            row |= score_row(score_clip(frames, gt, with_fid=not args.no_fid))
            row["decode_s"] = decode_s
            rows.append(row)
            progress(f"  {name[:24]} talkcodec/{setting}: {row['kbps_stream']:.2f} kbit/s "
                     f"8x8+code, PSNR {row['psnr']:.2f}, mouth LMD {row['lmd_mouth']:.2f}")
    for codec_name in args.codecs:
        codec = CODECS[codec_name]
        for q in codec.quick_ladder if args.quick else codec.ladder:
            enc = encode_decode(clip.frames, codec, q)
            row = {"clip": name, "codec": codec_name, "setting": f"{codec.quality_option}={q}"}
            row |= rate_row(clip, enc.bits, audio_payload)
            row["kbps_lowres"] = float("nan")
            row["kbps_code"] = row["kbps_stream"] = float("nan")
            row |= score_row(score_clip(enc.frames, gt, with_fid=not args.no_fid))
            row["decode_s"] = float("nan")
            rows.append(row)
            progress(f"  {name[:24]} {codec_name} {row['setting']}: "
                     f"{row['kbps_video']:.2f} kbit/s, PSNR {row['psnr']:.2f}, mouth LMD {row['lmd_mouth']:.2f}")
    return rows, gt.fid_features


def _init_worker(threads: int = 1) -> None:
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def _run_clip_job(
    job: tuple[int, int, Path, argparse.Namespace, Sampling],
) -> tuple[list[dict], np.ndarray | None]:
    i, n, path, args, sampling = job
    progress(f"clip {i}/{n}: {path.name}")
    try:
        return run_clip(path, args, sampling)
    except InputError as exc:
        progress(f"  {path.name} skipped: {exc}")
        return [], None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=Path, default=None,
                    help="folder of videos or a manifest.csv (default: the shared data set)")
    ap.add_argument("--split", default="val", help="manifest split ('all' for every row)")
    ap.add_argument("--quick", action="store_true", help="2 clips x 3 s, 3-point ladders")
    ap.add_argument("--max-seconds", type=float, default=None, help="seconds per clip (5)")
    ap.add_argument("--max-clips", type=int, default=None)
    ap.add_argument("--receivers", default=None, help="comma list (default: all available)")
    ap.add_argument("--codecs", default=",".join(CODECS), help="comma list of standard codecs")
    ap.add_argument("--code", default=",".join(talkcodec_runner.DEFAULT_CODE_POINTS),
                    help="motion-code settings, comma list of FPS:QUANT (e.g. 12.5:6); "
                         "'' for the 8x8-only stream alone")
    ap.add_argument("--no-fid", action="store_true", help="skip FID (the slowest metric)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="clips evaluated in parallel processes (default: 2)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--tag", default=None, help="output name suffix (default: split[_quick])")
    args = ap.parse_args(argv)

    args.max_seconds = args.max_seconds or (3.0 if args.quick else 5.0)
    args.max_clips = args.max_clips or (2 if args.quick else None)
    args.receivers = (args.receivers.split(",") if args.receivers
                      else talkcodec_runner.available_receivers())
    args.codecs = [c for c in args.codecs.split(",") if c]
    args.code_settings = [c for c in args.code.split(",") if c]
    for c in args.code_settings:
        try:
            talkcodec_runner.sender_config(c)
        except ValueError as exc:
            ap.error(f"--code {c!r}: {exc}")
    unknown = [c for c in args.codecs if c not in CODECS]
    if unknown:
        ap.error(f"unknown codec(s) {unknown}; known: {list(CODECS)}")
    sampling = QUICK_SAMPLING if args.quick else Sampling()
    split = None if args.split == "all" else args.split
    clips = list_clips(args.clips or data_root(), split)
    if args.max_clips:
        clips = clips[: args.max_clips]
    if not clips:
        progress("no clips found")
        return 2
    tag = args.tag or f"{args.split}{'_quick' if args.quick else ''}"

    t_start = time.time()
    rows: list[dict] = []
    gt_feats: list[np.ndarray] = []
    jobs = [(i, len(clips), path, args, sampling) for i, path in enumerate(clips, 1)]
    if args.jobs > 1 and len(clips) > 1:
        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked BLAS state
        with ctx.Pool(min(args.jobs, len(clips)), initializer=_init_worker) as pool:
            results = pool.map(_run_clip_job, jobs, chunksize=1)
    else:
        _init_worker(threads=min(2, os.cpu_count() or 1))
        results = [_run_clip_job(job) for job in jobs]
    for clip_rows, feats in results:
        rows += clip_rows
        if feats is not None:
            gt_feats.append(feats)
    if not rows:
        progress("no clip could be evaluated")
        return 2
    gt = np.concatenate(gt_feats) if gt_feats else None
    agg = rd_report.aggregate(rows, gt)
    args.out.mkdir(parents=True, exist_ok=True)
    elapsed = time.time() - t_start
    header = (
        f"# Rate-quality, split `{args.split}`: {len({r['clip'] for r in rows})} clips x "
        f"<= {args.max_seconds:g} s at 256x256, 25 fps\n\n"
        f"Command: `nice .venv/bin/python -m benchmarks.bench_bpp "
        f"{' '.join(argv if argv is not None else sys.argv[1:])}` "
        f"({elapsed / 60:.1f} min on a 2-core CPU dev box shared with other work, load "
        f"average {os.getloadavg()[1]:.1f} at the end). Means over clips, frame 0 left "
        f"out; FID over {agg[0]['fid_frames']} frames per point pooled over clips (small-set "
        f"FID, comparable only within this table). Sampling: {sampling}.\n\n"
        "Columns: 8x8 kbit/s = talkcodec's low-res stream with its packet headers; code "
        "kbit/s = the motion code (groups bundled in the 8x8 packets); 8x8+code = both with "
        "the headers (the rate target); video = "
        "all bits but audio (talkcodec: 8x8 stream + identity frame + CONFIG + headers, "
        "spread over the clip; standard codecs: the elementary stream, no container); total "
        "= video + the clip's Opus speech at talkcodec's audio rate (same for every codec); "
        "bpp over 256x256 x frames. LMD = mean 68-landmark distance in pixels (mouth: points "
        "48-67), landmarks placed in the ground-truth face box; mouth PSNR = PSNR of the true "
        "mouth's box grown by a quarter of its width; mouth r = Pearson r of the "
        "inner-lip opening over time vs ground truth (0 for a frozen mouth); ID dist = dlib "
        "128-d descriptor distance to the ground truth frame, ID<0.6 the fraction under "
        "dlib's same-person threshold; LSE-C = lip-sync confidence of our sync expert "
        "(codec/metrics/sync.py) against the clip's own speech, clips with audio only."
    )
    table = rd_report.markdown_table(agg, header)
    (args.out / f"bpp_{tag}.md").write_text(table)
    rd_report.write_csv(args.out / f"bpp_{tag}.csv", agg)
    rd_report.write_csv(args.out / f"bpp_{tag}_clips.csv", rows)
    rd_report.plot_rd(agg, args.out / f"rd_{tag}.png", f"talkcodec vs standard codecs ({tag})")
    sys.stdout.write(table)
    progress(f"done in {elapsed:.0f} s; wrote {args.out}/bpp_{tag}.md, .csv, rd_{tag}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
