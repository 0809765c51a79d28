"""A killed worker, an interrupted write: the result is still complete and identical."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import torch

import xctdask as xd
from xctdask.io import is_interrupted_write, open_volume


def _net():
    torch.manual_seed(0)
    net = xd.models.build("unet2d", 1, 3, depth=3, f0=16, context=3).eval()
    net.normalization = (0.0, 1.0)
    return net


@pytest.mark.slow
def test_a_worker_killed_during_predict_changes_nothing():
    from distributed import Client, LocalCluster

    vol = np.random.default_rng(0).normal(size=(24, 128, 128)).astype(np.float32)
    net = _net()
    labels = xd.predict(da.from_array(vol, chunks=(2, 128, 128)), net, tile=64)
    expected = labels.data.compute(scheduler="threads")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        future = client.compute(labels.data)
        deadline = time.time() + 60
        while time.time() < deadline:  # wait until the network is running on the workers
            busy = client.processing()
            if any(any("xctdask-predict" in str(k) for k in keys) for keys in busy.values()):
                break
            time.sleep(0.05)
        pids = client.run(os.getpid)
        victim = sorted(pids)[0]
        os.kill(pids[victim], signal.SIGKILL)
        got = future.result(timeout=300)
        assert not future.cancelled()
        client.wait_for_workers(2, timeout=60)
        assert pids[victim] not in client.run(os.getpid).values()  # it really died
    np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
def test_an_interrupted_predict_resumes_and_writes_only_missing_chunks(tmp_path):
    vol = np.random.default_rng(1).normal(size=(24, 128, 128)).astype(np.float32)
    xd.save_volume(vol, tmp_path / "vol.zarr", chunks=(2, 128, 128), progress=False)
    model = xd.models.save(_net(), tmp_path / "net.pt")
    out = tmp_path / "labels.zarr"
    argv = [sys.executable, "-m", "xctdask.cli", "predict", str(tmp_path / "vol.zarr")]
    argv += [str(model), str(out), "--tile", "64", "--workers", "1"]
    # one Dask chunk per storage chunk (128 KiB), so a resume can skip single chunks
    env = {**os.environ, "DASK_ARRAY__CHUNK_SIZE": "128KiB"}
    first = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env=env
    )
    deadline = time.time() + 120
    written = 0
    while time.time() < deadline and first.poll() is None:
        written = len(list((out / "c").rglob("*"))) if (out / "c").exists() else 0
        if written >= 3:
            break
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the command, its cluster, its workers
    first.wait(timeout=30)
    assert written >= 3 and is_interrupted_write(out)
    second = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stderr
    import json

    report = json.loads(second.stdout[second.stdout.index("{") :])
    assert report["chunks_skipped"] >= 1 and report["chunks_written"] >= 1
    assert report["chunks_skipped"] + report["chunks_written"] == 12
    expected = xd.predict(vol, _net(), tile=64).compute(scheduler="threads").values
    np.testing.assert_array_equal(open_volume(out).values, expected)
    assert not is_interrupted_write(out)
    assert Path(out).exists()
