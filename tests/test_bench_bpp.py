import csv
import math

import numpy as np
import pytest

from benchmarks import bench_bpp, rd_report, talkcodec_runner
from tests._face_frames import DATA


def test_bd_rate_of_a_curve_at_half_the_rate_is_minus_50_percent():
    ref = [(10.0, 30.0), (20.0, 33.0), (40.0, 36.0), (80.0, 38.0)]
    half = [(r / 2, q) for r, q in ref]
    assert rd_report.bd_rate(ref, half) == pytest.approx(-50.0, abs=1e-6)
    assert rd_report.bd_rate(ref, ref) == pytest.approx(0.0, abs=1e-9)
    assert rd_report.bd_rate(ref, [(5.0, 10.0), (6.0, 12.0)]) is None  # no overlap
    assert rd_report.bd_rate(ref, [(5.0, 31.0)]) is None  # one point is not a curve


def test_equivalent_rate_interpolates_in_log_rate_and_refuses_to_extrapolate():
    curve = [(10.0, 30.0), (100.0, 40.0)]
    assert rd_report.equivalent_rate(curve, 35.0) == pytest.approx(10 ** 1.5)
    assert rd_report.equivalent_rate(curve, 25.0) is None
    fid_curve = [(10.0, 200.0), (100.0, 20.0)]  # lower is better
    assert rd_report.equivalent_rate(fid_curve, 110.0, higher_is_better=False) == (
        pytest.approx(10 ** 1.5)
    )
    assert rd_report.equivalent_rate(fid_curve, 300.0, higher_is_better=False) is None


def test_aggregate_means_over_clips_and_pools_fid_features():
    rng = np.random.default_rng(0)
    gt = rng.normal(0, 1, (10, 4))
    rows = []
    for clip, psnr, feats in (("a", 30.0, gt[:5]), ("b", 34.0, gt[5:])):
        row = {"clip": clip, "codec": "H.264", "setting": "crf=30", "psnr": psnr,
               "mouth_corr": float("nan") if clip == "a" else 0.5, "fid_features": feats}
        row |= {k: 1.0 for k in rd_report.RATES}
        rows.append(row)
    (agg,) = rd_report.aggregate(rows, gt)
    assert agg["psnr"] == 32.0 and agg["mouth_corr"] == 0.5 and agg["clips"] == 2
    assert agg["fid_frames"] == 10
    assert agg["fid"] == pytest.approx(0.0, abs=1e-9)  # pooled features == reference set
    assert math.isnan(agg["ssim"])


def test_end_to_end_on_one_short_clip(tmp_path):
    if not (DATA / "manifest.csv").exists():
        pytest.skip("shared data not found")
    receiver = talkcodec_runner.available_receivers()[0]
    rc = bench_bpp.main([
        "--split", "val", "--quick", "--max-clips", "1", "--max-seconds", "1.2",
        "--codecs", "H.264", "--receivers", receiver, "--no-fid", "--out", str(tmp_path), "--tag", "t",
    ])
    assert rc == 0
    with open(tmp_path / "bpp_t.csv", newline="") as fh:
        agg = list(csv.DictReader(fh))
    assert {r["codec"] for r in agg} == {"talkcodec", "H.264"}
    assert len(agg) == 1 + 3  # one receiver + the 3-point quick H.264 ladder
    h264 = sorted((float(r["kbps_video"]), float(r["psnr"])) for r in agg if r["codec"] == "H.264")
    assert h264[0][1] < h264[-1][1]  # more bits, better PSNR
    tc = next(r for r in agg if r["codec"] == "talkcodec")
    assert 0 < float(tc["kbps_lowres"]) < float(tc["kbps_video"]) <= float(tc["kbps_total"])
    assert float(tc["bpp_video"]) == pytest.approx(
        float(tc["kbps_video"]) * 1000 / (256 * 256 * 25), rel=1e-3
    )
    assert (tmp_path / "rd_t.png").stat().st_size > 10_000
    assert "BD-rate" in (tmp_path / "bpp_t.md").read_text()


def test_talkcodec_decode_fills_the_25fps_grid():
    if not (DATA / "manifest.csv").exists():
        pytest.skip("shared data not found")
    from codec.types import FaceClip
    from tests._face_frames import CLIP_A, face_frames

    clip = FaceClip(frames=face_frames(CLIP_A, 23))
    stream = talkcodec_runner.encode(clip)
    frames = talkcodec_runner.decode(stream.packets, "bicubic", clip.n_frames)
    assert frames.shape == clip.frames.shape and frames.dtype == np.uint8
    # nothing is held over a hole: the pipeline itself renders every grid time
    from codec.receiver.pipeline import decode_packets
    from codec.receiver.registry import get_receiver

    out = decode_packets(stream.packets, get_receiver("bicubic")).frames
    assert [f.timestamp_ms for f in out] == list(clip.timestamps_ms())
    assert np.array_equal(frames, np.stack([f.image for f in out]))
    assert stream.bits_audio == 0 and stream.bits_video == stream.bits_total > stream.bits_lowres
