#!/usr/bin/env bash
# Rebuild the shipped neural-receiver weights from ../shared/data (CPU; see README.md).
# Training phases are bounded by wall-clock minutes, so the step counts depend on the load.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="nice -n 5 .venv/bin/python"
$PY -m training.build_cache --max-seconds 8 --val-max-seconds 12 --budget-s 2400
$PY -m training.train_interpolator --steps 400 --batch 32
$PY -m training.train_receiver --minutes 25 --size 64 --batch 12 --lr 2e-3
$PY -m training.train_receiver --minutes 16 --size 128 --batch 12 --lr 7e-4 --resume
$PY -m training.export_onnx
