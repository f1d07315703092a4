"""Lip-sync metric (codec.metrics.sync) and its expert (training/train_sync.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from codec.metrics import sync as S
from codec.receiver.neural.weights import ModelIntegrityError, models_dir
from training.paths import cache_dir

VAL_CLIP = "rizkiarm__LipNet__evaluation__samples__GRID__bbaf2n"  # grid_spkA, 75 frames


def _shipped() -> bool:
    return any(models_dir().glob(f"{S.ROLE}-*.onnx"))


def _val_clip() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames, landmarks, audio) of a val speech clip: from the training cache when it is
    built, else made the same way from ../shared/data (the sender's loader + dlib)."""
    d = cache_dir() / "clips" / VAL_CLIP
    if not (d / "meta.json").exists():
        from codec.data import data_dir
        from codec.sender.canvas import load_face_clip
        from training.build_cache import canvas_landmarks

        path = data_dir() / "clips" / f"{VAL_CLIP}.mpg"
        if not path.exists():
            pytest.skip(f"shared data not found at {data_dir()}")
        clip = load_face_clip(str(path), max_seconds=12.0)
        return clip.frames, canvas_landmarks(clip.frames), clip.audio
    t = json.loads((d / "meta.json").read_text())["n_frames"]
    frames = np.memmap(d / "frames.u8", np.uint8, "r", shape=(t, 256, 256, 3))
    return np.asarray(frames), np.load(d / "landmarks.npy")[:t], np.load(d / "audio.npy")


def test_torch_and_onnxruntime_agree(tmp_path):
    from training.train_sync import SyncNet, export

    torch.manual_seed(0)
    model = SyncNet(-3.8, 4.1).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    gen = torch.Generator().manual_seed(1)
    video = torch.rand(3, S.WINDOW, S.CROP_H, S.CROP_W, generator=gen) * 255
    audio = torch.randn(7, 1, 20, 40, generator=gen) * 4 - 4
    path, diff = export(model, video, audio, tmp_path)
    assert diff < 1e-4
    ve, ae = S.SyncExpert(path).embed(video.numpy(), audio.numpy())  # hash-verified load
    with torch.no_grad():
        tv, ta = model(video, audio)
    np.testing.assert_allclose(ve, tv.numpy(), atol=1e-4)
    np.testing.assert_allclose(ae, ta.numpy(), atol=1e-4)
    assert ve.shape == (3, 64) and ae.shape == (7, 64)
    np.testing.assert_allclose(np.linalg.norm(ae, axis=1), 1.0, atol=1e-5)


def test_tampered_expert_is_refused(tmp_path):
    if not _shipped():
        pytest.skip("no shipped sync expert")
    src = S.find_model(S.ROLE)
    bad = tmp_path / src.name
    data = bytearray(src.read_bytes())
    data[-1] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError):
        S.SyncExpert(bad)


@pytest.mark.skipif(not _shipped(), reason="no shipped sync expert")
def test_shifted_audio_lowers_confidence_on_a_val_clip():
    """The clip's audio rotated by 30 frames (1.2 s, beyond the -7..+7 search; rotated
    rather than delayed, so no silence edge is left for the expert to align on)."""
    frames, points, audio = _val_clip()
    true = S.sync_scores(frames, points, audio)
    shifted = S.sync_scores(frames, points, np.roll(audio, 30 * 640))
    assert true.n_windows == len(frames) - 2 * S.VSHIFT
    assert true.distances.shape == (true.n_windows, 2 * S.VSHIFT + 1)
    assert true.lse_c > shifted.lse_c
    assert true.lse_d < shifted.lse_d
    assert true.offset_acc > shifted.offset_acc
    assert abs(true.av_offset) <= 1


def _frames(n: int) -> np.ndarray:
    return np.zeros((n, 256, 256, 3), np.uint8)


def _points(n: int) -> np.ndarray:
    p = np.zeros((68, 2))
    p[:, 0], p[:, 1] = 128.0, 180.0
    p[48], p[54] = (108.0, 180.0), (148.0, 180.0)
    return np.repeat(p[None], n, 0)


def test_bad_inputs_give_a_clear_error():
    audio = np.zeros(40 * 640, np.float32)
    with pytest.raises(S.SyncError, match="empty clip"):
        S.sync_scores(_frames(0), _points(0), audio, expert=object())
    with pytest.raises(S.SyncError, match="no audio"):
        S.sync_scores(_frames(40), _points(40), None, expert=object())
    with pytest.raises(S.SyncError, match="no audio"):
        S.sync_scores(_frames(40), _points(40), np.zeros(0, np.float32), expert=object())
    with pytest.raises(S.SyncError, match="40 frames but 39"):
        S.sync_scores(_frames(40), _points(39), audio, expert=object())
    with pytest.raises(S.SyncError, match="lengths differ"):
        S.sync_scores(_frames(40), _points(40), audio[: 16000 // 4], expert=object())
    with pytest.raises(S.SyncError, match="shorter"):
        S.sync_scores(_frames(10), _points(10), audio[: 10 * 640], expert=object())
    with pytest.raises(S.SyncError, match="no frame has mouth landmarks"):
        S.sync_scores(_frames(40), [None] * 40, audio, expert=object())


def test_track_fills_frames_without_landmarks():
    pts = list(_points(30))
    pts[3] = None
    pts[4] = np.full((68, 2), np.nan)
    track = S.mouth_track(pts)
    assert track.shape == (30, 3) and not np.isnan(track).any()
    np.testing.assert_allclose(track[:, 2], S.BOX_SCALE * 40.0)
    crops = S.mouth_crops(_frames(30), track)
    assert crops.shape == (30, S.CROP_H + 2 * S.PAD_H, S.CROP_W + 2 * S.PAD_W)
