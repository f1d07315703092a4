"""The ``talkcodec`` command: encode, decode, info (+ the call's send / demo / serve).

    talkcodec encode IN.mp4 -o OUT.tc [--lowres-size 8 --lowres-fps 5 --audio-bitrate 8000
                                       --max-seconds N]
    talkcodec decode IN.tc -o OUT.mp4 [--receiver NAME]
    talkcodec info IN.tc [--json]

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
from pathlib import Path
from typing import Any

from codec import __version__
from codec.errors import TalkcodecError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
_CALL_COMMANDS = ("send", "demo", "serve")


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
        summary = encode_file(args.input, args.output, config, max_seconds=args.max_seconds)
    seconds = summary["frames"] / 25.0
    print(f"{args.output}: {summary['frames']} frames ({seconds:.2f} s), "
          f"{summary['packets']} packets, {summary['bytes']} bytes"
          + ("" if summary["audio"] else " (no audio track)"))
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    from codec.file_codec import decode_file
    from codec.receiver.registry import default_receiver_name, get_receiver

    _check_output(args.output)
    name = args.receiver or default_receiver_name()
    try:
        receiver = get_receiver(name)
    except ValueError as exc:
        raise TalkcodecError(str(exc)) from None
    with _output_job(args.output):
        summary = decode_file(args.input, args.output, receiver)
    note = ""
    if summary["lowres_skipped"] or summary["corrupt_packets"]:
        note = (f" ({summary['lowres_skipped']} low-res frames skipped, "
                f"{summary['corrupt_packets']} corrupt packets)")
    print(f"{args.output}: {summary['frames']} frames at 25 fps, receiver {name}{note}")
    return 0


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
    enc.add_argument("input", type=Path)
    enc.add_argument("-o", "--output", type=Path, required=True)
    enc.add_argument("--lowres-size", type=int, choices=(8, 16, 32), default=8)
    enc.add_argument("--lowres-fps", type=int, choices=(5, 10, 25), default=5)
    enc.add_argument("--audio-bitrate", type=_positive(int), default=8000)
    enc.add_argument("--max-seconds", type=_positive(float), default=None)
    enc.add_argument("--quant", type=_positive(float), default=6.0,
                     help="low-res quantiser step in grey levels (default 6)")
    enc.add_argument("--intra-period", type=_positive(float), default=2.0,
                     help="seconds between low-res intra frames (default 2)")
    enc.add_argument("--identity-format", choices=("avif", "webp", "jpeg"), default="avif")
    enc.set_defaults(func=_cmd_encode)

    dec = sub.add_parser("decode", help="talkcodec file -> 256x256 25 fps H.264 mp4")
    dec.add_argument("input", type=Path)
    dec.add_argument("-o", "--output", type=Path, required=True)
    dec.add_argument("--receiver", default=None,
                     help="receiver name (default: neural if available, else align)")
    dec.set_defaults(func=_cmd_decode)

    info = sub.add_parser("info", help="where the bits of a talkcodec file go")
    info.add_argument("input", type=Path)
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=_cmd_info)

    _add_call_commands(sub)
    return parser


def _add_call_commands(sub: Any) -> None:
    try:
        from server.cli import add_subcommands
    except ImportError as exc:
        reason = f"{exc.name or 'server.cli'} is not available"
        for name in _CALL_COMMANDS:
            p = sub.add_parser(name, help=f"(unavailable: {reason})")
            p.set_defaults(func=_call_unavailable(name, reason))
        return
    add_subcommands(sub)


def _call_unavailable(name: str, reason: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        raise TalkcodecError(f"'{name}' needs the call package ({reason}); "
                             "install with: pip install 'talkcodec[call]'")

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
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
