"""bench_gpu_streams end to end on the CPU: the saved stream, K stream processes, the table."""

import subprocess
import sys
from pathlib import Path

import pytest

from codec.receiver.neural.weights import weights_available

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ["-m", "benchmarks.bench_gpu_streams"]  # run from the repository root


@pytest.mark.skipif(not weights_available(), reason="no trained weights in models/")
def test_saved_stream_runs_as_concurrent_processes(tmp_path: Path) -> None:
    stream = tmp_path / "stream.npz"
    subprocess.run([sys.executable, *SCRIPT, "save", "--out", str(stream), "--seconds", "2"],
                   cwd=ROOT, check=True, timeout=300)
    assert stream.stat().st_size > 1000
    run = subprocess.run([sys.executable, *SCRIPT, "run", "--stream", str(stream),
                          "--device", "cpu", "--streams", "1,2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    lines = run.stdout.splitlines()
    assert any(line.startswith("providers: ['CPUExecutionProvider']") for line in lines)
    rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2"], run.stdout
    assert all(float(r[1]) > 0 for r in rows)
    assert "concurrent 25 fps streams sustained" in lines[-1]
