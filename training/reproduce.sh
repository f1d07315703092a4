#!/usr/bin/env bash
# Rebuild the neural-receiver weights from ../shared/data (CPU; see README.md), with the
# phases of the shipped run. Phases are bounded by wall-clock minutes, so step counts (and
# the exact weights) depend on the machine's load; the first phase of the shipped run also
# used a bilinear back-projection that the code no longer has.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="nice -n 5 .venv/bin/python"
$PY -m training.build_cache --max-seconds 8 --val-max-seconds 12 --budget-s 2400
$PY -m training.train_interpolator
$PY -m training.train_receiver --minutes 23 --size 64 --batch 12 --lr 2e-3
$PY -m training.train_receiver --minutes 3 --size 64 --batch 12 --lr 1e-3 --resume
$PY -m training.train_receiver --minutes 16 --size 128 --batch 12 --lr 7e-4 --resume
$PY -m training.train_mouth
$PY -m training.export_onnx
