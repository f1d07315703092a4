"""How many concurrent 25 fps receiver streams one machine sustains, on the GPU (ONNX Runtime's
CUDA provider) and on the CPU of the same machine.

Each stream is its own process running the shipped ``neural`` receiver over the same 8 s
val clip, with ``--threads`` threads for everything in it (ONNX Runtime, OpenCV and the
BLAS behind numpy, so that K processes do not oversubscribe the cores): K streams
start together, each renders every 256x256 frame as fast as it can, and the benchmark
prints each K's slowest stream in frames/s, the sum over streams and the GPU memory in use.
A K is sustained when its slowest stream is at least 25 fps.

Two steps, because a GPU machine need not have the val data or dlib:

    # here: the val clip through the sender, and the identity frame's mouth landmarks
    .venv/bin/python -m benchmarks.bench_gpu_streams save --out stream.npz
    # on the GPU machine (onnxruntime-gpu installed):
    python3 -m benchmarks.bench_gpu_streams run --stream stream.npz --device cuda
    python3 -m benchmarks.bench_gpu_streams run --stream stream.npz --device cpu
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.bench_gpu_streams ...")

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from codec import CANVAS_FPS
from codec.types import AudioChunk, IdentityFrame, LowResFrame

FPS = float(CANVAS_FPS)  # output frames/s each stream must keep


def val_stream(seconds: float) -> tuple[IdentityFrame, list[LowResFrame], list[AudioChunk]]:
    """The first val clip's canvas as an exact 8x8 stream at 5 fps and its speech; noise (no
    face, so the mouth stage stays off) when the data is not there."""
    n = int(seconds * 25)
    try:
        from benchmarks.eval_neural import load_val, val_rows

        frames, audio = load_val(val_rows()[0], 10.0)
        frames, audio = frames[:n], audio[: n * 640]
    except Exception:  # noqa: BLE001 - no data here: noise
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 256, (n, 256, 256, 3), dtype=np.uint8)
        audio = (0.1 * rng.standard_normal(n * 640)).astype(np.float32)
    lows = [LowResFrame(frames[k].reshape(8, 32, 8, 32, 3).mean(axis=(1, 3)).astype(np.float32),
                        k * 40) for k in range(0, len(frames), 5)]
    chunks = [AudioChunk(audio[i : i + 320], i // 16) for i in range(0, len(audio), 320)]
    return IdentityFrame(frames[0]), lows, chunks


def save(out: Path, seconds: float) -> None:
    from codec.metrics.landmarks import detect_face, landmarks

    ident, lows, chunks = val_stream(seconds)
    box = detect_face(ident.image)
    points = np.zeros((0, 2), np.float32) if box is None else landmarks(ident.image, box)
    np.savez_compressed(
        out, identity=ident.image, lows=np.stack([f.pixels for f in lows]),
        lows_ms=np.array([f.timestamp_ms for f in lows]),
        audio=np.concatenate([c.samples for c in chunks]), points=np.asarray(points, np.float32))
    print(f"wrote {out}: {len(lows)} low-res frames, {seconds:.0f} s, "
          f"mouth landmarks {'found' if len(points) else 'not found'}")


def _load(path: Path) -> tuple[IdentityFrame, list[LowResFrame], list[AudioChunk], np.ndarray]:
    z = np.load(path)
    lows = [LowResFrame(p.astype(np.float32), int(t)) for p, t in zip(z["lows"], z["lows_ms"])]
    audio = z["audio"].astype(np.float32)
    chunks = [AudioChunk(audio[i : i + 320], i // 16) for i in range(0, len(audio), 320)]
    return IdentityFrame(z["identity"]), lows, chunks, z["points"]


def _receiver(device: str, threads: int, points: np.ndarray):
    from codec.receiver.neural import NeuralReceiver
    from codec.receiver.neural.mouth import MouthWarp, mouth_shape

    rx = NeuralReceiver(threads=threads, device=device, use_mouth=len(points) > 0)
    if len(points):  # the landmarks dlib found here (once per identity frame in a call)
        rx._mouth_warp = lambda img: MouthWarp(img, mouth_shape(points))
    return rx


def _worker(stream: str, device: str, threads: int, barrier, results) -> None:
    try:
        ident, lows, chunks, points = _load(Path(stream))
        _receiver(device, threads, points).run(ident, lows[:3], chunks)  # warm-up
        rx = _receiver(device, threads, points)
        barrier.wait()
        t0 = time.perf_counter()
        out = rx.run(ident, lows, chunks)
        results.put((len(out), time.perf_counter() - t0, None))
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        if not barrier.broken:
            barrier.abort()
        results.put((0, 0.0, f"{type(exc).__name__}: {exc}"))


def _gpu_memory_mib() -> str:
    if shutil.which("nvidia-smi") is None:
        return "-"
    q = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                       capture_output=True, text=True, timeout=20, check=False)
    return q.stdout.strip().splitlines()[0] if q.returncode == 0 and q.stdout.strip() else "-"


def per_call(stream: Path, device: str, threads: int) -> None:
    """One stream alone: each network's time per call on this device."""
    ident, lows, chunks, points = _load(stream)
    rx = _receiver(device, threads, points)
    rx.run(ident, lows[:6], chunks)
    print(f"providers: {rx.providers}")
    from codec.receiver.neural.contract import ANIMATOR

    feeds = ANIMATOR.feeds(rx.window_at(400.0)[None], rx.mel_at(400.0)[None], **rx._id_inputs)
    t = time.perf_counter()
    for _ in range(200):
        rx.sessions[ANIMATOR.role].run(None, feeds)
    anim = 1000 * (time.perf_counter() - t) / 200
    t = time.perf_counter()
    for _ in range(200):
        rx.render(400.0)
    frame = 1000 * (time.perf_counter() - t) / 200
    print(f"animator network {anim:.2f} ms/call; whole frame (window, speech, mouth, animator, "
          f"composition) {frame:.2f} ms")


def run(stream: Path, device: str, threads: int, counts: list[int]) -> None:
    import cv2

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)  # read by the spawned workers' numpy at import
    cv2.setNumThreads(threads)
    per_call(stream, device, threads)
    ctx = mp.get_context("spawn")
    print(f"{'streams':>7s} {'slowest fps':>11s} {'sum fps':>8s} {'GPU MiB':>8s}  sustained")
    best = 0
    for k in counts:
        barrier = ctx.Barrier(k + 1)
        results = ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(str(stream), device, threads, barrier, results))
                 for _ in range(k)]
        for p in procs:
            p.start()
        try:
            barrier.wait(timeout=300)
            mem = _gpu_memory_mib()
        except Exception:  # noqa: BLE001 - a worker failed before the start
            mem = "-"
        got = [results.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        errors = [e for _, _, e in got if e]
        if errors:
            print(f"{k:7d} failed: {errors[0]}")
            break
        fps = [n / dt for n, dt, _ in got]
        ok = min(fps) >= FPS
        best = k if ok else best
        print(f"{k:7d} {min(fps):11.1f} {sum(fps):8.1f} {mem:>8s}  {'yes' if ok else 'no'}")
    print(f"device={device}, {threads} thread(s) per stream: {best} concurrent 25 fps streams "
          "sustained (largest K tried whose slowest stream kept 25 fps)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--seconds", type=float, default=8.0)
    r = sub.add_parser("run")
    r.add_argument("--stream", type=Path, required=True)
    r.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--streams", default="1,2,4,8,12,16,24,32")
    args = ap.parse_args()
    if args.cmd == "save":
        save(args.out, args.seconds)
    else:
        run(args.stream, args.device, args.threads, [int(k) for k in args.streams.split(",")])


if __name__ == "__main__":
    main()
