"""Speed and size of the neural receiver as shipped (ONNX Runtime on the CPU).

Prints each network's parameters, multiply-accumulates per call (from the ONNX graph:
Conv, Gemm/MatMul and Resize counted; plus the numpy warp/blend/back-projection at
256x256), how often it runs, the resulting FLOPs per output frame, each network's time per
call, and the whole receiver's output frames/s at 256x256 (identity encoding +
interpolation + animation + composition, 8x8 stream at 5 fps with audio features) with 1
and 2 ONNX Runtime threads.

    nice .venv/bin/python -m benchmarks.bench_neural_speed [--seconds 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.bench_neural_speed ...")

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

REPO = Path(__file__).resolve().parents[1]

from codec.receiver.neural import NeuralReceiver  # noqa: E402
from codec.receiver.neural.contract import (  # noqa: E402
    ANIMATOR,
    IDENTITY_ENCODER,
    INTERPOLATOR,
    MOUTH,
    N_BETWEEN,
)
from codec.receiver.neural.mouth import BLOCK_FRAMES  # noqa: E402
from codec.receiver.neural.weights import ROLES, find_model, load_verified  # noqa: E402
from codec.types import AudioChunk, IdentityFrame, LowResFrame  # noqa: E402

CALLS_PER_FRAME = {IDENTITY_ENCODER.role: 0.0, INTERPOLATOR.role: 1 / (N_BETWEEN + 1),
                   ANIMATOR.role: 1.0, MOUTH.role: 1.0}


def _shape(vi: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value for d in vi.type.tensor_type.shape.dim]


def graph_stats(data: bytes) -> tuple[int, int]:
    """(parameters, multiply-accumulates per call) of an ONNX model."""
    model = shape_inference.infer_shapes(onnx.load_from_string(data))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    shapes = {v.name: _shape(v) for v in [*g.value_info, *g.input, *g.output]}
    params = int(sum(a.size for a in inits.values()))
    macs = 0
    for n in g.node:
        out = shapes.get(n.output[0], [])
        n_out = int(np.prod(out)) if out else 0
        if n.op_type == "Conv" and n.input[1] in inits:
            w = inits[n.input[1]]
            macs += n_out * int(np.prod(w.shape[1:]))
        elif n.op_type in ("Gemm", "MatMul") and n.input[1] in inits:
            macs += n_out * int(inits[n.input[1]].shape[0])
        elif n.op_type == "Resize":
            macs += 4 * n_out  # bilinear: 4 taps per output value
    return params, macs


def test_stream(seconds: float) -> tuple[IdentityFrame, list[LowResFrame], list[AudioChunk]]:
    """A val clip through the sender's front end when the data is there, else noise."""
    rng = np.random.default_rng(0)
    n = int(seconds * 25)
    try:
        from benchmarks.eval_neural import load_val, val_rows
        from codec.sender.canvas import load_face_clip

        frames, audio = load_val(val_rows()[0], 10.0)
        frames, audio = frames[:n], audio[: n * 640]
        del load_face_clip
    except Exception:  # noqa: BLE001 - noise: no face, so the mouth stage stays off
        frames = rng.integers(0, 256, (n, 256, 256, 3), dtype=np.uint8)
        audio = (0.1 * rng.standard_normal(n * 640)).astype(np.float32)
    lows = [LowResFrame(frames[k].reshape(8, 32, 8, 32, 3).mean(axis=(1, 3)).astype(np.float32),
                        k * 40) for k in range(0, len(frames), 5)]
    chunks = [AudioChunk(audio[i : i + 320], i // 16) for i in range(0, len(audio), 320)]
    return IdentityFrame(frames[0]), lows, chunks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    total_macs = 0.0
    total_params = 0
    print(f"{'network':18s} {'params':>9s} {'MMAC/call':>10s} {'calls/frame':>11s} {'KiB':>6s}")
    for role in ROLES:
        path = find_model(role)
        data = load_verified(path)
        params, macs = graph_stats(data)
        total_params += params
        total_macs += macs * CALLS_PER_FRAME[role]
        print(f"{role:18s} {params:9d} {macs / 1e6:10.1f} {CALLS_PER_FRAME[role]:11.2f} "
              f"{len(data) / 1024:6.0f}  ({path.name})")
    # compose_frame at 256x256: remap (4 taps x 3 ch), flow/mask/colour resizes (4 taps x 6
    # ch), blend (2 x 3 ch), back-projection (box means + two 8->256 matrix products x 3 ch).
    n = 256 * 256
    total_macs += n * (12 + 24 + 6 + 3) + 3 * (256 * 8 * 8 + 256 * 256 * 8)
    # speech: one log-mel block per frame, shared by mouth stage and animator (400-point FFT
    # ~ 2 x 400 x log2(400), 40 x 201 mel filter) + the warp of the mouth region (4 taps x 3 ch, plus the cavity blend).
    ident, lows, chunks = test_stream(args.seconds)
    probe = NeuralReceiver(threads=1)
    probe.set_identity(ident)
    roi = 0 if probe._mouth is None else probe._mouth.gx.size  # noqa: SLF001
    total_macs += BLOCK_FRAMES * (2 * 400 * 9 + 40 * 201) + roi * (12 + 6)
    print(f"mouth stage: {'on' if roi else 'off (no face on the identity frame)'}, "
          f"warped region {roi} px")
    print(f"total params {total_params}; per output frame {total_macs / 1e6:.1f} MMAC = "
          f"{2 * total_macs / 1e9:.3f} GFLOP (identity encoder once per call, not counted)")
    for threads in (1, 2):
        rx = NeuralReceiver(threads=threads)
        rx.run(ident, lows[:3], chunks)  # warm-up
        rx = NeuralReceiver(threads=threads)
        t0 = time.perf_counter()
        out = rx.run(ident, lows, chunks)
        dt = time.perf_counter() - t0
        per = {}
        feeds = ANIMATOR.feeds(rx.window_at(400.0)[None], rx.mel_at(400.0)[None],
                               **rx._id_inputs)  # noqa: SLF001
        id_in = np.ascontiguousarray(rx._identity.transpose(2, 0, 1)[None])  # noqa: SLF001
        for role, feed in ((ANIMATOR.role, feeds),
                           (IDENTITY_ENCODER.role, IDENTITY_ENCODER.feeds(id_in))):
            t1 = time.perf_counter()
            for _ in range(20):
                rx.sessions[role].run(None, feed)
            per[role] = 1000 * (time.perf_counter() - t1) / 20
        print(f"threads={threads}: {len(out)} frames in {dt:.2f} s = {len(out) / dt:.1f} fps "
              f"(animator {per['animator']:.1f} ms/call, identity encoder "
              f"{per['identity_encoder']:.1f} ms/call)")


if __name__ == "__main__":
    main()
