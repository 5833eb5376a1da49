"""The benchmark scripts run end to end (`--quick`: tiny sizes, ratios printed but not judged), so the commands the
README quotes keep working. The speed figures themselves are measured on demand, not asserted here."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
@pytest.mark.parametrize(
    "script",
    [
        "bench_gpt_train.py",
        "bench_gpt_generate.py",
        "bench_bert_train.py",
        "bench_resnet50.py",
    ],
)
def test_benchmark_quick_mode_runs(script):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    ratios = re.findall(r": ([0-9.]+)x +not judged", result.stdout)
    assert ratios and all(float(r) > 0 for r in ratios), result.stdout
    assert "not judged" in result.stdout


@pytest.mark.slow
def test_seqrec_benchmark_quick_mode_runs(tmp_path):
    """bench_seqrec.py end to end on a toy file: training, the three protocols, the wall time and sequences/s."""
    lines = [f"{user} {(user * 7 + step) % 300 + 1}" for user in range(1, 151) for step in range(6)]
    data = tmp_path / "toy.txt"
    data.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_seqrec.py"), "--data", str(data), "--quick", "--no-bf16"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for protocol in ("sampled-uniform", "sampled-popularity", "full"):
        assert f"{protocol}: " in result.stdout
    assert re.search(r"time to best validation epoch \d+ s, wall time \d+ s, \d+ training sequences/s", result.stdout)
