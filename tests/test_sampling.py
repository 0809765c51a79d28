"""PatchSampler: leak-free splits, class balance, sparse labels, shapes, real cluster."""

from __future__ import annotations

import sys

import dask.array as da
import numpy as np
import pytest
import torch

import xctdask as xd
from xctdask.sampling import PatchSampler


def _volume(shape=(60, 48, 48), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random(shape, dtype=np.float32)
    labels = (image > 0.5).astype(np.uint8)  # labels are a function of the image
    return image, labels


def _z_of_patches(sampler, part, n=200):
    rng = np.random.default_rng(0)
    origins = sampler._draw_origins(part, n, rng)
    out = []
    nz = sampler.shape[0]
    for o in origins:
        zs, _, _ = sampler._windows(o)
        out.append((max(zs.start, 0), min(zs.stop, nz)))  # the ends repeat the end slice
    return out


@pytest.mark.parametrize(("patch", "context"), [((1, 16, 16), 5), ((6, 16, 16), 1)])
def test_splits_never_overlap_and_respect_the_margin(patch, context):
    image, labels = _volume()
    sampler = PatchSampler(
        image, labels, patch=patch, context=context, margin=7, split=(0.5, 0.25, 0.25), seed=1
    )
    reach = {}
    for part in ("train", "validation", "test"):
        windows = _z_of_patches(sampler, part)
        first, last = min(a for a, _ in windows), max(b for _, b in windows)
        lo, hi = sampler.footprint(part)
        assert lo <= first and last <= hi  # every voxel a patch reads is in its slab
        reach[part] = (first, last)
    assert reach["validation"][0] - reach["train"][1] >= 7
    assert reach["test"][0] - reach["validation"][1] >= 7
    # the volume's end slices centre patches too (their context repeats the end slice)
    if patch[0] == 1:
        assert sampler.centre_range("train")[0] == 0
        assert sampler.centre_range("test")[1] == sampler.shape[0]


def test_a_short_stack_trains_on_every_slice_with_repeated_context():
    image, labels = _volume((2, 32, 32))
    sampler = PatchSampler(image, labels, patch=(1, 16, 16), context=7, split=(1, 0, 0), seed=0)
    assert sampler.centre_range("train") == (0, 2)
    batch = next(sampler.batches("train", batch_size=16, prefetch=1))
    assert batch["image"].shape == (16, 7, 16, 16)
    for image_patch, (z, y, x) in zip(batch["image"], batch["origin"].tolist(), strict=True):
        expected = image[np.clip(np.arange(z - 3, z + 4), 0, 1), y : y + 16, x : x + 16]
        np.testing.assert_array_equal(image_patch.numpy(), expected)
    with pytest.raises(ValueError, match="too few for z slabs"):
        PatchSampler(image, labels, patch=(1, 16, 16), context=7, split=(0.8, 0.2, 0))


def test_balance_brings_a_one_percent_class_into_a_fifth_of_the_patches():
    rng = np.random.default_rng(2)
    image = rng.random((40, 64, 64), dtype=np.float32)
    labels = np.zeros(image.shape, np.uint8)
    labels[image > 0.5] = 1
    rare = rng.random(image.shape) < 0.01
    labels[rare] = 2
    assert 0.008 < (labels == 2).mean() < 0.012
    sampler = PatchSampler(
        image, da.from_array(labels, chunks=(10, 32, 32)), patch=(1, 16, 16), margin=2, seed=3
    )
    batch = next(sampler.batches("train", batch_size=200, prefetch=1))
    has_rare = (batch["target"] == 2).flatten(1).any(dim=1).float().mean()
    assert has_rare >= 0.2
    unbalanced = PatchSampler(image, labels, patch=(1, 4, 4), margin=2, seed=3, balance=False)
    batch = next(unbalanced.batches("train", batch_size=200, prefetch=1))
    assert (batch["target"] == 2).flatten(1).any(dim=1).float().mean() < 0.2


def test_sparse_labels_never_give_an_all_unlabelled_patch():
    image, dense = _volume((50, 40, 40))
    sparse = np.full(dense.shape, 255, np.uint8)
    for z in (5, 17, 33):  # three annotated slices
        sparse[z] = dense[z]
    sampler = PatchSampler(
        image, sparse, patch=(1, 12, 12), context=3, margin=2, split=(1.0, 0.0, 0.0), seed=4
    )
    for batch in sampler.batches("train", batch_size=32, n_batches=5):
        labelled = (batch["target"] != 255).flatten(1).any(dim=1)
        assert bool(labelled.all())
    assert sampler.has_labels("train") and not sampler.has_labels("validation")
    split = PatchSampler(image, sparse, patch=(1, 12, 12), context=3, margin=2, seed=4)
    assert split.slabs["validation"][0] > 33  # the last annotated slice is in train
    assert not split.has_labels("validation")
    with pytest.raises(ValueError, match="no labelled voxel"):
        next(iter(split.batches("validation", batch_size=2, n_batches=1)))


def _assert_patches_match(batch, image, labels=None, clean=None, context=3, patch=16):
    half = (context - 1) // 2
    assert batch["origin"].shape == (batch["image"].shape[0], 3)
    for n, (z, y, x) in enumerate(batch["origin"].tolist()):
        ys, xs = slice(y, y + patch), slice(x, x + patch)
        zs = np.clip(np.arange(z - half, z + half + 1), 0, image.shape[0] - 1)  # ends repeat
        np.testing.assert_array_equal(batch["image"][n].numpy(), np.asarray(image[zs, ys, xs]))
        if labels is not None:
            np.testing.assert_array_equal(batch["target"][n].numpy(), np.asarray(labels[z, ys, xs]))
        if clean is not None:
            np.testing.assert_allclose(batch["clean"][n, 0].numpy(), clean[z, ys, xs])


def test_patches_show_the_volume_where_they_say():
    image, labels = _volume()
    clean = image * 2
    sampler = PatchSampler(
        image, labels, clean=clean, patch=(1, 16, 16), context=3, margin=3, seed=5
    )
    for batch in sampler.batches("train", batch_size=4, n_batches=3):
        _assert_patches_match(batch, image, labels, clean)
        # the labels stay a function of the image's centre slice
        assert torch.equal(batch["target"], (batch["image"][:, 1] > 0.5).long())


def test_regions_from_a_store_with_lazy_pseudo_labels(tmp_path):
    """The segment path: a Zarr scan read region by region from the store, its pseudo
    labels computed from the region read (not through their graph), patches exact."""
    ds = xd.phantoms.make("fibre-composite", (32, 64, 64), seed=1)
    xd.save_volume(ds.lq, tmp_path / "lq.zarr", chunks=(8, 32, 32))
    vol = xd.open_volume(tmp_path / "lq.zarr")
    labeler = xd.PseudoLabeler(3).fit(vol)
    pseudo = labeler.predict(vol)
    sampler = PatchSampler(vol, pseudo, patch=(1, 16, 16), context=3, margin=2, seed=2)
    assert sampler.cell == (8, 32, 32)  # the store's chunks
    assert "from the store" in repr(sampler) and "computed from the read region" in repr(sampler)
    image, expected = vol.values, pseudo.values
    for batch in sampler.batches("train", batch_size=8, n_batches=4):
        _assert_patches_match(batch, image, expected)


def test_any_dask_graph_and_three_d_patches():
    image, labels = _volume()
    lazy_image = da.from_array(image, chunks=(10, 24, 24)) + 0  # no store behind it
    lazy_labels = (lazy_image > 0.5).astype(np.uint8)
    sampler = PatchSampler(lazy_image, lazy_labels, patch=(6, 16, 16), margin=2, seed=3)
    assert "through its Dask graph" in repr(sampler)
    batch = next(sampler.batches("train", batch_size=5))
    for n, (z, y, x) in enumerate(batch["origin"].tolist()):
        box = (slice(z, z + 6), slice(y, y + 16), slice(x, x + 16))
        np.testing.assert_array_equal(batch["image"][n, 0].numpy(), image[box])
        np.testing.assert_array_equal(batch["target"][n].numpy(), labels[box])


def test_batch_k_depends_only_on_seed_part_and_k():
    image, labels = _volume()
    sampler = PatchSampler(
        image,
        labels,
        patch=(1, 8, 8),
        margin=2,
        seed=4,
        shuffle=24,
        patches_per_read=4,
        cell=(10, 24, 24),
    )
    stream = list(sampler.batches("train", batch_size=4, n_batches=10))
    resumed = list(sampler.batches("train", batch_size=4, n_batches=3, start=7))
    for a, b in zip(stream[7:], resumed, strict=True):
        assert torch.equal(a["origin"], b["origin"]) and torch.equal(a["image"], b["image"])
    other = next(sampler.batches("test", batch_size=4))
    assert not torch.equal(other["origin"], stream[0]["origin"])
    # a round mixes several reads: one batch is not one place of the volume
    regions = {tuple(o) for o in (stream[0]["origin"] // torch.tensor(sampler.cell)).tolist()}
    assert len(regions) > 1


def test_three_d_shapes_and_reproducibility():
    image, labels = _volume()
    sampler = PatchSampler(
        image, labels, patch=(8, 16, 16), margin=2, split=(0.5, 0.25, 0.25), seed=6
    )
    a = next(sampler.batches("validation", batch_size=3, prefetch=1))
    b = next(sampler.batches("validation", batch_size=3, prefetch=1))
    assert a["image"].shape == (3, 1, 8, 16, 16) and a["target"].shape == (3, 8, 16, 16)
    assert torch.equal(a["image"], b["image"])  # same seed, same patches
    c = next(sampler.batches("validation", batch_size=3, prefetch=1, seed=7))
    assert not torch.equal(a["image"], c["image"])


def test_on_a_local_cluster_from_zarr(client, tmp_path):
    ds = xd.phantoms.make("fibre-composite", (24, 64, 64), seed=0)
    xd.save_volume(ds.hq.chunk({"z": 8}), tmp_path / "hq.zarr")
    xd.save_volume(ds.labels.chunk({"z": 8}), tmp_path / "labels.zarr", kind="labels")
    sampler = PatchSampler(
        xd.open_volume(tmp_path / "hq.zarr"),
        xd.open_volume(tmp_path / "labels.zarr"),
        patch=(1, 32, 32),
        context=3,
        margin=2,
        split=(0.5, 0.25, 0.25),
        seed=0,
    )
    assert sampler.n_classes == 3
    batches = list(sampler.batches("train", batch_size=8, n_batches=3))
    assert len(batches) == 3 and batches[0]["image"].shape == (8, 3, 32, 32)
    loader = torch.utils.data.DataLoader(sampler.dataset("train", 4, n_batches=2), batch_size=None)
    assert [b["target"].shape for b in loader] == [(4, 32, 32)] * 2


def test_in_memory_input_is_cut_locally_even_with_a_client(client):
    from distributed import get_task_stream

    image, labels = _volume((30, 20, 20))
    options = {"patch": (1, 8, 8), "context": 3, "split": (0.6, 0.2, 0.2), "seed": 1}
    local = PatchSampler(image, labels, **options)
    remote = PatchSampler(local.image, local.target, **options)  # same data, as Dask
    assert local.in_memory and not remote.in_memory
    with get_task_stream(client) as local_stream:
        mine = list(local.batches("train", batch_size=4, n_batches=2))
    with get_task_stream(client) as remote_stream:
        theirs = list(remote.batches("train", batch_size=4, n_batches=2))
    assert local_stream.data == [] and remote_stream.data  # only the Dask input went out
    for a, b in zip(mine, theirs, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])


def test_tasks_per_batch_are_bounded_and_closing_is_clean(tmp_path):
    """One task per region read (a few per round of batches), whatever the patches
    touch; closing the sampler and then the cluster leaves nothing in flight."""
    import gc

    from distributed import Client, LocalCluster, get_task_stream

    ds = xd.phantoms.make("fibre-composite", (40, 64, 64), seed=2)
    xd.save_volume(ds.lq, tmp_path / "lq.zarr", chunks=(8, 32, 32))
    vol = xd.open_volume(tmp_path / "lq.zarr")
    unraisable = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with (
            LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None) as cluster,
            Client(cluster) as client,
        ):
            pseudo = xd.PseudoLabeler(3).fit(vol).predict(vol)
            sampler = PatchSampler(
                vol,
                pseudo,
                patch=(1, 16, 16),
                context=5,
                margin=2,
                seed=0,
                split=(0.6, 0.2, 0.2),
                patches_per_read=16,
                shuffle=64,
            )
            with get_task_stream(client) as stream:
                batches = list(sampler.batches("train", batch_size=8, n_batches=16))
            assert len(batches) == 16
            # 2 rounds of 64 patches = 8 reads, and at most one round read ahead
            assert 0 < len(stream.data) <= 12, len(stream.data)
            assert {t["key"].split("-")[0] for t in stream.data} == {"cut_patches"}
            endless = sampler.batches("train", batch_size=8)
            next(endless)  # rounds in flight now
            sampler.close()
            with pytest.raises(StopIteration):
                next(endless)
            other = sampler.batches("train", batch_size=8)
            next(other)
        del other, endless  # the client is gone: finalising must not raise
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert unraisable == []


def test_bad_input():
    image, labels = _volume((30, 20, 20))
    with pytest.raises(ValueError, match="does not match"):
        PatchSampler(image, labels[:, :10], patch=(1, 8, 8))
    with pytest.raises(ValueError, match="odd"):
        PatchSampler(image, labels, patch=(1, 8, 8), context=2)
    with pytest.raises(ValueError, match="larger than the volume"):
        PatchSampler(image, labels, patch=(1, 64, 8))
    with pytest.raises(ValueError, match="too few"):
        PatchSampler(image, labels, patch=(1, 8, 8), margin=20)
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        PatchSampler(image, labels + 1, patch=(1, 8, 8), n_classes=2)
    with pytest.raises(ValueError, match="no labelled voxel"):
        PatchSampler(image, np.full(image.shape, 255, np.uint8), patch=(1, 8, 8), n_classes=2)
    with pytest.raises(ValueError, match="part must be"):
        PatchSampler(image, labels, patch=(1, 8, 8), margin=2).centre_range("holdout")


@pytest.mark.parametrize(
    ("option", "said"),
    [
        ({"patch": 8}, r"e\.g\. \(1, 8, 8\) for slices"),  # was "'int' is not iterable"
        ({"margin": -1}, "margin must be a non-negative"),  # overlapping slabs: a leak
        ({"normalize": (0.0, 0.0)}, "positive std"),  # patches of inf and NaN
        ({"normalize": "volume"}, r"normalize must be \(mean, std\)"),
        ({"reservoir": 0}, "reservoir must be a positive integer"),
    ],
)
def test_settings_that_would_leak_or_poison_training_are_refused(option, said):
    image, labels = _volume((30, 20, 20))
    with pytest.raises(ValueError, match=said):
        PatchSampler(image, labels, **{"patch": (1, 8, 8), **option})
