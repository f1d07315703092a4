"""Named exceptions raised by the library. The CLI turns them into one-line messages."""


class TalkcodecError(Exception):
    """Base class of every error talkcodec raises on purpose."""


class ConfigError(TalkcodecError):
    """A setting (option or environment variable) is invalid or cannot be honoured here."""


class InputError(TalkcodecError):
    """An input file or stream cannot be used (unreadable, no video stream, too large...)."""


class NoFaceError(InputError):
    """No face was found in the input video."""


class BitstreamError(TalkcodecError):
    """Base class of errors found while parsing talkcodec bytes."""


class TruncatedError(BitstreamError):
    """The bytes end before the structure they describe."""


class CorruptError(BitstreamError):
    """The bytes are not a valid talkcodec structure (bad magic, checksum, field)."""


class UnsupportedVersionError(BitstreamError):
    """The bytes come from a format version this decoder does not know."""


class LimitExceededError(BitstreamError):
    """A declared size or count is beyond the decoder's bounds."""
