"""Cold start (issue 14, item 4): until the identity frame is decoded, and for a stream
that never carries one, the ``neural`` receiver shows the ``voice`` receiver's face, then
cross-fades to the identity-based face over ~0.5 s (12 frames at 25 fps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codec.bitstream.packet import Packet, StreamKind
from codec.receiver.pipeline import decode_packets
from codec.receiver.registry import get_receiver, neural_available
from codec.sender.sender import Sender
from codec.types import FaceClip, IdentityFrame
from tests._canvas_clip import canvas_frames, clip_audio

N_FRAMES = 60  # 2.4 s
LATE_AFTER = 3  # the identity frame arrives after this many 8x8 packets


def _needs_both() -> None:
    from codec.receiver.voice import weights_problem

    if not neural_available():
        pytest.skip("the neural receiver cannot run here")
    problem = weights_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture(scope="module")
def packets() -> list[Packet]:
    canvas = np.array(canvas_frames(N_FRAMES))
    audio = np.array(clip_audio(N_FRAMES / 25))
    return Sender().encode_clip(FaceClip(frames=canvas, audio=audio))


def _without_identity(packets: list[Packet]) -> list[Packet]:
    return [p for p in packets if p.kind is not StreamKind.IDENTITY]


def _identity_late(packets: list[Packet], after: int = LATE_AFTER) -> list[Packet]:
    """The identity frame moved behind the first ``after`` 8x8 packets (a slow link)."""
    identity = next(p for p in packets if p.kind is StreamKind.IDENTITY)
    rest = _without_identity(packets)
    lowres = [i for i, p in enumerate(rest) if p.kind is StreamKind.LOWRES]
    cut = lowres[after]
    return [*rest[:cut], identity, *rest[cut:]]


def _flat(image: np.ndarray) -> bool:
    return float(image.astype(np.float32).std()) < 5.0


def test_stream_without_identity_decodes_to_voice_faces(packets: list[Packet]) -> None:
    _needs_both()
    video = decode_packets(_without_identity(packets), get_receiver("neural"))
    assert len(video.frames) == N_FRAMES
    assert video.stats["placeholder_frames"] == 0
    assert video.stats["voice_frames"] == N_FRAMES
    assert not any(_flat(f.image) for f in video.frames)  # faces, not black or grey
    # exactly the voice receiver's frames
    voice = decode_packets(_without_identity(packets), get_receiver("voice"))
    for a, b in zip(video.frames, voice.frames, strict=True):
        assert a.timestamp_ms == b.timestamp_ms
        assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= 1


def test_late_identity_fades_in_from_the_voice_face(packets: list[Packet]) -> None:
    _needs_both()
    from codec.receiver.neural.receiver import FADE_FRAMES

    rx = get_receiver("neural")
    late = decode_packets(_identity_late(packets), rx)
    voice = decode_packets(_without_identity(packets), get_receiver("voice")).frames
    full = decode_packets(packets, get_receiver("neural")).frames
    assert len(late.frames) == len(voice) == len(full) == N_FRAMES
    kinds = [f.meta.get("identity") for f in late.frames]
    n_voice = kinds.count("voice")
    # Before the identity: the voice face (not the placeholder, not black), from frame 0.
    assert late.frames[0].timestamp_ms == 0 and 0 < n_voice < N_FRAMES - FADE_FRAMES
    assert kinds[:n_voice] == ["voice"] * n_voice and late.stats["placeholder_frames"] == 0
    for k in range(n_voice):
        assert not _flat(late.frames[k].image)
        assert np.abs(late.frames[k].image.astype(int) - voice[k].image.astype(int)).max() <= 1
    # Then FADE_FRAMES frames blending the two, the identity's weight rising monotonically
    # to 1 over ~0.5 s ...
    fading = late.frames[n_voice:n_voice + FADE_FRAMES]
    weights = [f.meta.get("fade") for f in fading]
    assert all(w is not None for w in weights), weights
    assert np.all(np.diff(weights) > 0) and 0 < weights[0] < 0.15 and 0.85 < weights[-1] < 1
    span_ms = fading[-1].timestamp_ms - fading[0].timestamp_ms + 40
    assert 400 <= span_ms <= 600
    to_voice, to_full = [], []
    for f, w in zip(fading, weights, strict=True):
        k = f.timestamp_ms // 40
        a, b = voice[k].image.astype(np.float32), full[k].image.astype(np.float32)
        mixed = w * b + (1 - w) * a
        assert np.abs(f.image - mixed).max() <= 1.5  # a cross-fade of the two faces
        to_voice.append(np.abs(f.image - a).mean())
        to_full.append(np.abs(f.image - b).mean())
    assert np.all(np.diff(to_voice) > 0) and np.all(np.diff(to_full) < 0)
    # ... and after it the identity-based face alone, with the voice receiver gone.
    after = late.frames[n_voice + FADE_FRAMES:]
    assert after and all("fade" not in f.meta and "identity" not in f.meta for f in after)
    for f in after:
        ref = full[f.timestamp_ms // 40].image.astype(int)
        assert np.abs(f.image.astype(int) - ref).max() <= 1
    assert rx._voice is None and rx._fade_from is None  # noqa: SLF001


def test_identity_first_never_builds_on_the_voice_face(packets: list[Packet]) -> None:
    """The file decoder's usual order (identity frame first): no voice frame, no fade,
    and the voice receiver is dropped before the first 8x8 frame."""
    _needs_both()
    rx = get_receiver("neural")
    video = decode_packets(packets, rx)
    assert video.stats["voice_frames"] == 0
    assert not any("fade" in f.meta for f in video.frames)
    assert rx._voice is None  # noqa: SLF001


def test_replaced_identity_cross_fades(packets: list[Packet]) -> None:
    _needs_both()
    from codec.receiver.neural.receiver import FADE_FRAMES
    from codec.types import LowResFrame

    rx = get_receiver("neural")
    video = decode_packets(packets, rx)
    first = video.frames[-1].image
    # A refresh: another identity frame (the first one, mirrored) replaces it mid-stream.
    old = rx.identity
    assert old is not None
    rx.set_identity(IdentityFrame(image=np.ascontiguousarray(old.image[:, ::-1]),
                                  timestamp_ms=old.timestamp_ms, refresh_id=old.refresh_id + 1))
    last = rx.lowres[-1]
    out = []
    for i in range(1, 6):
        rx.push_lowres(LowResFrame(last.pixels, last.timestamp_ms + 200 * i))
        out += rx.pull()
    weights = [f.meta.get("fade") for f in out[:FADE_FRAMES]]
    assert all(w is not None for w in weights) and np.all(np.diff(weights) > 0)
    assert all("fade" not in f.meta for f in out[FADE_FRAMES:])
    # the picture leaves the old face gradually, not at once (the 8x8 frame is held, so
    # only the fade moves it)
    away = [float(np.abs(f.image.astype(np.float32) - first).mean())
            for f in out[:FADE_FRAMES + 1]]
    assert np.all(np.diff(away) > 0) and away[-1] > away[0] + 5


def test_decode_cli_without_identity_writes_faces(packets: list[Packet], tmp_path: Path) -> None:
    """``talkcodec decode`` of a file with no identity frame: a video, not an error."""
    _needs_both()
    import av

    from codec.bitstream.container import write_container
    from codec.cli import main

    src, out = tmp_path / "noid.tc", tmp_path / "noid.mp4"
    write_container(src, _without_identity(packets), {})
    assert main(["decode", str(src), "-o", str(out), "--receiver", "neural"]) == 0
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == N_FRAMES and not any(_flat(f) for f in frames)
