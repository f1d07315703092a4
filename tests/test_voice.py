"""The ``voice`` receiver (issue 14): gender annotation, model, receiver, mixing."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from codec.data import data_dir

ROOT = Path(__file__).resolve().parents[1]


def _annotations() -> list[dict[str, str]]:
    lines = (ln for ln in open(ROOT / "training" / "perceived_gender.csv") if not ln.startswith("#"))
    return list(csv.DictReader(lines))


def test_perceived_gender_covers_every_identity() -> None:
    rows = _annotations()
    ids = [r["identity"] for r in rows]
    assert len(ids) == len(set(ids))
    assert {r["perceived_gender"] for r in rows} <= {"male", "female"}
    assert {r["unsure"] for r in rows} <= {"yes", "no"}
    manifest = data_dir() / "manifest.csv"
    if not manifest.exists():
        pytest.skip("the data set is not here")
    want = {(r["identity"], r["split"]) for r in csv.DictReader(open(manifest))}
    assert {(r["identity"], r["split"]) for r in rows} == want
