"""Where the data set and the training cache live (relative to the repo root)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    return Path(os.environ.get("TALKCODEC_DATA", REPO.parent / "shared" / "data"))


def cache_dir() -> Path:
    return Path(os.environ.get("TALKCODEC_CACHE", REPO / "cache"))
