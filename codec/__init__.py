"""talkcodec: a real-time, low-bandwidth video-call codec for talking faces.

Data flow, one folder per stage::

    sender/     video file or camera -> 256x256 25 fps face canvas -> 8x8 frames,
                identity frame, speech audio
    bitstream/  packets (versioned header), 8x8 stream codec, identity-frame codec,
                file container
    audio/      speech through Opus at a low bitrate
    receiver/   identity frame + 8x8 frames + audio -> 256x256 25 fps video
    metrics/    quality measures shared by tests and benchmarks
"""

__version__ = "0.1.0"

CANVAS_SIZE = 256
CANVAS_FPS = 25
FRAME_MS = 1000.0 / CANVAS_FPS  # the canvas's frame period (40 ms)
AUDIO_RATE = 16000
