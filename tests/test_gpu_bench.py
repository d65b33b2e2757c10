"""bench/gpu.py --smoke: the GPU benchmark's every measurement, on tiny checkpoints on the CPU, so the script
that waits for the first GPU still runs when one comes. A smoke test of a script, not a benchmark: it
checks that each measurement produced a row with a value, never how fast."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_bench_smoke_measures_everything_without_an_error(tmp_path):
    out = tmp_path / "gpu.json"
    run = subprocess.run([sys.executable, "bench/gpu.py", "--smoke", "--out", str(out), "--workdir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    rows = report["rows"]
    assert [row for row in rows if row["value"] is None] == []
    for model in ("minicpm-2b", "minicpm5-2b"):
        metrics = " | ".join(row["metric"] for row in rows if row["model"] == model)
        for expected in ("load", "decode batch 1: our engine", "decode batch 1: bare generate", "static cache",
                         "TTFT", "concurrent: our engine", "concurrent: transformers generate_batch"):
            assert expected in metrics, (model, expected, metrics)
    assert report["device"] in run.stdout  # the table is headed by the device's name
