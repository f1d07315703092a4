"""A built wheel (``pip install .``, not ``-e``) carries the shipped weights and the call page,
and an install of it finds them: the neural receiver is the default and the app serves
the page. Built offline from a copy of the tree (``pip wheel --no-build-isolation``, with
the setuptools already in the venv), so the working tree gets no ``build/``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HASHED = re.compile(r"^[a-z0-9_]+-[0-9a-f]{12}\.[a-z0-9.]+$")
SOURCES = ("codec", "server", "client", "models", "pyproject.toml", "setup.py", "MANIFEST.in")


def _pip(*args: str, cwd: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "pip", *args, "-q",
                          "--disable-pip-version-check", "--no-input"],
                         cwd=cwd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("setuptools")
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    # A model file of another kind (the motion basis will be an .npz) ships too; a file
    # without a hash in its name does not.
    (src / "models" / "example-0123456789ab.npz").write_bytes(b"npz")
    (src / "models" / "notes.txt").write_text("not shipped")
    out = tmp_path_factory.mktemp("wheel")
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), ".", cwd=src)
    (found,) = out.glob("talkcodec-*.whl")
    return found


def test_wheel_carries_weights_and_client(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    models = {p.name for p in (ROOT / "models").iterdir() if HASHED.match(p.name)}
    assert any(m.endswith(".onnx") for m in models)
    for name in models | {"example-0123456789ab.npz"}:
        assert f"codec/_models/{name}" in names, name
    assert "codec/_models/notes.txt" not in names
    for path in (ROOT / "client").iterdir():
        if path.is_file():
            assert f"server/_client/{path.name}" in names, path.name
    assert not any(n.startswith(("models/", "client/", "training/", "tests/")) for n in names)


def test_installed_wheel_finds_weights_and_page(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    _pip("install", "--no-deps", "--target", str(target), str(wheel), cwd=tmp_path)
    probe = (
        "import codec, server.app as app\n"
        "from codec.receiver.neural import weights\n"
        "from codec.receiver.registry import default_receiver_name\n"
        "print(codec.__file__)\n"
        "print(weights.models_dir())\n"
        "print(weights.weights_problem())\n"
        "print(default_receiver_name())\n"
        "print(app.CLIENT_DIR)\n"
        "from codec.bitstream import motion_basis\n"
        "print(motion_basis.load_basis() is not None)\n"
        "from codec.cli import build_parser\n"  # the call's commands, by entry point
        "print(sorted(build_parser()._subparsers._group_actions[0].choices))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TALKCODEC_MODELS", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)
    res = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    module, models, problem, default, client, basis, commands = res.stdout.splitlines()
    assert module.startswith(str(target)), "imported the source tree, not the install"
    assert Path(models) == target / "codec" / "_models"
    assert problem == "None" and default == "neural"
    assert Path(client) == target / "server" / "_client"
    assert (Path(client) / "index.html").is_file()
    assert basis == str(any((ROOT / "models").glob("motion_basis-*.npz")))
    assert commands == str(sorted(["encode", "decode", "info", "demo", "serve", "send"]))


def test_call_and_receiver_run_without_torch() -> None:
    """The images carry no torch: the CLI, the call's servers and the neural receiver import
    and build with ``import torch`` made to fail."""
    probe = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch now raises ImportError\n"
        "import codec.cli, codec.file_codec, server.cli, server.app, server.receiver_worker\n"
        "from codec.receiver.registry import default_receiver_name, get_receiver\n"
        "from codec.receiver.neural.weights import weights_available\n"
        "name = default_receiver_name()\n"
        "assert name == ('neural' if weights_available() else 'align'), name\n"
        "get_receiver(name)\n"
        "codec.cli.build_parser()\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
