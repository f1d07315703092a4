"""The motion code: basis, group coding, bundling, CONFIG layout 2, the sender's landmarks,
the stream decoder, and the receiver driven by the code."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec.bitstream.config import StreamConfig, decode_config, encode_config
from codec.bitstream.motion_basis import fit_similarity, invert, load_basis
from codec.bitstream.motion_codec import (
    MotionDecoder,
    MotionEncoder,
    MotionParams,
    bundle,
    decode_anchor,
    encode_anchor,
    quantise_anchor,
    unbundle,
)
from codec.bitstream.packet import PacketFlag, StreamKind
from codec.bitstream.stream import StreamDecoder
from codec.errors import BitstreamError, CorruptError, InputError

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def basis():
    b = load_basis()
    assert b is not None, "the shipped motion basis (models/motion_basis-*.npz) is missing"
    return b


def _face(basis, rng: np.random.Generator, jaw: float = 0.0) -> np.ndarray:
    """A plausible face: the template placed on the canvas, the jaw opened by ``jaw``."""
    pts = basis.template * 60.0 + np.array([128.0, 120.0])
    pts = pts + rng.normal(0, 0.3, pts.shape)
    pts[5:12, 1] += jaw * 10
    pts[56:59, 1] += jaw * 8
    pts[65:68, 1] += jaw * 7
    return pts


def _walk(basis, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        p = _face(basis, rng, jaw=0.5 + 0.5 * np.sin(k / 3))
        out.append(p + np.array([3 * np.sin(k / 10), 2 * np.cos(k / 7)]))
    return out


def test_similarity_fit_and_inverse() -> None:
    rng = np.random.default_rng(1)
    src = rng.normal(size=(11, 2))
    ang, s, t = 0.3, 1.7, np.array([5.0, -2.0])
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = s * src @ rot.T + t
    pose = fit_similarity(src, dst)
    np.testing.assert_allclose(pose.apply(src), dst, atol=1e-9)
    np.testing.assert_allclose(invert(pose).apply(dst), src, atol=1e-9)


def test_basis_is_orthonormal_and_reconstructs_its_anchor(basis) -> None:
    c = basis.components
    np.testing.assert_allclose(c.T @ c, np.eye(c.shape[1]), atol=1e-4)
    face = _face(basis, np.random.default_rng(0))
    anchor_norm = basis.normalise(face)
    pose, coeffs = basis.analyse(face, anchor_norm)
    assert np.abs(coeffs).max() < 1e-6  # the anchor itself: no expression change
    np.testing.assert_allclose(basis.synthesise(pose, coeffs, anchor_norm), face, atol=1e-6)


@pytest.mark.parametrize("period", [40, 80, 200])
def test_groups_round_trip_within_the_quantiser(basis, period: int) -> None:
    params = MotionParams(period_ms=period, basis_id=basis.basis_id)
    enc, dec = MotionEncoder(params, basis), MotionDecoder(params, basis)
    faces = _walk(basis, 60)
    enc.set_anchor(faces[0])
    dec.set_anchor(faces[0])
    step = period // 40
    pending, decoded, sizes = [], {}, []
    for k, f in enumerate(faces):
        if k % step == 0:
            pending.append((k * 40, f))
        if k % 5 == 0:
            group = enc.encode_group(k * 40, pending, seq=len(sizes))
            pending = []
            for s in dec.decode_group(k * 40, group, seq=len(sizes)):
                decoded[s.timestamp_ms] = s.points
            sizes.append(len(group))
    assert sorted(decoded) == [k * 40 for k in range(0, 60, step) if k <= 55]
    errors = [np.linalg.norm(decoded[t] - faces[t // 40], axis=1).mean() for t in decoded]
    # Basis truncation + quantisation: about a pixel on a 256 canvas, never far off.
    assert np.mean(errors) < 1.6 and max(errors) < 3.0
    assert max(sizes) < 60


def test_unconfident_samples_decode_as_none_and_the_chain_survives(basis) -> None:
    params = MotionParams(period_ms=40, basis_id=basis.basis_id)
    enc, dec = MotionEncoder(params, basis), MotionDecoder(params, basis)
    faces = _walk(basis, 11)
    enc.set_anchor(faces[0])
    dec.set_anchor(faces[0])
    g1 = enc.encode_group(0, [(0, faces[0])], seq=7)
    samples = [(t * 40, None if t in (2, 5) else faces[t]) for t in range(1, 6)]
    g2 = enc.encode_group(200, samples, seq=8)
    dec.decode_group(0, g1, seq=7)
    out = dec.decode_group(200, g2, seq=8)
    assert [s.timestamp_ms for s in out] == [40, 80, 120, 160, 200]
    assert out[1].points is None and out[4].points is None
    assert out[0].points is not None and out[2].points is not None


@pytest.mark.parametrize("group_format", [1, 2])
def test_a_lost_group_waits_for_the_refresh(basis, group_format: int) -> None:
    """Format 1 sees the loss in its group counter, format 2 in the LOWRES packets'
    sequence numbers (here from 65534, across the wrap)."""
    params = MotionParams(period_ms=200, refresh_period=3, basis_id=basis.basis_id,
                          group_format=group_format)
    enc, dec = MotionEncoder(params, basis), MotionDecoder(params, basis)
    faces = _walk(basis, 8)
    enc.set_anchor(faces[0])
    dec.set_anchor(faces[0])
    seqs = [(65534 + k) % 65536 for k in range(7)]
    groups = [enc.encode_group(200 * k, [(200 * k, faces[k])], seq=seqs[k]) for k in range(7)]
    got = {k: dec.decode_group(200 * k, g, seq=seqs[k]) for k, g in enumerate(groups) if k != 1}
    assert got[0] and not got[2]  # group 1 lost: group 2 cannot be decoded
    assert got[3] and got[4] and dec.lost == 1  # the refresh group (every 3rd) recovers
    if group_format == 1:
        assert groups[3][0] & 0x80
    # Every group decodes when none is lost; a group out of sequence waits, too.
    dec2 = MotionDecoder(params, basis)
    dec2.set_anchor(faces[0])
    assert all(dec2.decode_group(200 * k, g, seq=seqs[k]) for k, g in enumerate(groups))
    assert dec2.lost == 0


def test_compact_groups_are_smaller_and_a_new_sequence_refreshes(basis) -> None:
    """Format 2 saves format 1's header byte and, on the grid, the timing: the same
    samples code in fewer bytes; a group whose LOWRES packet does not follow the last
    group's is a refresh group (the receiver can decode it without the one before)."""
    faces = _walk(basis, 60)
    sizes = {}
    for fmt in (1, 2):
        params = MotionParams(period_ms=80, basis_id=basis.basis_id, group_format=fmt)
        enc = MotionEncoder(params, basis)
        enc.set_anchor(faces[0])
        pending, total = [], 0
        for k, f in enumerate(faces):
            if k % 2 == 0:
                pending.append((k * 40, f))
            if k % 5 == 0:
                total += len(enc.encode_group(k * 40, pending, seq=k // 5))
                pending = []
        sizes[fmt] = total
    assert sizes[2] <= sizes[1] - 12, sizes  # at least the 12 header bytes
    params = MotionParams(period_ms=80, basis_id=basis.basis_id)
    enc, dec = MotionEncoder(params, basis), MotionDecoder(params, basis)
    enc.set_anchor(faces[0])
    dec.set_anchor(faces[0])
    enc.encode_group(0, [(0, faces[0])], seq=1)
    jumped = enc.encode_group(200, [(80, faces[2]), (160, faces[4])], seq=5)  # 2-4: none
    out = dec.decode_group(200, jumped, seq=5)
    assert [s.timestamp_ms for s in out] == [80, 160] and out[0].points is not None


def test_anchor_and_bundle_round_trip(basis) -> None:
    pts = _face(basis, np.random.default_rng(3))
    rid, bid, back = decode_anchor(encode_anchor(7, basis.basis_id, pts))
    assert (rid, bid) == (7, basis.basis_id)
    np.testing.assert_allclose(back, quantise_anchor(pts))
    assert unbundle(bundle(b"frame", b"\x80code")) == (b"frame", b"\x80code")
    with pytest.raises(CorruptError):
        decode_anchor(b"\x00\x01\x00\x00\x00\x00short")


def test_config_layouts() -> None:
    plain = StreamConfig()
    assert encode_config(plain)[0] == 1  # streams without the code keep layout 1
    assert decode_config(encode_config(plain)) == plain
    with_code = StreamConfig(motion=MotionParams(period_ms=40, quant=2.5, n_coeffs=12,
                                                 basis_id=0xDEADBEEF))
    data = encode_config(with_code)
    assert data[0] == 3 and decode_config(data) == with_code  # format 2 groups
    old_format = StreamConfig(motion=replace(with_code.motion, group_format=1))
    old = encode_config(old_format)
    assert old[0] == 2 and old[1:] == data[1:] and decode_config(old) == old_format
    with pytest.raises(BitstreamError):
        decode_config(data[:-1])
    bad = bytearray(data)
    bad[-8] = 33  # a code period that is not 40, 80 or 200 ms
    with pytest.raises(BitstreamError):
        decode_config(bytes(bad))


@FUZZ
@given(st.binary(max_size=200), st.integers(0, 10**6))
def test_hostile_groups_never_raise_anything_but_bitstream_errors(data: bytes, ts: int) -> None:
    b = load_basis()
    assert b is not None
    for fmt in (1, 2):
        dec = MotionDecoder(MotionParams(basis_id=b.basis_id, group_format=fmt), b)
        dec.set_anchor(b.template * 60 + 128)
        for seq, payload in ((None, b"\x80" + data), (0, data), (1, data), (None, data)):
            try:
                for s in dec.decode_group(ts, payload, seq):
                    assert s.points is None or np.isfinite(s.points).all()
            except BitstreamError:
                pass
    for parse in (decode_anchor, unbundle):
        try:
            parse(data)
        except BitstreamError:
            pass


def _clip(n: int = 30):
    from codec.types import FaceClip
    from tests._canvas_clip import canvas_frames

    return FaceClip(frames=np.array(canvas_frames(n)))


def test_sender_measures_the_face_and_the_stream_decodes_it() -> None:
    from codec.sender.landmarks import FaceLandmarker
    from codec.sender.sender import Sender, SenderConfig

    clip = _clip(30)
    config = SenderConfig(motion_period_ms=40, rate_target_bps=None)
    packets = Sender(config, with_audio=False).encode_clip(clip)
    kinds = [p.kind for p in packets]
    assert kinds[:3] == [StreamKind.CONFIG, StreamKind.IDENTITY, StreamKind.MOTION]
    lowres = [p for p in packets if p.kind is StreamKind.LOWRES]
    assert all(p.flags & PacketFlag.MOTION for p in lowres)
    dec = StreamDecoder()
    anchors, samples = [], []
    for p in packets:
        ev = dec.push(p)
        anchors += ev.anchors
        samples += ev.motion
    assert len(anchors) == 1 and dec.corrupt == 0
    assert [s.timestamp_ms for s in samples] == [40 * k for k in range(0, 30)]
    lm = FaceLandmarker(fps=25)
    truth = [lm.measure(f).points for f in clip.frames]
    err = [np.linalg.norm(s.points - truth[s.timestamp_ms // 40], axis=1).mean()
           for s in samples if s.points is not None]
    assert len(err) >= 24 and np.mean(err) < 1.8


def test_sender_without_a_face_sends_no_code_and_still_decodes() -> None:
    from codec.receiver.pipeline import decode_packets
    from codec.receiver.registry import get_receiver
    from codec.sender.sender import Sender
    from codec.types import FaceClip

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (15, 256, 256, 3), dtype=np.uint8)
    packets = Sender(with_audio=False).encode_clip(FaceClip(frames=frames))
    assert StreamKind.MOTION not in [p.kind for p in packets]
    assert not any(p.flags & PacketFlag.MOTION for p in packets)
    out = decode_packets(packets, get_receiver("backproject"))
    assert len(out.frames) == 15


def test_receiver_motion_at_interpolates_holds_and_refuses_stale_anchors() -> None:
    from codec.bitstream.motion_codec import MotionSample
    from codec.receiver.backproject import BackprojectReceiver
    from codec.types import IdentityFrame

    r = BackprojectReceiver()
    r.set_identity(IdentityFrame(np.zeros((256, 256, 3), np.uint8), 0, refresh_id=3))
    a = np.zeros((68, 2), np.float32) + 100
    r.push_motion(MotionSample(0, a))
    r.push_motion(MotionSample(80, a + 8))
    r.push_motion(MotionSample(160, None))
    assert r.motion_at(40) is None  # no anchor yet
    r.set_motion_anchor(a, refresh_id=2)
    assert r.motion_at(40) is None  # the anchor of another identity frame
    r.set_motion_anchor(a, refresh_id=3)
    np.testing.assert_allclose(r.motion_at(40), a + 4)
    assert r.motion_at(120) is None  # the sender lost the face at 160
    assert r.motion_at(400) is None  # long past the last sample
    with pytest.raises(InputError):
        r.push_motion(MotionSample(200, np.full((68, 2), np.nan, np.float32)))


def test_a_file_decoder_interpolates_the_code_at_an_8x8_frame_between_two_samples() -> None:
    """At 12.5 samples/s the 8x8 frame at 200 ms falls between the samples at 160 and 240,
    and the later one comes with the next 8x8 frame. Offline the frame at 200 waits for it
    and is interpolated; a live call (a presentation clock) renders it at once, holding."""
    from codec.bitstream.motion_codec import MotionSample
    from codec.receiver.backproject import BackprojectReceiver
    from codec.types import IdentityFrame, LowResFrame

    class Recording(BackprojectReceiver):
        def render(self, t_ms: float) -> np.ndarray:
            seen[int(round(t_ms))] = self.motion_at(t_ms)
            return super().render(t_ms)

    a = np.zeros((68, 2), np.float32) + 100
    for live in (False, True):
        seen: dict[int, np.ndarray | None] = {}
        r = Recording()
        r.set_identity(IdentityFrame(np.zeros((256, 256, 3), np.uint8), 0, refresh_id=1))
        r.set_motion_anchor(a, refresh_id=1)
        now = 200.0 if live else None
        for ts in (0, 80, 160):  # the group bundled with the 8x8 frame at 200
            r.push_motion(MotionSample(ts, a + ts / 10))
        for ts in (0, 200):
            r.push_lowres(LowResFrame(np.zeros((8, 8, 3), np.float32), ts))
        r.pull(now)
        if live:
            assert 200 in seen
            np.testing.assert_allclose(seen[200], a + 16)  # held: 160's sample
            continue
        assert sorted(seen) == [0, 40, 80, 120, 160]
        np.testing.assert_allclose(seen[120], a + 12)
        for ts in (240, 320, 400):  # the next group, with the 8x8 frame at 400
            r.push_motion(MotionSample(ts, a + ts / 10))
        r.push_lowres(LowResFrame(np.zeros((8, 8, 3), np.float32), 400))
        r.pull()
        np.testing.assert_allclose(seen[200], a + 20)  # interpolated between 160 and 240
        np.testing.assert_allclose(seen[400], a + 40)  # a sample at 400: no wait
        r.push_lowres(LowResFrame(np.zeros((8, 8, 3), np.float32), 600))
        r.pull()
        assert 600 not in seen  # between the samples at 560 and 640, which is not here
        assert 600 in {f.timestamp_ms for f in r.flush()}  # the stream's end renders it


def test_neural_receiver_follows_the_code() -> None:
    """With the code, the output's face is where the sender measured it: the mouth
    landmarks of the decoded frames match the source's far better than without it."""
    from codec.metrics.landmarks import MOUTH, detect_face, landmark_distance, landmarks
    from codec.receiver.pipeline import decode_packets
    from codec.receiver.registry import get_receiver, neural_available
    from codec.sender.sender import Sender, SenderConfig

    if not neural_available():
        pytest.skip("neural weights not present")
    clip = _clip(40)
    packets = Sender(SenderConfig(), with_audio=False).encode_clip(clip)
    out = decode_packets(packets, get_receiver("neural"))
    assert {f.meta.get("motion") for f in out.frames[1:]} == {"code"}
    plain = decode_packets(Sender(SenderConfig(motion=False), with_audio=False)
                           .encode_clip(clip), get_receiver("neural"))
    assert {f.meta.get("motion") for f in plain.frames} == {"network"}
    d_code, d_plain = [], []
    for k in range(3, 40, 4):
        box = detect_face(clip.frames[k])
        truth = landmarks(clip.frames[k], box)
        d_code.append(landmark_distance(landmarks(out.frames[k].image, box), truth, MOUTH))
        d_plain.append(landmark_distance(landmarks(plain.frames[k].image, box), truth, MOUTH))
    assert np.mean(d_code) < 2.5 and np.mean(d_code) < np.mean(d_plain)


def test_code_path_agrees_with_each_8x8_frame_to_within_half_its_quantiser_step() -> None:
    """The code's warp is back-projected through a soft threshold of half the 8x8 step
    (the quantiser reaches the receiver with each decoded frame): each block mean of an
    output frame at an 8x8 frame's time is within that of the decoded 8x8 pixel, and the
    threshold does leave some of the 8x8's coding noise out."""
    from codec.receiver.neural.receiver import BP_NOISE
    from codec.receiver.pipeline import decode_packets
    from codec.receiver.registry import get_receiver, neural_available
    from codec.sender.downsample import box_downsample
    from codec.sender.sender import Sender, SenderConfig

    if not neural_available():
        pytest.skip("neural weights not present")
    config = SenderConfig(rate_target_bps=None)
    packets = Sender(config, with_audio=False).encode_clip(_clip(30))
    dec = StreamDecoder()
    lows = {}
    for p in packets:
        for f in dec.push(p).lowres:
            assert f.quant == config.quant
            lows[f.timestamp_ms] = f.pixels
    out = {f.timestamp_ms: f for f in decode_packets(packets, get_receiver("neural")).frames}
    noise = BP_NOISE * config.quant
    worst, checked = 0.0, 0
    for ts, px in lows.items():
        frame = out.get(ts)
        if ts == 0 or frame is None or frame.meta.get("motion") != "code":
            continue
        img = frame.image
        blocks = img.reshape(8, 32, 8, 32, 3)
        clipped = ((blocks == 0) | (blocks == 255)).mean(axis=(1, 3)) > 0.01
        diff = np.abs(box_downsample(img, 32) - px)[~clipped]
        worst = max(worst, float(diff.max()))
        checked += 1
    assert checked >= 4
    assert worst <= noise + 0.5 + 1e-3, worst
    assert worst > 0.5 + 1e-3  # not the plain back-projection: some noise was left out


def test_rate_control_reencodes_a_clip_over_its_target() -> None:
    from codec.sender.sender import Sender, SenderConfig, video_bits

    clip = _clip(30)
    free = Sender(SenderConfig(rate_target_bps=None), with_audio=False).encode_clip(clip)
    rate = video_bits(free) / clip.duration_s
    target = 0.85 * rate
    held = Sender(SenderConfig(rate_target_bps=target), with_audio=False).encode_clip(clip)
    assert video_bits(held) / clip.duration_s <= target
    configs = [p for p in held if p.kind is StreamKind.CONFIG]
    assert decode_config(configs[0].payload).lowres.quant > SenderConfig().quant
    # ... and the coarser stream still decodes, code and all.
    dec = StreamDecoder()
    samples = [s for p in held for s in dec.push(p).motion]
    assert len(samples) > 10 and dec.corrupt == 0


def test_hostile_anchors_cost_the_code_not_the_stream(basis) -> None:
    from codec.bitstream.packet import Packet
    from codec.receiver.registry import get_receiver, neural_available
    from codec.types import IdentityFrame

    flat = np.zeros((68, 2))  # every point in one place
    with pytest.raises(CorruptError):
        decode_anchor(encode_anchor(0, basis.basis_id, flat))
    dec = StreamDecoder()
    ev = dec.push(Packet(StreamKind.MOTION, 0, 0, PacketFlag.NONE,
                         encode_anchor(0, basis.basis_id, flat)))
    assert not ev.anchors and dec.corrupt == 1
    if neural_available():
        # An anchor far off the canvas still reaches the receiver; it renders regardless.
        r = get_receiver("neural")
        r.set_identity(IdentityFrame(np.full((256, 256, 3), 90, np.uint8)))
        far = _face(basis, np.random.default_rng(0)) * 30 + 3000
        r.set_motion_anchor(far, 0)
        from codec.bitstream.motion_codec import MotionSample
        from codec.types import LowResFrame

        r.push_motion(MotionSample(0, far.astype(np.float32)))
        r.push_lowres(LowResFrame(np.full((8, 8, 3), 90, np.float32), 0))
        r.push_lowres(LowResFrame(np.full((8, 8, 3), 90, np.float32), 200))
        frames = r.pull() + r.flush(400)
        assert frames and all(f.image.shape == (256, 256, 3) for f in frames)
