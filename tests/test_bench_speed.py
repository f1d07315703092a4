from pathlib import Path

import pytest

from benchmarks import bench_speed


def _tiny_model(path_dir: Path, role: str) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from codec.receiver.neural.weights import hashed_name

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], role, [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = model.SerializeToString()
    onnx.checker.check_model(model)
    (path_dir / hashed_name(role, data)).write_bytes(data)


def test_model_parts_times_every_role_on_the_cpu(tmp_path, monkeypatch):
    from codec.receiver.neural.weights import ROLES

    for role in ROLES:
        _tiny_model(tmp_path, role)
    monkeypatch.setenv("TALKCODEC_MODELS", str(tmp_path))
    parts = bench_speed.model_parts({"CPU": ["CPUExecutionProvider"]}, threads=1)
    assert set(parts) == set(ROLES)
    assert all(parts[r]["CPU"] > 10.0 for r in ROLES)  # a ReLU on 192 floats


def test_timed_counts_calls_per_second():
    calls = []
    rate = bench_speed._timed(lambda: calls.append(1), min_s=0.05, min_runs=5)
    assert len(calls) >= 6 and rate > 100


def test_report_has_a_column_per_thread_count_and_gpu_only_when_measured():
    result = {"threads": 1, "canvas_fps": 50.0, "sender_fps": 60.0,
              "receivers": {"align": 120.0}, "parts": {"animator": {"CPU": 30.0}}}
    two = dict(result, threads=2)
    pipeline = {"receiver": "align", "clip_s": 4.0, "encode_s": 1.0, "decode_s": 1.0,
                "realtime_factor": 0.5}
    text = bench_speed.report([result, two], None, pipeline, Path("c.mp4"))
    assert "| part | CPU 1 thr | CPU 2 thr |" in text and "GPU" not in text.split("\n")[2]
    assert "| receiver `align` (frames/s) | 120.0 | 120.0 |" in text
    with_gpu = bench_speed.report([result], {"animator": {"GPU": 900.0}}, pipeline, Path("c"))
    assert "| model part `animator` (runs/s) | 30.0 | 900.0 |" in with_gpu
