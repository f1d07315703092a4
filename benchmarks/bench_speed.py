"""Speed of talkcodec's parts on this machine: receivers, model parts, encoder, file pipeline.

The one speed benchmark: every frames/s, runs/s and real-time figure of BENCHMARKS.md's
speed section comes from here (the GPU streams test, ``bench_gpu_streams.py``, runs on a
GPU machine; the call's own rates come from ``bench_call.py``).

- receivers: output frames/s at 256x256 of each available receiver decoding a talkcodec
  stream with the motion code (stream decoding included), and of the code's receivers on
  the 8x8-only stream, with 1 and 2 CPU threads (each thread count in its
  own process, BLAS/OpenMP/OpenCV/torch/ONNX Runtime limited before they load);
- model parts: runs/s of each ONNX network of the neural receiver (batch 1, the shapes its
  file declares), on the CPU with 1 and 2 threads and on a GPU through ONNX Runtime's CUDA
  provider when that provider is available;
- encoder: the sender's canvas front end (video decoding, face tracking + crop, canvas
  frames/s), the Sender (landmarks, motion code, 8x8 stream, Opus; canvas frames/s) and
  the two together;
- model size and cost: each network's parameters, multiply-accumulates per call (from its
  ONNX graph: Conv, Gemm/MatMul and Resize), how often it runs per output frame and its
  file size; plus the numpy warp, blend, back-projection and speech features of each
  256x256 frame, summed to FLOPs per output frame;
- file pipeline: wall-clock seconds of ``encode_file`` + ``decode_file`` for a clip, and the
  ratio to the clip's duration (end-to-end latency of the offline file path).

    nice .venv/bin/python -m benchmarks.bench_speed [--seconds 4] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.bench_speed ...")

from codec.data import data_dir as data_root

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = "clips/smeetrs__deep_avsr__audio__demo__00001.mp4"
REPEATS = 3
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _timed(fn, min_s: float = 1.0, min_runs: int = 3) -> float:  # noqa: ANN001
    """Calls per second of ``fn`` (after one warm-up call)."""
    fn()
    runs, start = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < min_s:
        fn()
        runs += 1
    return runs / (time.perf_counter() - start)


def worker(clip_path: Path, seconds: float, threads: int) -> dict:
    """Measurements that depend on the thread count (run in a fresh process)."""
    import cv2
    import torch

    cv2.setNumThreads(threads)
    torch.set_num_threads(threads)
    from benchmarks import talkcodec_runner
    from codec.receiver.registry import get_receiver, neural_available
    from codec.sender.canvas import load_face_clip
    from codec.sender.sender import Sender

    out: dict = {"threads": threads, "receivers": {}, "parts": {}}
    t0 = time.perf_counter()
    clip = load_face_clip(clip_path, max_seconds=seconds)
    out["canvas_fps"] = clip.n_frames / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    Sender(with_audio=clip.audio is not None).encode_clip(clip)
    out["sender_fps"] = clip.n_frames / (time.perf_counter() - t0)
    stream = talkcodec_runner.encode(clip)  # with the motion code (the default)
    plain = talkcodec_runner.encode(clip, talkcodec_runner.sender_config(talkcodec_runner.NO_CODE))
    out["errors"] = {}
    jobs = [(name, name, stream) for name in talkcodec_runner.available_receivers()]
    jobs += [(f"{name} (8x8 only, no code)", name, plain)
             for name in talkcodec_runner.available_receivers()
             if name in talkcodec_runner.CODE_RECEIVERS]
    for label, name, stream in jobs:
        kw = {"threads": threads} if name == "neural" else {}
        best = float("inf")
        try:
            if kw:
                get_receiver(name, **kw)  # session creation outside the timed decode
            for _ in range(REPEATS):  # fastest of a few: the box is shared, load varies
                t0 = time.perf_counter()
                talkcodec_runner.decode(stream.packets, name, clip.n_frames, **kw)
                best = min(best, time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - one broken receiver must not hide the rest
            out["errors"][label] = f"{type(exc).__name__}: {exc}"[:300]
            out["receivers"][label] = None
            continue
        out["receivers"][label] = clip.n_frames / best
    if neural_available():
        out["parts"] = model_parts({"CPU": ["CPUExecutionProvider"]}, threads)
    return out


def model_parts(providers: dict[str, list[str]], threads: int) -> dict[str, dict[str, float]]:
    """Runs/s of each neural receiver network, per provider."""
    import numpy as np

    from codec.receiver.neural.weights import ROLES, find_model, load_verified, onnx_session

    result: dict[str, dict[str, float]] = {}
    for role in ROLES:
        data = load_verified(find_model(role))
        for label, prov in providers.items():
            # The sessions the receiver itself makes (threads, no spinning), on this provider.
            device = "cuda" if "CUDAExecutionProvider" in prov else "cpu"
            sess = onnx_session(data, threads, device)
            feeds = {
                i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape],
                                 np.float16 if "float16" in i.type else np.float32)
                for i in sess.get_inputs()
            }
            result.setdefault(role, {})[label] = _timed(lambda s=sess, f=feeds: s.run(None, f))
    return result


def graph_stats(data: bytes) -> tuple[int, int]:
    """(parameters, multiply-accumulates per call) of an ONNX model."""
    import numpy as np
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load_from_string(data))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*g.value_info, *g.input, *g.output]}
    params = int(sum(a.size for a in inits.values()))
    macs = 0
    for n in g.node:
        out = shapes.get(n.output[0], [])
        n_out = int(np.prod(out)) if out else 0
        if n.op_type == "Conv" and n.input[1] in inits:
            macs += n_out * int(np.prod(inits[n.input[1]].shape[1:]))
        elif n.op_type in ("Gemm", "MatMul") and n.input[1] in inits:
            macs += n_out * int(inits[n.input[1]].shape[0])
        elif n.op_type == "Resize":
            macs += 4 * n_out  # bilinear: 4 taps per output value
    return params, macs


def model_cost(mouth_pixels: int) -> dict:
    """Parameters, MACs per call, calls per output frame and KiB of each shipped network,
    and the MACs per output frame of the whole receiver (networks + numpy composition)."""
    from codec.receiver.neural.contract import (
        ANIMATOR,
        IDENTITY_ENCODER,
        INTERPOLATOR,
        MOUTH,
        N_BETWEEN,
    )
    from codec.receiver.neural.mouth import BLOCK_FRAMES
    from codec.receiver.neural.weights import ROLES, find_model, load_verified

    calls = {IDENTITY_ENCODER.role: 0.0, INTERPOLATOR.role: 1 / (N_BETWEEN + 1),
             ANIMATOR.role: 1.0, MOUTH.role: 1.0}  # identity encoder: once per call
    nets: dict[str, dict] = {}
    for role in ROLES:
        data = load_verified(find_model(role))
        params, macs = graph_stats(data)
        nets[role] = {"params": params, "macs": macs, "calls": calls[role],
                      "kib": len(data) / 1024}
    n = 256 * 256
    # compose_frame at 256x256: remap (4 taps x 3 ch), flow/mask/colour resizes (4 taps x 6
    # ch), blend (2 x 3 ch), back-projection (box means + two 8->256 matrix products x 3 ch).
    numpy_macs = n * (12 + 24 + 6 + 3) + 3 * (256 * 8 * 8 + 256 * 256 * 8)
    # speech: one log-mel block per frame (400-point FFT ~ 2 x 400 x log2(400), 40 x 201 mel
    # filter) + the warp of the mouth region (4 taps x 3 ch, plus the cavity blend).
    numpy_macs += BLOCK_FRAMES * (2 * 400 * 9 + 40 * 201) + mouth_pixels * (12 + 6)
    per_frame = sum(v["macs"] * v["calls"] for v in nets.values()) + numpy_macs
    return {"nets": nets, "numpy_macs": numpy_macs, "macs_per_frame": per_frame,
            "mouth_pixels": mouth_pixels}


def mouth_pixels(clip_path: Path, seconds: float) -> int:
    """Pixels of the mouth region the neural receiver warps for this clip's identity frame
    (0 when it finds no face there: the mouth stage is then off)."""
    from codec.receiver.neural import NeuralReceiver
    from codec.sender.canvas import load_face_clip
    from codec.types import IdentityFrame

    clip = load_face_clip(clip_path, max_seconds=min(seconds, 1.0))
    probe = NeuralReceiver(threads=1)
    probe.set_identity(IdentityFrame(clip.frames[0]))
    return 0 if probe._mouth is None else int(probe._mouth.gx.size)  # noqa: SLF001


def file_pipeline(clip_path: Path, seconds: float) -> dict:
    from codec.file_codec import decode_file, encode_file
    from codec.receiver.registry import FALLBACK_RECEIVER, default_receiver_name, get_receiver

    name = default_receiver_name()
    with tempfile.TemporaryDirectory() as tmp:
        tkc, mp4 = Path(tmp) / "c.tkc", Path(tmp) / "c.mp4"
        t0 = time.perf_counter()
        summary = encode_file(clip_path, tkc, max_seconds=seconds)
        encode_s = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            decode_file(tkc, mp4, get_receiver(name))
        except Exception as exc:  # noqa: BLE001 - time the fallback, say why
            sys.stderr.write(f"file pipeline: receiver {name} failed ({exc}); using "
                             f"{FALLBACK_RECEIVER}\n")
            name = FALLBACK_RECEIVER
            t0 = time.perf_counter()
            decode_file(tkc, mp4, get_receiver(name))
        decode_s = time.perf_counter() - t0
    duration = summary["frames"] / 25.0
    return {"receiver": name, "clip_s": duration, "encode_s": encode_s, "decode_s": decode_s,
            "realtime_factor": (encode_s + decode_s) / duration}


def run_worker_process(clip: Path, seconds: float, threads: int) -> dict:
    env = dict(os.environ)
    env.update({v: str(threads) for v in _THREAD_VARS})
    cmd = [sys.executable, "-W", "ignore", "-m", "benchmarks.bench_speed", "--worker",
           "--clip", str(clip), "--seconds", str(seconds), "--threads", str(threads)]
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"worker ({threads} threads) failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _fmt(value: float | None) -> str:
    return "failed" if value is None else f"{value:.1f}"


def report(results: list[dict], gpu: dict | None, pipeline: dict, clip: Path,
           cost: dict | None = None) -> str:
    gpu_col = [" GPU (ORT CUDA) "] if gpu else []
    head = [" part "] + [f" CPU {r['threads']} thr " for r in results] + gpu_col
    lines = [f"# talkcodec speed ({clip.name}, 256x256 canvas)", "",
             "|" + "|".join(head) + "|", "|" + "---|" * len(head)]

    def row(label: str, cpu: list[str], gpu_cell: str = "-") -> None:
        cells = [f" {label} "] + [f" {c} " for c in cpu] + ([f" {gpu_cell} "] if gpu else [])
        lines.append("|" + "|".join(cells) + "|")

    row("canvas front end (frames/s)", [f"{r['canvas_fps']:.1f}" for r in results])
    row("Sender: identity frame + landmarks + motion code + 8x8 stream + Opus (canvas "
        "frames/s)", [f"{r['sender_fps']:.0f}" for r in results])
    row("whole sender: canvas front end + the above (canvas frames/s)",
        [f"{1 / (1 / r['canvas_fps'] + 1 / r['sender_fps']):.1f}" for r in results])
    for name in results[0]["receivers"]:
        row(f"receiver `{name}` (frames/s)",
            [_fmt(r["receivers"].get(name)) for r in results])
    for role in results[0]["parts"]:
        on_gpu = f"{gpu[role]['GPU']:.1f}" if gpu and role in gpu else "-"
        row(f"model part `{role}` (runs/s)",
            [f"{r['parts'][role]['CPU']:.1f}" for r in results], on_gpu)
    for r in results:
        for name, err in r.get("errors", {}).items():
            lines += ["", f"receiver `{name}` failed with {r['threads']} thread(s): {err}"]
    if cost:
        lines += ["", "| network | parameters | MMAC per call | calls per output frame | KiB |",
                  "|---|---|---|---|---|"]
        for role, v in cost["nets"].items():
            lines.append(f"| `{role}` | {v['params']:,} | {v['macs'] / 1e6:.1f} | "
                         f"{v['calls']:.2f} | {v['kib']:.0f} |")
        total = sum(v["params"] for v in cost["nets"].values())
        mouth = (f"mouth stage on, {cost['mouth_pixels']:,} px warped" if cost["mouth_pixels"]
                 else "mouth stage off: no face on the identity frame")
        lines += ["", f"Receiver `neural` per output frame: {cost['macs_per_frame'] / 1e6:.1f} "
                  f"MMAC = {2 * cost['macs_per_frame'] / 1e9:.3f} GFLOP ({total:,} parameters; "
                  f"numpy composition and speech features {cost['numpy_macs'] / 1e6:.1f} MMAC; "
                  f"{mouth}; the identity encoder runs once per call and is not counted)."]
    lines += [
        "",
        f"File pipeline (`encode_file` + `decode_file`, receiver `{pipeline['receiver']}`): "
        f"{pipeline['clip_s']:.1f} s clip -> encode {pipeline['encode_s']:.2f} s + decode "
        f"{pipeline['decode_s']:.2f} s = {pipeline['realtime_factor']:.2f} x real time.",
        "",
        f"Command: `nice .venv/bin/python -m benchmarks.bench_speed {' '.join(sys.argv[1:])}` "
        f"on a 2-core CPU dev box shared with other work (load average "
        f"{os.getloadavg()[1]:.1f} at the end); receivers: fastest of {REPEATS} runs, the "
        f"rest one run each.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", type=Path, default=None)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", type=Path, default=None, help="also write the table here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    clip = args.clip or data_root() / DEFAULT_CLIP
    if not clip.exists():
        sys.stderr.write(f"clip not found: {clip}\n")
        return 2
    if args.worker:
        sys.stdout.write(json.dumps(worker(clip, args.seconds, int(args.threads))) + "\n")
        return 0
    results = [run_worker_process(clip, args.seconds, int(t)) for t in args.threads.split(",")]
    gpu = None
    import onnxruntime as ort

    from codec.receiver.registry import neural_available

    if "CUDAExecutionProvider" in ort.get_available_providers() and neural_available():
        gpu = {role: {"GPU": v["GPU"]} for role, v in model_parts(
            {"GPU": ["CUDAExecutionProvider"]}, 2).items()}
    cost = model_cost(mouth_pixels(clip, args.seconds)) if neural_available() else None
    table = report(results, gpu, file_pipeline(clip, args.seconds), clip, cost)
    sys.stdout.write(table)
    if args.out:
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
