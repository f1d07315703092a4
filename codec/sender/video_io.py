"""Decode any video file with PyAV: RGB frames with presentation times, and 16 kHz speech.

Every frame comes out as a C-contiguous ``(H, W, 3)`` uint8 RGB array together with its
presentation time in seconds (from the stream's pts, not from a frame counter, so variable
frame rates and 29.97 fps material keep their true timing). Frames are decoded one at a
time, and can be scaled down inside the decoder (``max_side``) so a 4K input never costs
more than one full-size frame of memory.

Anything that is not a decodable video (missing file, truncated or corrupt container, an
audio-only file, absurd dimensions) raises :class:`codec.errors.InputError` with a one-line
message; PyAV's own exceptions never leak out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from codec import AUDIO_RATE
from codec.errors import InputError

# Bounds that keep a hostile file from costing unbounded memory or time.
MAX_SOURCE_SIDE = 8192  # 8K; anything bigger is refused
MAX_AUDIO_SECONDS = 4 * 3600.0
_OPEN_TIMEOUT_S = 10.0
SEEK_AFTER_S = 1.0  # a start further in than this seeks (to the keyframe before it)
SEEK_MARGIN_S = 0.5  # seek this much early: keyframe times and pts can disagree slightly


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream."""

    width: int
    height: int
    fps: float  # average frame rate (may be approximate for variable-rate files)
    duration_s: float | None
    has_audio: bool
    codec: str


class VideoFrame:
    """One decoded frame and its presentation time.

    The RGB pixels (``image``: C-contiguous (H, W, 3) uint8, scaled to at most ``max_side``,
    turned upright when the container asks for a display rotation, as phones do for
    portrait video) are converted from the decoder's picture on first access only, so
    frames that a caller skips (rate conversion, detection every few frames) cost no colour
    conversion. ``size`` and ``source_size`` are (width, height) as displayed.
    """

    __slots__ = ("_picture", "_image", "_coded", "_interp", "_turns", "time_s", "source_size")

    def __init__(self, picture: av.VideoFrame | np.ndarray, time_s: float,
                 source_size: tuple[int, int], size: tuple[int, int] | None = None,
                 interpolation: str = "AREA", quarter_turns: int = 0) -> None:
        """``size``/``source_size`` are coded (pre-rotation) sizes; ``quarter_turns`` the
        counter-clockwise quarter turns that make the picture upright."""
        self._picture = picture if isinstance(picture, av.VideoFrame) else None
        self._image = None if self._picture is not None else np.ascontiguousarray(picture)
        self._coded = size or source_size
        self._interp = interpolation
        self._turns = quarter_turns % 4
        self.time_s = time_s
        self.source_size = _turned(source_size, self._turns)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of ``image``."""
        return _turned(self._coded, self._turns)

    @property
    def image(self) -> np.ndarray:
        if self._image is None:
            assert self._picture is not None
            w, h = self._coded
            rgb = self._picture.to_ndarray(format="rgb24", width=w, height=h,
                                           interpolation=self._interp)
            if self._turns:
                rgb = np.rot90(rgb, self._turns)
            self._image = np.ascontiguousarray(rgb)
            self._picture = None
        return self._image


def _turned(size: tuple[int, int], turns: int) -> tuple[int, int]:
    return (size[1], size[0]) if turns % 2 else size


def _quarter_turns(frame: av.VideoFrame) -> int:
    try:
        return int(round(float(frame.rotation) / 90.0)) % 4
    except (AttributeError, TypeError, ValueError):
        return 0


def _open(path: str | os.PathLike[str]) -> av.container.InputContainer:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        return av.open(str(p), mode="r", timeout=_OPEN_TIMEOUT_S)
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{p.name}: not a readable media file ({_short(e)})") from None


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:160] if text else type(e).__name__


def _video_stream(container: av.container.InputContainer, name: str) -> av.VideoStream:
    if not container.streams.video:
        raise InputError(f"{name}: no video stream")
    stream = container.streams.video[0]
    w, h = stream.codec_context.width, stream.codec_context.height
    if w > MAX_SOURCE_SIDE or h > MAX_SOURCE_SIDE:
        raise InputError(f"{name}: video is {w}x{h}, above the {MAX_SOURCE_SIDE} px limit")
    return stream


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read the container header; raises InputError when there is no usable video stream."""
    name = Path(path).name
    with _open(path) as container:
        stream = _video_stream(container, name)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        duration: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        return VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=fps,
            duration_s=duration,
            has_audio=bool(container.streams.audio),
            codec=stream.codec_context.name,
        )


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Size after shrinking so the longest side is at most ``max_side`` (even numbers)."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    s = max_side / max(width, height)
    return max(2, int(round(width * s / 2)) * 2), max(2, int(round(height * s / 2)) * 2)


def iter_video_frames(
    path: str | os.PathLike[str],
    *,
    max_side: int | None = None,
    start_s: float = 0.0,
    max_seconds: float | None = None,
    fast_scaling: bool = False,
) -> Iterator[VideoFrame]:
    """Yield frames in presentation order, times relative to the stream's first frame.

    ``max_side`` scales frames down inside the decoder (swscale, area averaging; or
    bilinear with ``fast_scaling``, three times cheaper, for analysis) before they become
    numpy arrays. A ``start_s`` of a second or more seeks to the keyframe before it; frames
    before ``start_s`` are skipped, decoding stops after ``max_seconds``.
    A decode error mid-stream ends the iteration with InputError unless at least one frame
    was produced, in which case the readable part is kept (a truncated download plays up to
    where it was cut, as players do).
    """
    name = Path(path).name
    container = _open(path)
    try:
        stream = _video_stream(container, name)
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        frame_dt = 1.0 / float(rate) if rate else 1.0 / 25.0
        t_first: float | None = None
        t_prev: float | None = None
        end_s = None if max_seconds is None else start_s + max_seconds
        interp = "FAST_BILINEAR" if fast_scaling else "AREA"
        n_out = 0
        try:
            frames = container.decode(stream)
            if start_s >= SEEK_AFTER_S:  # jump near start_s instead of decoding up to it
                first = next(frames, None)
                if first is not None:
                    t_first = t_prev = first.time if first.time is not None else 0.0
                    frames = _seek(container, stream, t_first + start_s - SEEK_MARGIN_S, frames)  # type: ignore[assignment]
            for frame in frames:
                t = frame.time
                if t is None:  # no pts: continue the previous frame's clock
                    t = (t_prev + frame_dt) if t_prev is not None else 0.0
                if t_first is None:
                    t_first = t
                rel = t - t_first
                if t_prev is not None and t <= t_prev - 1e-6:
                    continue  # out-of-order / duplicate pts: keep presentation order
                t_prev = t
                if rel < start_s - 1e-6:
                    continue
                if end_s is not None and rel >= end_s - 1e-9:
                    break
                if max(frame.width, frame.height) > MAX_SOURCE_SIDE:
                    raise InputError(f"{name}: a {frame.width}x{frame.height} frame at "
                                     f"{rel:.2f} s, above the {MAX_SOURCE_SIDE} px limit")
                size = scaled_size(frame.width, frame.height, max_side)
                yield VideoFrame(frame, rel, (frame.width, frame.height), size, interp,
                                 _quarter_turns(frame))
                n_out += 1
        except (av.FFmpegError, OSError, ValueError, EOFError) as e:
            if n_out == 0:
                raise InputError(f"{name}: video cannot be decoded ({_short(e)})") from None
        if n_out == 0:
            raise InputError(f"{name}: no decodable video frames after {start_s:.2f} s")
    finally:
        container.close()


def _seek(container: av.container.InputContainer, stream: av.stream.Stream, t: float,
          current: Iterator[av.frame.Frame]) -> Iterator[av.frame.Frame]:
    """Decode from the keyframe at or before time ``t`` (s); if the file cannot seek, go
    on with ``current`` (decoding straight through, as without seeking)."""
    if t <= 0 or stream.time_base is None:
        return current
    try:
        container.seek(int(t / stream.time_base), stream=stream, backward=True)
    except (av.FFmpegError, OSError, ValueError):
        return current
    return container.decode(stream)  # type: ignore[return-value]


def _drop_front(frame: av.AudioFrame, n: int) -> av.AudioFrame:
    """The audio frame without its first ``n`` samples."""
    arr = frame.to_ndarray()
    step = 1 if frame.format.is_planar else len(frame.layout.channels)
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr[:, n * step:]),  # type: ignore[arg-type]
                                     format=frame.format.name, layout=frame.layout.name)
    out.sample_rate = frame.sample_rate
    return out


def video_start_time(path: str | os.PathLike[str]) -> float:
    """Presentation time (s) of the first video frame on the container's clock."""
    name = Path(path).name
    with _open(path) as container:
        stream = _video_stream(container, name)
        try:
            for frame in container.decode(stream):
                if frame.time is not None:
                    return float(frame.time)
                break
        except av.FFmpegError as e:
            raise InputError(f"{name}: video cannot be decoded ({_short(e)})") from None
        return 0.0


def read_audio(
    path: str | os.PathLike[str],
    *,
    start_s: float = 0.0,
    max_seconds: float | None = None,
    align_to_video: bool = True,
) -> np.ndarray | None:
    """The first audio stream as 16 kHz mono float32 in [-1, 1], or None if there is none.

    Resampling and down-mixing use PyAV's resampler (libswresample). With
    ``align_to_video`` sample 0 is the presentation time of the first video frame plus
    ``start_s`` (the same clock as :func:`iter_video_frames`): audio that starts later is
    preceded by silence, audio that starts earlier is trimmed. A corrupt audio stream ends
    the audio where it breaks; it never raises for a readable video.
    """
    name = Path(path).name
    t0 = 0.0
    if align_to_video:
        with _open(path) as c:
            has_video = bool(c.streams.video)
        if has_video:
            t0 = video_start_time(path)
    container = _open(path)
    try:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        frames = container.decode(stream)
        if start_s >= SEEK_AFTER_S:
            frames = _seek(container, stream, t0 + start_s - SEEK_MARGIN_S, frames)  # type: ignore[assignment]
        limit = MAX_AUDIO_SECONDS if max_seconds is None else min(max_seconds, MAX_AUDIO_SECONDS)
        want0 = t0 + start_s  # container time of the first wanted sample
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        n = 0
        max_n = int(round((limit + 1.0) * AUDIO_RATE))
        try:
            for frame in frames:
                if first_time is None:  # start exactly at want0, to the source sample
                    ft = float(frame.time) if frame.time is not None else want0
                    skip = int(round((want0 - ft) * frame.sample_rate))
                    if skip >= frame.samples:
                        continue  # wholly before the wanted start
                    if skip > 0:
                        frame = _drop_front(frame, skip)
                        ft = want0
                    first_time = ft
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    n += chunks[-1].size
                if n > max_n:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except (av.FFmpegError, ValueError):
            pass  # keep what decoded before the damage
        if first_time is None:
            first_time = want0
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        # Place the decoded samples on the wanted clock.
        offset = int(round((first_time - want0) * AUDIO_RATE))
        if offset > 0:
            pcm = np.concatenate([np.zeros(offset, np.float32), pcm])
        elif offset < 0:
            pcm = pcm[-offset:]
        if max_seconds is not None:
            pcm = pcm[: int(round(max_seconds * AUDIO_RATE))]
        return np.ascontiguousarray(np.clip(pcm, -1.0, 1.0), dtype=np.float32)
    except av.FFmpegError as e:
        raise InputError(f"{name}: audio cannot be decoded ({_short(e)})") from None
    finally:
        container.close()
