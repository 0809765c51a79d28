"""Zarr in an object store: a real S3-compatible server on 127.0.0.1 (moto's server mode,
spoken to by s3fs), round trips, OME-Zarr metadata, resume, the write guard, the CLI.
"""

from __future__ import annotations

import json

import dask
import dask.array as da
import numpy as np
import pytest

import xctdask as xd
from xctdask.cli import main

moto_server = pytest.importorskip("moto.server")
pytest.importorskip("s3fs")

VOLUME = np.random.default_rng(3).normal(size=(8, 24, 20)).astype(np.float32)


@pytest.fixture(scope="module")
def s3():
    """A running S3 server with one bucket; yields the storage options for it."""
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {
        "endpoint_url": f"http://{host}:{port}",
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"region_name": "us-east-1"},
    }
    boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket="xctdask-test")
    yield options
    server.stop()


def _url(name: str) -> str:
    return f"s3://xctdask-test/{name}"


def test_round_trip_with_voxel_size_and_a_pyramid(s3):
    vol = xd.open_volume(VOLUME, voxel_size=0.5, unit="micrometer")
    result = xd.save_volume(
        vol, _url("rt.zarr"), chunks=(4, 12, 10), multiscale=2, storage_options=s3, progress=False
    )
    assert result.chunks_written == 8 + 1 and result.levels == 2
    back = xd.open_volume(_url("rt.zarr"), storage_options=s3)
    np.testing.assert_array_equal(back.values, VOLUME)
    assert back.attrs["voxel_size"] == (0.5, 0.5, 0.5) and back.attrs["unit"] == "micrometer"
    level1 = xd.open_volume(_url("rt.zarr"), level=1, storage_options=s3)
    assert level1.shape == (4, 12, 10) and level1.attrs["voxel_size"] == (1.0, 1.0, 1.0)
    assert xd.io.check_store(_url("rt.zarr"), storage_options=s3).ok


def test_an_interrupted_write_resumes_with_only_missing_chunks(s3):
    calls = []

    def produce(block, block_info=None):
        index = block_info[0]["chunk-location"]
        calls.append(index)
        if fail and index == (1, 1, 0):
            raise RuntimeError("killed")
        return block

    source = da.from_array(VOLUME, chunks=(4, 12, 10)).map_blocks(produce, dtype=VOLUME.dtype)
    fail = True
    with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError, match="killed"):
        xd.save_volume(source, _url("resume.zarr"), storage_options=s3, progress=False)
    assert xd.io.is_interrupted_write(_url("resume.zarr"), s3)
    fail, calls[:] = False, []
    with dask.config.set(scheduler="synchronous"):
        result = xd.save_volume(source, _url("resume.zarr"), storage_options=s3, progress=False)
    assert result.chunks_skipped > 0 and result.chunks_written + result.chunks_skipped == 8
    assert len(calls) == result.chunks_written  # finished chunks were not recomputed
    back = xd.open_volume(_url("resume.zarr"), storage_options=s3)
    np.testing.assert_array_equal(back.values, VOLUME)


def test_the_guard_sees_stores_in_the_bucket(s3):
    xd.save_volume(VOLUME, _url("in.zarr"), storage_options=s3, progress=False)
    vol = xd.open_volume(_url("in.zarr"), storage_options=s3)
    with pytest.raises(ValueError, match="lies inside"):
        xd.save_volume(vol + 1, _url("in.zarr/sub.zarr"), storage_options=s3, progress=False)
    with pytest.raises(ValueError, match="an input"):
        xd.save_volume(vol + 1, _url("in.zarr"), overwrite=True, storage_options=s3)
    np.testing.assert_array_equal(vol.values, VOLUME)


def test_workers_read_the_bucket_and_predict_writes_to_it(s3, client):
    import torch

    xd.save_volume(VOLUME, _url("p.zarr"), chunks=(4, 24, 20), storage_options=s3, progress=False)
    vol = xd.open_volume(_url("p.zarr"), storage_options=s3)
    assert xd.inference.store_reader(vol.data) is not None  # blocks read the bucket
    torch.manual_seed(0)
    net = xd.models.build("unet2d", 1, 2, depth=1, f0=2)
    labels = xd.predict(vol, net, tile=16, normalize=(0.0, 1.0))
    xd.save_volume(labels, _url("labels.zarr"), storage_options=s3, progress=False)
    back = xd.open_volume(_url("labels.zarr"), storage_options=s3).values
    expected = xd.predict(VOLUME, net, tile=16, normalize=(0.0, 1.0)).values
    np.testing.assert_array_equal(back, expected)


def test_the_cli_takes_urls_and_storage_options(s3, tmp_path, client, capsys):
    local = tmp_path / "v.zarr"
    xd.save_volume(VOLUME, local, progress=False)
    options = ["--storage-options", json.dumps(s3), "--scheduler", client.scheduler.address]
    assert main(["convert", str(local), _url("cli.zarr"), *options]) == 0
    capsys.readouterr()
    assert main(["info", _url("cli.zarr"), "--check", *options]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["check"]["ok"] and info["shape"] == list(VOLUME.shape)
    assert main(["convert", str(local), _url("cli.zarr"), *options]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err


def _unreachable() -> dict:
    """Storage options for an S3 endpoint where nothing listens (one try, no retries)."""
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"region_name": "us-east-1"},
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2},
    }


def test_an_unreachable_server_is_an_os_error_naming_the_url(tmp_path, capsys):
    options = _unreachable()
    with pytest.raises(OSError, match=r"cannot reach s3://xctdask-test/out.zarr"):
        xd.save_volume(VOLUME, _url("out.zarr"), storage_options=options, progress=False)
    xd.save_volume(VOLUME, tmp_path / "v.zarr", progress=False)
    argv = ["pseudo-labels", str(tmp_path / "v.zarr"), _url("out.zarr")]
    assert main([*argv, "--storage-options", json.dumps(options)]) == 2  # no traceback
    assert "error: cannot reach s3://xctdask-test/out.zarr" in capsys.readouterr().err


def test_a_missing_store_or_bucket_is_said_in_words(s3, tmp_path, capsys):
    for url in (_url("missing.zarr"), "s3://no-such-bucket/x.zarr"):
        with pytest.raises(FileNotFoundError, match=f"no such Zarr store: nothing at {url}"):
            xd.open_volume(url, storage_options=s3)
    with pytest.raises(FileNotFoundError, match=r"its bucket 'no-such-bucket' does not exist"):
        xd.save_volume(VOLUME, "s3://no-such-bucket/x.zarr", storage_options=s3, progress=False)
    xd.save_volume(VOLUME, tmp_path / "v.zarr", progress=False)
    argv = ["convert", _url("missing.zarr"), str(tmp_path / "out.zarr")]
    assert main([*argv, "--storage-options", json.dumps(s3)]) == 2
    assert "no such Zarr store: nothing at s3://xctdask-test/missing.zarr" in (
        capsys.readouterr().err
    )


def test_sharded_output_is_few_files_and_resumes_shard_by_shard(tmp_path):
    out = tmp_path / "s.zarr"
    result = xd.save_volume(VOLUME, out, chunks=(2, 6, 5), shards=(4, 12, 10), progress=False)
    assert result.chunks_written == 8  # shards, each written by one task
    files = [p for p in (out / "c").rglob("*") if p.is_file()]
    assert len(files) == 8  # one file per shard instead of 64 chunk files
    np.testing.assert_array_equal(xd.open_volume(out).values, VOLUME)
    assert xd.io.check_store(str(out)).ok
    files[0].unlink()  # a lost shard of a complete store is an error naming it
    with pytest.raises(OSError, match="missing"):
        _ = xd.open_volume(out).values

    calls = []

    def produce(block, block_info=None):
        calls.append(block_info[0]["chunk-location"])
        if fail and block_info[0]["chunk-location"] == (1, 0, 0):
            raise RuntimeError("killed")
        return block

    source = da.from_array(VOLUME, chunks=(4, 12, 10)).map_blocks(produce, dtype=VOLUME.dtype)
    fail = True
    with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError):
        xd.save_volume(source, tmp_path / "r.zarr", chunks=(2, 6, 5), shards=True, progress=False)
    fail, calls[:] = False, []
    with dask.config.set(scheduler="synchronous"):
        again = xd.save_volume(
            source, tmp_path / "r.zarr", chunks=(2, 6, 5), shards=True, progress=False
        )
    assert again.chunks_skipped > 0 and len(calls) == again.chunks_written
    np.testing.assert_array_equal(xd.open_volume(tmp_path / "r.zarr").values, VOLUME)
