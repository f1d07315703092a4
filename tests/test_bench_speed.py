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


def test_graph_stats_counts_a_convolution_s_parameters_and_multiply_accumulates():
    pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph([conv], "conv", [x], [y], initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    params, macs = bench_speed.graph_stats(model.SerializeToString())
    assert params == 4 * 27 + 4
    assert macs == (4 * 8 * 8) * 27  # every output value: 3 channels x 3 x 3 taps


def test_the_report_prints_the_cost_table_and_the_per_frame_total():
    result = {"threads": 1, "canvas_fps": 50.0, "sender_fps": 60.0, "receivers": {},
              "parts": {}}
    pipeline = {"receiver": "align", "clip_s": 4.0, "encode_s": 1.0, "decode_s": 1.0,
                "realtime_factor": 0.5}
    cost = {"nets": {"animator": {"params": 1000, "macs": 2e6, "calls": 1.0, "kib": 4.0},
                     "interpolator": {"params": 500, "macs": 5e6, "calls": 0.2, "kib": 2.0}},
            "numpy_macs": 1e6, "macs_per_frame": 4e6, "mouth_pixels": 0}
    text = bench_speed.report([result], None, pipeline, Path("c.mp4"), cost)
    assert "| `animator` | 1,000 | 2.0 | 1.00 | 4 |" in text
    assert "4.0 MMAC = 0.008 GFLOP (1,500 parameters" in text
    assert "mouth stage off" in text


def test_model_cost_of_the_shipped_networks_adds_each_network_by_its_calls_per_frame():
    pytest.importorskip("onnx")
    from codec.receiver.registry import neural_available

    if not neural_available():
        pytest.skip("no shipped neural weights")
    cost = bench_speed.model_cost(mouth_pixels=10_000)
    nets = cost["nets"]
    assert nets["identity_encoder"]["calls"] == 0.0 and nets["animator"]["calls"] == 1.0
    assert all(v["params"] > 0 and v["kib"] > 0 for v in nets.values())
    networks = sum(v["macs"] * v["calls"] for v in nets.values())
    assert cost["macs_per_frame"] == networks + cost["numpy_macs"]
    assert bench_speed.model_cost(mouth_pixels=0)["numpy_macs"] == cost["numpy_macs"] - 180_000
