"""Where the shipped model files live (one home for every layer that loads one).

``TALKCODEC_MODELS`` when set; else the files an installed wheel carries (``codec/_models/``,
see setup.py), else ``models/`` at the repository root (source tree, editable install).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGED_MODELS = Path(__file__).resolve().parent / "_models"
SOURCE_MODELS = Path(__file__).resolve().parents[1] / "models"


def models_dir() -> Path:
    env = os.environ.get("TALKCODEC_MODELS")
    if env:
        return Path(env)
    return PACKAGED_MODELS if PACKAGED_MODELS.is_dir() else SOURCE_MODELS
