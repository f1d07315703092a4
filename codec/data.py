"""Where the talking-face clips live: ``../shared/data`` beside the repository, or
``$TALKCODEC_DATA``. Used by benchmarks, training scripts, tests and the demo's sample clip;
the codec itself never needs it."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    return Path(os.environ.get("TALKCODEC_DATA", REPO.parent / "shared" / "data"))
