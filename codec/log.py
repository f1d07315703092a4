"""Logging and progress for the ``talkcodec`` command: one log handler on stderr, text
lines or JSON lines, and tqdm bars for long encodes and decodes.

The library only logs (``logging.getLogger(__name__)``); this module is the one place that
sets up where records go, called once by ``codec.cli.main``. JSON lines (one object per
record: time, level, logger, message, and ``exc`` with the traceback) are for servers whose
output a log collector reads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TextIO

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Third-party loggers that are chatty at INFO (aioice logs every ICE check): they show
# from WARNING up unless the level asked for is debug.
NOISY = ("aioice", "aiortc", "asyncio", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _Handler(logging.StreamHandler):
    """Marks the handler as ours, so a second call replaces it instead of adding one."""


def configure_logging(level: str = "warning", fmt: str = "text",
                      stream: TextIO | None = None) -> None:
    """Send log records at ``level`` and above to ``stream`` (stderr) as ``fmt``."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {LEVELS}, got {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, got {fmt!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    numeric = logging.getLevelName(level.upper())
    for name in NOISY:
        logging.getLogger(name).setLevel(numeric if level == "debug"
                                         else max(numeric, logging.WARNING))


@contextlib.contextmanager
def progress_bar(desc: str, total: int | None = None) -> Iterator[Callable[[], object]]:
    """A tqdm bar on stderr for long CLI work; yields the per-item callback. It shows only
    on a terminal, and only once the work has run for a second (short jobs stay quiet)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, disable=None,
               delay=1.0, leave=False, dynamic_ncols=True)
    try:
        yield lambda: bar.update(1)
    finally:
        bar.close()
