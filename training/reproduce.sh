#!/usr/bin/env bash
# Rebuild the neural-receiver weights from ../shared/data on the CPU (see README.md).
# Every step is deterministic (fixed seeds, one torch thread, step counts rather than time
# budgets, closed-form ridge for the mouth), so on the same data and package versions this
# reproduces the files in models/ (their names carry their content hash).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="nice -n 5 .venv/bin/python"
$PY -m training.build_cache --max-seconds 8 --val-max-seconds 12 --budget-s 1000000
$PY -m training.train_interpolator
$PY -m training.train_mouth
$PY -m training.train_receiver --steps 2400 --size 64 --batch 12 --lr 2e-3
$PY -m training.train_receiver --steps 6000 --size 128 --batch 12 --lr 7e-4 --resume
$PY -m training.train_receiver --steps 3000 --size 128 --batch 12 --lr 2e-4 --resume
$PY -m training.export_onnx
# The motion code's basis (models/motion_basis-*.npz): the sender's landmarks on every clip,
# then PCA + the code's starting probabilities on train.
$PY -m training.measure_landmarks --max-seconds 12
$PY -m training.fit_motion_basis
