"""Live camera frames -> talkcodec packets: face tracking, the 256x256 canvas on the 25 fps
grid, and the one ``codec.sender.Sender`` (the same encoder as ``talkcodec encode``)."""

from __future__ import annotations

import numpy as np

from codec import FRAME_MS
from codec._dlib import DLIB_LOCK
from codec.bitstream.packet import Packet
from codec.sender.face_tracker import FaceTracker, crop_to_canvas
from codec.sender.sender import Sender, SenderConfig

MAX_SIDE = 4096  # larger frames are refused (a 4K frame is fine, a 16K one is not)


class LiveEncoder:
    """``push(rgb, t_ms)`` with camera frames at any rate (t on the sender's wall clock, ms);
    returns the packets to send. The stream starts (identity frame) at the first frame
    that shows a face; ``epoch_ms`` is the wall-clock time of stream timestamp 0."""

    def __init__(self, config: SenderConfig | None = None, tracker: FaceTracker | None = None) -> None:
        self.sender = Sender(config or SenderConfig.live())
        self.tracker = tracker or FaceTracker()
        self.epoch_ms: float | None = None
        self.next_k = 0
        self.frames_in = 0
        self.frames_refused = 0

    @property
    def started(self) -> bool:
        return self.epoch_ms is not None

    def push(self, rgb: np.ndarray, t_ms: float) -> list[Packet]:
        frame = np.asarray(rgb)
        if (frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8
                or max(frame.shape[:2]) > MAX_SIDE or min(frame.shape[:2]) < 16):
            self.frames_refused += 1
            return []
        frame = np.ascontiguousarray(frame)
        self.frames_in += 1
        with DLIB_LOCK:  # one tracker at a time, and no other dlib call meanwhile
            box = self.tracker.update(frame)
        if self.epoch_ms is None and not self.tracker.has_face:
            return []  # no face yet: nothing to send
        canvas = crop_to_canvas(frame, box)
        out: list[Packet] = []
        if self.epoch_ms is None:
            self.epoch_ms = float(t_ms)
            out += self.sender.start(canvas, 0)
        # Fill the 25 fps grid up to now with the newest canvas (camera rates vary); after a
        # stall, jump ahead instead of sending a burst of stale frames.
        behind_ms = t_ms - (self.epoch_ms + self.next_k * FRAME_MS)
        if behind_ms > 1000:
            self.next_k += int(behind_ms // FRAME_MS)
        while self.epoch_ms + self.next_k * FRAME_MS <= t_ms:
            out += self.sender.push_canvas_frame(canvas, int(round(self.next_k * FRAME_MS)))
            self.next_k += 1
        return out

    def request_intra(self) -> None:
        force_intra(self.sender)


def force_intra(sender: Sender) -> None:
    """Make the sender's next 8x8 frame an intra frame and its next motion group a refresh
    (the receiver lost its reference)."""
    sender.request_intra()
