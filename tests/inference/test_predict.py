"""predict: seamless, chunking-independent, MONAI-exact, lazy, every tile once."""

from __future__ import annotations

import sys

import dask
import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import xctdask as xd
from xctdask.inference.lattice import Lattice

RNG = np.random.default_rng(0)
VOLUME = RNG.normal(1.0, 2.0, size=(6, 70, 90)).astype(np.float32)


class Affine(nn.Module):
    """A known linear function of the input: 3·x − 1 on the middle context slice."""

    outputs = ("denoised",)

    def __init__(self, spatial_dims: int = 2, context: int = 1):
        super().__init__()
        self.spatial_dims, self.context, self.in_channels = spatial_dims, context, 1
        self.scale = nn.Parameter(torch.tensor(3.0))

    def forward(self, x):
        middle = x[:, x.shape[1] // 2 : x.shape[1] // 2 + 1]
        return self.scale * middle - 1


class Counting(nn.Module):
    """A 2-D segmenter that counts the tiles it is shown (same process only)."""

    tiles_seen = 0
    spatial_dims, in_channels, context = 2, 1, 1

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)

    def forward(self, x):
        type(self).tiles_seen += x.shape[0]
        return self.conv(x)


class FixedSize(nn.Module):
    """Accepts only 16×16 tiles (a flattening head)."""

    spatial_dims, in_channels = 2, 1

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16 * 16, 2 * 16 * 16)

    def forward(self, x):
        return self.head(x.flatten(1)).view(x.shape[0], 2, 16, 16)


@pytest.fixture(scope="module")
def net25d():
    torch.manual_seed(0)
    return xd.models.build("unet2d", 1, 3, depth=2, f0=4, context=3).eval()


def _probabilities(vol, net, **kw):
    kw = {"tile": 32, "output": "probabilities", "normalize": None} | kw
    return xd.predict(vol, net, **kw).compute(scheduler="sync").values


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_linear_predictor_gives_the_function_of_the_whole_volume(spatial_dims):
    vol = da.from_array(VOLUME, chunks=(2, 25, 40))
    tile = 16 if spatial_dims == 2 else (4, 16, 16)
    out = xd.predict(vol, Affine(spatial_dims), output="denoised", tile=tile, normalize=None)
    np.testing.assert_allclose(out.compute(scheduler="sync").values, 3 * VOLUME - 1, atol=1e-5)
    norm = xd.predict(vol, Affine(spatial_dims), output="denoised", tile=tile, normalize=(1, 2))
    # the network sees (x − 1)/2; its output is mapped back to grey values: ·2 + 1
    expected = (3 * (VOLUME - 1) / 2 - 1) * 2 + 1
    np.testing.assert_allclose(norm.compute(scheduler="sync").values, expected, atol=1e-4)


def test_denoised_output_is_in_the_input_grey_values():
    net = Affine(2)
    net.scale.data.fill_(1.0)  # x − 1 in normalised units: one std darker in grey values
    grey = VOLUME * 100 + 5000
    vol = da.from_array(grey, chunks=(3, 35, 45))
    out = xd.predict(vol, net, output="denoised", tile=32, normalize=(5000.0, 200.0))
    np.testing.assert_allclose(out.values, grey - 200, rtol=1e-5)
    std = float(grey.std())
    auto = xd.predict(vol, net, output="denoised", tile=32, normalize="volume")
    np.testing.assert_allclose(auto.values, grey - std, rtol=1e-4)


def test_three_chunkings_give_the_same_result(net25d):
    results = [
        _probabilities(da.from_array(VOLUME, chunks=c), net25d)
        for c in [(6, 70, 90), (2, 25, 40), (1, 33, 17)]
    ]
    for other in results[1:]:
        assert np.abs(other - results[0]).max() < 1e-5
    np.testing.assert_allclose(results[0].sum(0), 1, atol=1e-5)


def test_matches_monai_slice_by_slice(net25d):
    from monai.inferers import sliding_window_inference

    got = _probabilities(da.from_array(VOLUME, chunks=(3, 35, 45)), net25d, overlap=0.5)
    padded = np.pad(VOLUME, ((1, 1), (0, 0), (0, 0)), mode="edge")
    for z in range(VOLUME.shape[0]):
        with torch.no_grad():
            ref = sliding_window_inference(
                torch.from_numpy(padded[z : z + 3][None]),
                (32, 32),
                4,
                lambda t: torch.softmax(net25d(t), 1),
                overlap=0.5,
                mode="gaussian",
            )
        assert np.abs(ref[0].numpy() - got[:, z]).max() < 1e-5


def test_matches_monai_in_3d():
    from monai.inferers import sliding_window_inference

    torch.manual_seed(1)
    net = xd.models.build("unet3d", 1, 2, depth=2, f0=4).eval()
    vol = RNG.normal(size=(20, 30, 41)).astype(np.float32)
    got = xd.predict(
        da.from_array(vol, chunks=(7, 16, 20)),
        net,
        tile=16,
        overlap=0.25,
        output="logits",
        normalize=None,
    )
    with torch.no_grad():
        ref = sliding_window_inference(
            torch.from_numpy(vol[None, None]),
            (16, 16, 16),
            4,
            net,
            overlap=0.25,
            mode="gaussian",
        )
    assert np.abs(ref[0].numpy() - got.compute(scheduler="sync").values).max() < 1e-5


@pytest.mark.parametrize("block", [None, (2, 25, 40), (6, 70, 90)])
def test_tiles_run_are_the_lattice_times_the_reported_redundancy(block):
    vol = da.from_array(VOLUME, chunks=(2, 25, 40))
    out = xd.predict(vol, Counting(), tile=24, overlap=0.5, normalize=None, block=block)
    Counting.tiles_seen = 0  # building the graph probed the network once, on meta tensors
    out.compute(scheduler="threads")
    lattice = Lattice.build(VOLUME.shape, (1, 24, 24), 0.5, "gaussian")
    assert out.attrs["tiles"] == lattice.n_tiles
    assert Counting.tiles_seen == round(lattice.n_tiles * out.attrs["redundancy"])
    if block == (6, 70, 90):  # one block holds the volume: every tile exactly once
        assert Counting.tiles_seen == lattice.n_tiles


@pytest.mark.parametrize("context", [1, 5, 9])
@pytest.mark.parametrize("chunks", [(2, 70, 90), (2, 35, 45), (1, 17, 13), (6, 8, 8)])
@pytest.mark.parametrize("axes", ["z", "zyx"])
def test_at_most_three_tasks_per_chunk(chunks, context, axes):
    """The whole graph, input included, for chunks smaller and larger than a tile."""
    torch.manual_seed(0)
    net = xd.models.build("unet2d", 1, 3, depth=1, f0=2, context=context)
    vol = da.from_array(VOLUME, chunks=chunks)
    out = xd.predict(vol, net, tile=32, normalize=(0, 1), axes=axes)
    assert len(out.data.__dask_graph__()) / vol.npartitions <= 3
    assert out.attrs["redundancy"] >= 1


def test_stays_lazy(net25d, no_compute):
    vol = da.from_array(VOLUME, chunks=(3, 35, 45))
    with no_compute():
        for output in ("labels", "probabilities", "confidence"):
            out = xd.predict(vol, net25d, tile=32, output=output)  # normalize="volume"
            assert isinstance(out.data, da.Array)
        tri = xd.predict(vol, net25d, tile=32, axes="zyx")
    assert tri.dtype == np.uint8


def test_outputs_agree(net25d):
    vol = da.from_array(VOLUME, chunks=(3, 35, 45))
    kw = {"tile": 32, "normalize": (1.0, 2.0)}
    p = xd.predict(vol, net25d, output="probabilities", **kw)
    labels = xd.predict(vol, net25d, **kw)
    confidence = xd.predict(vol, net25d, output="confidence", **kw)
    p, labels, confidence = dask.compute(p, labels, confidence, scheduler="sync")
    assert p.dims == ("class", "z", "y", "x") and p.dtype == np.float32
    np.testing.assert_array_equal(labels.values, p.values.argmax(0))
    np.testing.assert_allclose(confidence.values, p.values.max(0), atol=1e-6)


def test_triplanar_averages_three_slicings(net25d):
    vol = da.from_array(VOLUME[:, :40, :50], chunks=(3, 20, 25))
    single = [_probabilities(vol, net25d, axes=a) for a in "zyx"]
    tri = _probabilities(vol, net25d, axes="zyx")
    np.testing.assert_allclose(tri, np.mean(single, axis=0), atol=1e-5)
    assert not np.allclose(single[0], single[1], atol=1e-3)


def test_volume_smaller_than_a_tile(net25d):
    small = VOLUME[:2, :20, :30]
    got = _probabilities(small, net25d, tile=64)
    ref = _probabilities(small, net25d, tile=(20, 30))
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_non_finite_voxels_are_marked_and_input_is_kept(net25d):
    vol = VOLUME.copy()
    vol[2, 10, 10] = np.nan
    vol[4, 50, 60] = np.inf
    before = vol.copy()
    labels = xd.predict(vol, net25d, tile=32).compute(scheduler="sync").values
    assert labels[2, 10, 10] == 255 and labels[4, 50, 60] == 255
    assert (labels != 255).sum() == labels.size - 2
    np.testing.assert_array_equal(vol, before)


def test_normalization_from_training_is_used(net25d):
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=4, context=3).eval()
    net.load_state_dict(net25d.state_dict())
    net.normalization = (1.0, 2.0)
    auto = _probabilities(VOLUME, net, normalize="auto")
    explicit = _probabilities(VOLUME, net25d, normalize=(1.0, 2.0))
    np.testing.assert_allclose(auto, explicit, atol=1e-6)
    volume = _probabilities(VOLUME, net25d, normalize="volume")
    stats = (VOLUME.astype(np.float64).mean(), VOLUME.astype(np.float64).std())
    np.testing.assert_allclose(volume, _probabilities(VOLUME, net25d, normalize=stats), atol=1e-5)


def test_dataarray_in_dataarray_out(net25d):
    vol = xd.open_volume(VOLUME, voxel_size=0.5)
    out = xd.predict(vol, net25d, tile=32)
    assert out.dims == ("z", "y", "x") and isinstance(out, xr.DataArray)
    np.testing.assert_array_equal(out.coords["x"], vol.coords["x"])
    assert out.attrs["voxel_size"] == vol.attrs["voxel_size"]


def test_stacked_network_denoises_and_segments():
    torch.manual_seed(0)
    net = xd.models.build(
        "stacked-denseuseg", 1, 2, dims=2, k0=4, growth=4, n_blocks=2, modules_per_block=1
    ).eval()
    vol = VOLUME[:2, :32, :32]
    denoised = xd.predict(vol, net, output="denoised", tile=16, normalize=None)
    labels = xd.predict(vol, net, tile=16, normalize=None)
    assert denoised.dtype == np.float32 and denoised.shape == vol.shape
    assert labels.compute(scheduler="sync").values.max() < 2


def test_runs_on_a_local_cluster(client, net25d):
    vol = da.from_array(VOLUME, chunks=(3, 35, 45))
    ref = _probabilities(vol, net25d)
    out = xd.predict(vol, net25d, tile=32, output="probabilities", normalize=None)
    got = client.compute(out.data).result()
    assert np.abs(got - ref).max() < 1e-5


NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without GPU")


@NO_GPU
def test_a_device_this_process_lacks_is_refused_before_the_graph(net25d):
    for device, words in (("tpu", "device must be 'auto'"), ("cuda", "no CUDA GPU here")):
        with pytest.raises(ValueError, match=words):
            xd.predict(VOLUME, net25d, tile=32, device=device)


@NO_GPU
def test_a_device_the_workers_lack_fails_in_words_on_the_workers(client, net25d):
    # with a cluster the workers' devices count, not this process's: the graph is built
    out = xd.predict(da.from_array(VOLUME, chunks=(3, 35, 45)), net25d, tile=32, device="cuda")
    with pytest.raises(ValueError, match="no CUDA GPU here"):
        client.compute(out.data).result()


def test_a_stored_series_is_predicted_step_by_step_from_the_store(tmp_path, net25d):
    series = np.stack([VOLUME, VOLUME[::-1] * 0.5])
    xd.save_volume(
        xd.open_volume(series, dims=("t", "z", "y", "x")),
        tmp_path / "s.zarr",
        chunks=(3, 35, 45),
        progress=False,
    )
    vol = xd.open_volume(tmp_path / "s.zarr")
    out = xd.predict(vol, net25d, tile=32, output="probabilities", normalize="volume")
    assert out.dims == ("t", "class", "z", "y", "x")
    assert len(dict(out.data.__dask_graph__())) / (2 * 2 * 2 * 2) <= 3  # blocks read the store
    for t in range(2):  # each step with its own statistics, as a volume of its own
        alone = xd.predict(series[t], net25d, tile=32, output="probabilities", normalize="volume")
        np.testing.assert_allclose(out.values[t], alone.values, atol=1e-6)


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "match"),
    [
        (
            lambda: xd.models.build("unet2d", 1, 2, depth=2, f0=4),
            {"context": 3},
            ValueError,
            "context",
        ),
        (lambda: Affine(context=1), {"context": 2}, ValueError, "odd"),
        (
            lambda: xd.models.build(
                "denseuseg2d", 1, 2, k0=4, growth=4, n_blocks=2, modules_per_block=1
            ),
            {"context": 3},
            ValueError,
            "does not accept",
        ),
        (FixedSize, {"tile": 32}, ValueError, "does not accept"),
        (
            lambda: xd.models.build("unet2d", 1, 1, depth=2, f0=4, task="denoise"),
            {"output": "probabilities"},
            ValueError,
            "needs class scores",
        ),
        (
            lambda: xd.models.build("unet2d", 1, 2, depth=2, f0=4),
            {"output": "denoised"},
            ValueError,
            "declares a denoised output",
        ),
        (
            lambda: xd.models.build("unet2d", 1, 2, depth=2, f0=4),
            {"output": "mask"},
            ValueError,
            "output",
        ),
        (
            lambda: xd.models.build("unet2d", 1, 2, depth=2, f0=4),
            {"tile": (8, 8, 8)},
            ValueError,
            "tile",
        ),
        (
            lambda: xd.models.build("unet2d", 1, 2, depth=2, f0=4),
            {"axes": "zz"},
            ValueError,
            "axes",
        ),
        (
            lambda: xd.models.build("unet2d", 1, 2, depth=2, f0=4),
            {"blend": "cosine"},
            ValueError,
            "blend",
        ),
        (
            lambda: xd.models.build("unet2d", 1, 2, depth=2, f0=4),
            {"normalize": (0, 0)},
            ValueError,
            "std",
        ),
        (lambda: nn.Conv2d(1, 2, 3), {}, ValueError, "spatial_dims"),
    ],
)
def test_bad_arguments(make, kwargs, error, match):
    with pytest.raises(error, match=match):
        xd.predict(VOLUME[:2, :32, :32], make(), **kwargs)


def test_bad_volumes(net25d):
    with pytest.raises(ValueError, match="3-D"):
        xd.predict(VOLUME[0], net25d)
    with pytest.raises(TypeError, match="dtype"):
        xd.predict(VOLUME.astype(np.complex64), net25d)
    with pytest.raises(TypeError, match="Module"):
        xd.predict(VOLUME, "unet2d")


@pytest.mark.gpu
def test_gpu_worker_path(net25d):
    """On a GPU: CuPy chunks in, bf16 on the device, the same labels as fp32 on CPU."""
    cupy = pytest.importorskip("cupy")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    vol = da.from_array(cupy.asarray(VOLUME), chunks=(3, 35, 45), asarray=False)
    gpu = xd.predict(vol, net25d, tile=32, output="probabilities", normalize=(1, 2))
    got = cupy.asnumpy(gpu.data.compute(scheduler="threads"))
    ref = _probabilities(VOLUME, net25d, normalize=(1, 2))
    assert np.abs(got - ref).max() < 0.05  # bf16
    fp32 = xd.predict(
        vol, net25d, tile=32, output="probabilities", normalize=(1, 2), precision="fp32"
    )
    assert np.abs(cupy.asnumpy(fp32.data.compute(scheduler="threads")) - ref).max() < 1e-4


def test_the_allocator_is_tuned_only_while_blocks_run():
    import os

    from xctdask.inference import runner

    expected = (
        sys.platform.startswith("linux")
        and os.environ.get("XCTDASK_TUNE_MALLOC") != "0"
        and any(name in os.environ for name in runner._FIXING_VARIABLES)
    )
    with runner.inference_allocator():
        assert runner._ALLOCATOR_TUNED is expected
        with runner.inference_allocator():  # a second block at the same time
            assert runner._ALLOCATOR_TUNED is expected
        assert runner._ALLOCATOR_TUNED is expected  # the first still runs
    assert runner._ALLOCATOR_TUNED is False  # later tasks get the default allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_allocator_is_tuned_only_where_an_environment_variable_fixed_it():
    """A Dask nanny's worker (``MALLOC_TRIM_THRESHOLD_`` set) gets the tuned allocator;
    a plain process keeps glibc's dynamic threshold, which a restore could not give back."""
    import os
    import subprocess

    code = (
        "from xctdask.inference import runner\n"
        "with runner.inference_allocator():\n"
        "    print(runner._ALLOCATOR_TUNED)\n"
    )
    plain = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    plain.pop("XCTDASK_TUNE_MALLOC", None)
    for env, expected in ((plain, "False"), ({**plain, "MALLOC_TRIM_THRESHOLD_": "65536"}, "True")):
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected


@pytest.mark.parametrize("from_store", [False, True])
def test_the_network_is_one_piece_of_task_data(net25d, tmp_path, from_store):
    import pickle

    from dask.core import get_dependencies

    if from_store:
        xd.save_volume(VOLUME, tmp_path / "v.zarr", chunks=(2, 35, 45), progress=False)
        vol = xd.open_volume(tmp_path / "v.zarr").data
    else:
        vol = da.from_array(VOLUME, chunks=(2, 35, 45))
    out = xd.predict(vol, net25d, tile=32, normalize=(0, 1), axes="zy", block=(2, 35, 45))
    graph = dict(out.data.__dask_graph__())
    model_keys = [k for k in graph if isinstance(k, str) and k.startswith("xctdask-model-")]
    assert len(model_keys) == 1  # shared by both slicings and every block
    runs = [k for k in graph if isinstance(k, tuple) and k[0] == out.data.name]
    assert len(runs) == vol.npartitions
    assert all(model_keys[0] in get_dependencies(graph, k) for k in runs)
    model_bytes = len(pickle.dumps(net25d))
    assert max(len(pickle.dumps(graph[k])) for k in runs) < model_bytes / 10
    if from_store:  # the blocks read the store themselves: no read tasks in the graph
        assert xd.inference.store_reader(vol) is not None
        assert len(graph) == len(runs) + 3  # + the network, the plan and the reader
