"""Where the data set and the training cache live (relative to the repo root)."""

from __future__ import annotations

import os
from pathlib import Path

from codec.data import data_dir  # noqa: F401  (re-exported for the training scripts)

REPO = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    return Path(os.environ.get("TALKCODEC_CACHE", REPO / "cache"))


def manifest_rows() -> list[dict[str, str]]:
    """The data set's manifest, one dict per clip."""
    import csv

    with open(data_dir() / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))
