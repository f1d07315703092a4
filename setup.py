"""Packaging hook (everything else is in pyproject.toml): a built wheel carries the shipped
weights and the call page inside the packages, so an installed talkcodec (``pip install .``,
not ``-e``) runs as the source tree does.

- ``models/<name>-<sha256[:12]>.<ext>`` (every hash-named file: the ONNX networks, and
  ``.npz`` or other data as it is added) -> ``codec/_models/``
- ``client/*`` (the call page) -> ``server/_client/``

``codec/receiver/neural/weights.py`` and ``server/app.py`` look there first and fall back to
the repository's ``models/`` and ``client/``. An editable install copies nothing: it uses
the source tree's folders. ``MANIFEST.in`` puts the same files into an sdist.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
HASHED = re.compile(r"^[a-z0-9_]+-[0-9a-f]{12}\.[a-z0-9.]+$")
SHIPPED = (  # (source folder, folder inside the build, which files)
    ("models", "codec/_models", HASHED.match),
    ("client", "server/_client", lambda name: not name.startswith(".")),
)


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for src, dst, wanted in SHIPPED:
            target = Path(self.build_lib) / dst
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for path in sorted((ROOT / src).iterdir()):
                if path.is_file() and wanted(path.name):
                    shutil.copy2(path, target / path.name)


setup(cmdclass={"build_py": BuildPyWithData})
