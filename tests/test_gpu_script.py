"""``benchmarks/gpu.py --cpu``: the GPU command's every step runs, on tiny sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_command_runs_in_cpu_mode(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--cpu", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["mode"].startswith("cpu")
    assert report["gpu_tests"]["returncode"] in (0, 5)  # passed, or all skipped: no GPU
    assert report["network"]["variants"]["fp32"]["gvox_per_s"] > 0
    for step in ("predict_zarr", "pseudo_labels", "training", "denseuseg_3d"):
        assert "error" not in report[step], report[step]
    assert report["predict_zarr"]["gvox_per_s"] > 0
    assert report["training"]["sampler_patches_per_s"] > 0
