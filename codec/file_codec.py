"""Whole files: a video -> a talkcodec file, and a talkcodec file -> an H.264 mp4.

``encode_file`` streams canvas frames from the sender's face tracker through ``Sender``
into a ``ContainerWriter`` (bounded memory: the video is never held whole).
``decode_file`` streams packets from the container through the receiver pipeline
(``StreamDecoder`` -> ``Receiver``) and writes its 25 fps frames as H.264 with the decoded
speech as AAC, placed by packet timestamps (gaps from lost audio are filled with silence),
so both stay in sync.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from codec import AUDIO_RATE, CANVAS_FPS, CANVAS_SIZE, __version__
from codec.bitstream.container import ContainerReader, ContainerWriter
from codec.bitstream.stream import StreamDecoder
from codec.errors import CorruptError, InputError
from codec.receiver.base import Receiver
from codec.sender.sender import Sender, SenderConfig
from codec.types import AudioChunk, OutputFrame

_SAMPLES_PER_FRAME = AUDIO_RATE // CANVAS_FPS
MAX_AUDIO_GAP_S = 60


def encode_file(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                config: SenderConfig | None = None, *,
                max_seconds: float | None = None,
                progress: Callable[[], object] | None = None) -> dict[str, Any]:
    """Encode a video file; returns a small summary (frames, packets, bytes).
    ``progress`` is called once per canvas frame encoded."""
    from codec.sender.canvas import iter_face_canvas
    from codec.sender.video_io import read_audio

    frames = iter_face_canvas(src, max_seconds=max_seconds)
    first = next(frames, None)
    if first is None:
        raise InputError(f"{Path(src).name}: no video frames")
    audio = read_audio(src, max_seconds=max_seconds)
    sender = Sender(config, with_audio=audio is not None)
    meta = {"encoder": f"talkcodec {__version__}", "source": Path(src).name}
    n = 0
    tmp = Path(f"{dst}.part")
    try:
        with open(tmp, "wb") as fh:
            writer = ContainerWriter(fh, meta)
            for p in sender.start(first.image):
                writer.write(p)
            for k, cf in enumerate(_chain(first, frames)):
                if audio is not None and k * _SAMPLES_PER_FRAME < len(audio):
                    chunk = audio[k * _SAMPLES_PER_FRAME : (k + 1) * _SAMPLES_PER_FRAME]
                    for p in sender.push_audio(chunk, cf.timestamp_ms):
                        writer.write(p)
                for p in sender.push_canvas_frame(cf.image, cf.timestamp_ms):
                    writer.write(p)
                n = k + 1
                if progress is not None:
                    progress()
            for p in sender.finish(end_ms=int(round(n * 1000 / CANVAS_FPS))):
                writer.write(p)
            writer.close()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dst)
    return {"frames": n, "packets": writer.count, "bytes": writer.bytes_written,
            "audio": audio is not None}


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


class Mp4Writer:
    """H.264 (yuv420p, 25 fps, 256x256) + AAC mono 16 kHz, written as frames arrive."""

    def __init__(self, path: str | os.PathLike[str], *, crf: int = 18) -> None:
        self._out = av.open(str(path), "w", format="mp4")
        self._video = self._out.add_stream("libx264", rate=CANVAS_FPS)
        self._video.width = self._video.height = CANVAS_SIZE
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(crf), "preset": "veryfast"}
        self._audio: Any = None
        self._audio_cursor = 0  # next audio sample index on the output timeline
        self.frames = 0

    def write_frame(self, frame: OutputFrame) -> None:
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.image), format="rgb24")
        vf.pts = int(round(frame.timestamp_ms * CANVAS_FPS / 1000))
        vf.time_base = Fraction(1, CANVAS_FPS)
        for packet in self._video.encode(vf):
            self._out.mux(packet)
        self.frames += 1

    def write_audio(self, chunk: AudioChunk) -> None:
        if self._audio is None:
            self._audio = self._out.add_stream("aac", rate=AUDIO_RATE)
            self._audio.layout = "mono"
        start = int(round(chunk.timestamp_ms * AUDIO_RATE / 1000))
        samples = np.asarray(chunk.samples, dtype=np.float32)
        if start < self._audio_cursor:  # overlap with what is written: keep the new tail
            samples = samples[self._audio_cursor - start :]
            start = self._audio_cursor
        if start - self._audio_cursor > MAX_AUDIO_GAP_S * AUDIO_RATE:
            return  # a bogus timestamp far ahead: dropped rather than stretch the track
        if start > self._audio_cursor:  # a gap (lost packets): silence
            self._encode_samples(np.zeros(start - self._audio_cursor, np.float32))
        if samples.size:
            self._encode_samples(samples)

    def _encode_samples(self, samples: np.ndarray) -> None:
        af = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
        af.sample_rate = AUDIO_RATE
        af.pts = self._audio_cursor
        af.time_base = Fraction(1, AUDIO_RATE)
        for packet in self._audio.encode(af):
            self._out.mux(packet)
        self._audio_cursor += samples.size

    def abort(self) -> None:
        try:
            self._out.close()
        except Exception:  # noqa: BLE001 - the partial file is deleted anyway
            pass

    def close(self) -> None:
        for packet in self._video.encode():
            self._out.mux(packet)
        if self._audio is not None:
            for packet in self._audio.encode():
                self._out.mux(packet)
        self._out.close()


def decode_file(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                receiver: Receiver, *,
                progress: Callable[[], object] | None = None) -> dict[str, Any]:
    """Decode a talkcodec file to an mp4 through ``receiver`` (streaming, via
    ``codec.receiver.pipeline.iter_decoded``); returns a summary. ``progress`` is called
    once per output frame written."""
    from codec.receiver.pipeline import iter_decoded

    decoder = StreamDecoder()
    tmp = Path(f"{dst}.part")
    with open(src, "rb") as fh:
        reader = ContainerReader(fh)
        writer = Mp4Writer(tmp)
        try:
            for item in iter_decoded(reader, receiver, decoder):
                if isinstance(item, OutputFrame):
                    writer.write_frame(item)
                    if progress is not None:
                        progress()
                else:
                    writer.write_audio(item)
            writer.close()
        except BaseException:
            writer.abort()
            tmp.unlink(missing_ok=True)
            raise
    if writer.frames == 0:
        tmp.unlink(missing_ok=True)
        if receiver.identity is None:
            raise CorruptError(f"{Path(src).name}: no decodable identity frame")
        raise CorruptError(f"{Path(src).name}: no decodable low-res frame")
    os.replace(tmp, dst)
    lr = decoder.lowres.stats if decoder.lowres is not None else None
    return {"frames": writer.frames, "lowres_decoded": lr.decoded if lr else 0,
            "lowres_skipped": lr.skipped if lr else 0, "corrupt_packets": decoder.corrupt}
