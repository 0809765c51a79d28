"""`xctdask segment --scheduler` against a scheduler and workers started as separate
processes (`dask scheduler`, `dask worker`) gives what a LocalCluster gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import xctdask as xd
from xctdask.io import open_volume

FAST = ["--classes", "3", "--steps", "10", "--steps-self-correct", "4", "--patch", "32"]
FAST += ["--depth", "2", "--f0", "4", "--context", "3", "--tile", "64"]


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xctdask.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _dask(*args: str, log: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("dask")
    command = (
        [str(exe)] if exe.exists() else [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [*command, *args], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env
    )


@pytest.fixture
def separate_cluster(tmp_path):
    """A scheduler and two single-thread workers, each its own OS process."""
    scheduler_file = tmp_path / "scheduler.json"
    procs = [
        _dask(
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
            log=tmp_path / "scheduler.log",
        )
    ]
    try:
        deadline = time.time() + 60
        while not scheduler_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for i in range(2):
            procs.append(
                _dask(
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--name",
                    f"w{i}",
                    log=tmp_path / f"worker{i}.log",
                )
            )
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


@pytest.mark.slow
def test_segment_on_separate_processes_matches_a_local_cluster(tmp_path, separate_cluster):
    ds = xd.phantoms.make("fibre-composite", (24, 64, 64), seed=3)
    xd.save_volume(ds.hq, tmp_path / "hq.zarr", chunks=(8, 64, 64), progress=False)
    remote = _cli(
        "segment",
        str(tmp_path / "hq.zarr"),
        str(tmp_path / "remote.zarr"),
        *FAST,
        "--scheduler",
        separate_cluster,
    )
    assert remote.returncode == 0, remote.stderr
    assert "Dask dashboard" in remote.stderr
    local = _cli(
        "segment", str(tmp_path / "hq.zarr"), str(tmp_path / "local.zarr"), *FAST, "--workers", "2"
    )
    assert local.returncode == 0, local.stderr
    a = open_volume(tmp_path / "remote.zarr").values
    b = open_volume(tmp_path / "local.zarr").values
    assert a.shape == (24, 64, 64) and a.max() < 3
    np.testing.assert_array_equal(a, b)
