"""The ``talkcodec`` command: encode, decode, info (+ the commands other packages register).

    talkcodec encode IN.mp4 -o OUT.tc [--lowres-size 8 --lowres-fps 5 --audio-bitrate 8000
                                       --max-seconds N]
    talkcodec decode IN.tc -o OUT.mp4 [--receiver NAME] [--voice AUDIO]
    talkcodec info IN.tc [--json]

Every command takes ``--log-level`` (default warning; info for the call's servers, which
also take ``--log-format json``); decode, demo and serve take ``--device`` (overrides
$TALKCODEC_DEVICE). Long encodes and decodes show a progress bar on a terminal.
Other packages add commands through the entry point group ``talkcodec.commands``
(``COMMANDS_GROUP``): each entry names a function ``add_subcommands(subparsers)``, so the
call's ``send | demo | serve`` (``server.cli``, registered in pyproject.toml) join the
command without codec importing server. A command's parser declares with ``set_defaults``
whether it is a long-running service (``SERVICE``: info logs, ``--log-format``) and whether
it runs a receiver (``RUNS_RECEIVER``: ``--device``).
Every failure the library names (bad input, no face, corrupt or truncated file) becomes a
one-line message on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from codec import CANVAS_FPS, __version__
from codec.errors import TalkcodecError
from codec.log import progress_bar
from codec.models import DEVICES

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
COMMANDS_GROUP = "talkcodec.commands"
# Parser defaults a command sets (``set_defaults(**{SERVICE: True})``) to get the options.
SERVICE = "talkcodec_service"
RUNS_RECEIVER = "talkcodec_runs_receiver"


def _check_output(path: Path) -> None:
    """Refuse an output path that cannot be written, before any of the work is done."""
    if path.is_dir():
        raise TalkcodecError(f"{path}: is a directory (-o takes a file name)")
    parent = path.parent
    if not parent.exists():
        raise TalkcodecError(f"{path}: no such directory: {parent}")
    if not parent.is_dir():
        raise TalkcodecError(f"{path}: not a directory: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TalkcodecError(f"{path}: permission denied: cannot write in {parent}")


@contextlib.contextmanager
def _output_job(path: Path) -> Iterator[None]:
    """On any failure of the job remove the ``.part`` file it left (the library writes
    ``OUT.part`` and renames it to ``OUT`` at the end)."""
    part = Path(f"{path}.part")
    before = part.stat().st_mtime_ns if part.is_file() else None
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            if part.is_file() and part.stat().st_mtime_ns != before:
                part.unlink()
        raise


def _cmd_encode(args: argparse.Namespace) -> int:
    from codec.file_codec import encode_file
    from codec.sender.sender import SenderConfig

    _check_output(args.output)
    config = SenderConfig(
        lowres_size=args.lowres_size, lowres_fps=args.lowres_fps, quant=args.quant,
        intra_period_s=args.intra_period, identity_format=args.identity_format,
        audio_bitrate=args.audio_bitrate,
    )
    try:
        config.stream_config()
    except ValueError as exc:
        raise TalkcodecError(f"bad encoder setting: {exc}") from None
    from codec.audio.opus import MAX_BITRATE, MIN_BITRATE

    if not MIN_BITRATE <= args.audio_bitrate <= MAX_BITRATE:
        raise TalkcodecError(f"--audio-bitrate must be {MIN_BITRATE}..{MAX_BITRATE} bit/s")
    with _output_job(args.output):
        with progress_bar("encode", _expected_frames(args.input, args.max_seconds)) as step:
            summary = encode_file(args.input, args.output, config,
                                  max_seconds=args.max_seconds, progress=step)
    seconds = summary["frames"] / CANVAS_FPS
    print(f"{args.output}: {summary['frames']} frames ({seconds:.2f} s), "
          f"{summary['packets']} packets, {summary['bytes']} bytes"
          + ("" if summary["audio"] else " (no audio track)"))
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    from codec.file_codec import decode_file
    from codec.receiver.registry import default_receiver_name, get_receiver

    _check_output(args.output)
    voice = getattr(args, "voice", None)
    name = args.receiver or ("voice" if voice is not None else default_receiver_name())
    if voice is not None and name != "voice":
        raise TalkcodecError(f"--voice is for --receiver voice, not {name!r}")
    try:
        if voice is not None:
            from codec.receiver.voice import read_voice_file

            receiver = get_receiver(name, voice=read_voice_file(voice))
        else:
            receiver = get_receiver(name)
    except ValueError as exc:
        raise TalkcodecError(str(exc)) from None
    with _output_job(args.output):
        with progress_bar("decode") as step:
            summary = decode_file(args.input, args.output, receiver, progress=step)
    note = ""
    if summary["lowres_skipped"] or summary["corrupt_packets"]:
        note = (f" ({summary['lowres_skipped']} low-res frames skipped, "
                f"{summary['corrupt_packets']} corrupt packets)")
    print(f"{args.output}: {summary['frames']} frames at 25 fps, receiver {name}{note}")
    return 0


def _expected_frames(path: Path, max_seconds: float | None) -> int | None:
    """Canvas frames an encode will make, from the container's duration (None if unknown)."""
    import av

    try:
        with av.open(str(path)) as container:
            seconds = container.duration / 1e6 if container.duration else None
    except Exception:  # noqa: BLE001 - only the progress bar's total; encode reports errors
        return None
    if seconds is None:
        return None
    return int(min(seconds, max_seconds or seconds) * 25)


def _cmd_info(args: argparse.Namespace) -> int:
    from codec.bitstream.container import ContainerReader
    from codec.bitstream.stats import format_stats, stream_stats

    with open(args.input, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        reader = ContainerReader(fh)
        stats = stream_stats(reader, file_bytes=size)  # streaming; the reader checks the end
    if args.json:
        print(json.dumps({"file": str(args.input), "bytes": reader.bytes_read,
                          "metadata": reader.metadata, **stats}, indent=2))
    else:
        print(f"{args.input}: {reader.bytes_read} bytes, {reader.metadata.get('encoder', '?')}"
              f", source {reader.metadata.get('source', '?')}")
        print(format_stats(stats))
    return 0


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="talkcodec",
        description="Low-bandwidth talking-face video codec: 8x8 @ 5 fps + speech + one "
        "identity frame -> 256x256 @ 25 fps.",
    )
    parser.add_argument("--version", action="version", version=f"talkcodec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    enc = sub.add_parser("encode", help="video file -> talkcodec file")
    enc.add_argument("input", type=Path, help="any video file with a face (and speech)")
    enc.add_argument("-o", "--output", type=Path, required=True,
                     help="the talkcodec file to write")
    enc.add_argument("--lowres-size", type=int, choices=(8, 16, 32), default=8,
                     help="side of the low-res frames sent, in pixels (default 8)")
    enc.add_argument("--lowres-fps", type=int, choices=(5, 10, 25), default=5,
                     help="low-res frames per second (default 5)")
    enc.add_argument("--audio-bitrate", type=_positive(int), default=8000,
                     help="Opus speech bit rate in bit/s (default 8000)")
    enc.add_argument("--max-seconds", type=_positive(float), default=None,
                     help="encode only the first N seconds (default: all)")
    enc.add_argument("--quant", type=_positive(float), default=6.0,
                     help="low-res quantiser step in grey levels (default 6)")
    enc.add_argument("--intra-period", type=_positive(float), default=2.0,
                     help="seconds between low-res intra frames (default 2)")
    enc.add_argument("--identity-format", choices=("avif", "webp", "jpeg"), default="avif",
                     help="image codec of the one high-resolution identity frame "
                          "(default avif)")
    enc.set_defaults(func=_cmd_encode)

    dec = sub.add_parser("decode", help="talkcodec file -> 256x256 25 fps H.264 mp4")
    dec.add_argument("input", type=Path, help="the talkcodec file to decode")
    dec.add_argument("-o", "--output", type=Path, required=True,
                     help="the mp4 to write (H.264 + AAC)")
    dec.add_argument("--receiver", default=None,
                     help="receiver name (default: neural if available, else align)")
    dec.add_argument("--voice", type=Path, default=None,
                     help="with --receiver voice: take the voice from this audio or video file "
                          "(wav, mp3, m4a, mp4, ...) instead of the stream's speech")
    dec.set_defaults(func=_cmd_decode, **{RUNS_RECEIVER: True})

    info = sub.add_parser("info", help="where the bits of a talkcodec file go")
    info.add_argument("input", type=Path, help="the talkcodec file to describe")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=_cmd_info)

    _add_registered_commands(sub)
    for command in sub.choices.values():
        _add_runtime_options(command, server=bool(command.get_default(SERVICE)),
                             device=bool(command.get_default(RUNS_RECEIVER)))
    return parser


def _add_runtime_options(command: argparse.ArgumentParser, *, server: bool,
                         device: bool) -> None:
    """``--log-level`` on every command, ``--log-format`` on the call's, ``--device`` where
    a receiver runs."""
    from codec.log import FORMATS, LEVELS

    group = command.add_argument_group("logging and device")
    group.add_argument("--log-level", choices=LEVELS, default=None,
                       help="least severe log records shown on stderr (default: "
                            f"$TALKCODEC_LOG_LEVEL, else {'info' if server else 'warning'})")
    if server:
        group.add_argument("--log-format", choices=FORMATS, default=None,
                           help="text lines, or one JSON object per line for a log "
                                "collector (default: $TALKCODEC_LOG_FORMAT, else text)")
    if device:
        group.add_argument("--device", choices=DEVICES, default=None,
                           help="where the neural receiver's networks run: auto (CUDA when "
                                "onnxruntime-gpu provides it, else the CPU), cpu, or cuda "
                                "(refuses to fall back); overrides $TALKCODEC_DEVICE")


def _apply_runtime_options(args: argparse.Namespace) -> None:
    """Set up logging (once, for the whole process) and the receiver's device."""
    from codec.log import FORMATS, LEVELS, configure_logging

    server = bool(getattr(args, SERVICE, False))
    level = (args.log_level or os.environ.get("TALKCODEC_LOG_LEVEL")
             or ("info" if server else "warning")).lower()
    fmt = (getattr(args, "log_format", None) or os.environ.get("TALKCODEC_LOG_FORMAT")
           or "text").lower()
    if level not in LEVELS:
        raise TalkcodecError(f"TALKCODEC_LOG_LEVEL must be one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise TalkcodecError(f"TALKCODEC_LOG_FORMAT must be one of {', '.join(FORMATS)}")
    configure_logging(level, fmt)
    if getattr(args, "device", None):
        os.environ["TALKCODEC_DEVICE"] = args.device  # read wherever a receiver is built


def _add_registered_commands(sub: Any) -> None:
    """The commands of every ``COMMANDS_GROUP`` entry point (the call's, from server.cli);
    one that cannot be imported leaves a command of the entry's name that says why."""
    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            add_subcommands = entry.load()
        except ImportError as exc:
            reason = f"{exc.name or entry.value} is not available"
            p = sub.add_parser(entry.name, help=f"(unavailable: {reason})")
            p.set_defaults(func=_unavailable(entry.name, reason))
            continue
        add_subcommands(sub)


def _unavailable(name: str, reason: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        raise TalkcodecError(f"'{name}' cannot run ({reason}); "
                             f"install with: pip install 'talkcodec[{name}]'")

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        _apply_runtime_options(args)
        return int(args.func(args) or 0)
    except TalkcodecError as exc:
        _fail(str(exc))
    except FileNotFoundError as exc:
        _fail(f"no such file: {_filename(exc)}")
    except IsADirectoryError as exc:
        _fail(f"is a directory: {exc.filename}")
    except PermissionError as exc:
        _fail(f"permission denied: {exc.filename}")
    except OSError as exc:
        _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug still gets one line, not a traceback
        _fail(f"internal error: {type(exc).__name__}: {exc} "
              "(set TALKCODEC_TRACEBACK=1 for details)")
        return EXIT_INTERNAL
    return EXIT_ERROR


def _filename(exc: OSError) -> str:
    """The path an OSError is about (some libraries raise it without ``filename``)."""
    name = exc.filename if exc.filename is not None else exc.filename2
    return str(name) if name is not None else (exc.strerror or str(exc))


def _fail(message: str) -> None:
    line = " ".join(message.split())
    sys.stderr.write(f"talkcodec: error: {line}\n")
    sys.stderr.flush()
    if os.environ.get("TALKCODEC_TRACEBACK"):
        raise


if __name__ == "__main__":
    sys.exit(main())
