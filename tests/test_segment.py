"""segment / Segmenter: unsupervised, sparse labels, clean scan, 4-D, save/load, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

import xctdask as xd
from xctdask.segment import _histogram_stats

SMALL = {"patch": 48, "depth": 2, "f0": 8, "context": 3, "progress": False}


@pytest.fixture(scope="module")
def phantom():
    return xd.phantoms.make("fibre-composite", (32, 96, 96), seed=1)


def _matched_miou(labels, truth, n=3):
    labels, truth = np.asarray(labels), np.asarray(truth)
    mapping = xd.metrics.match_labels(labels, truth, n, n)
    return float(xd.metrics.mean_iou(xd.metrics.apply_mapping(labels, mapping), truth, n_classes=n))


@pytest.fixture(scope="module")
def unsupervised(phantom):
    return xd.Segmenter(3, steps=150, steps_self_correct=40, **SMALL).fit(phantom.hq)


def test_unsupervised_pipeline_segments_the_phantom(unsupervised, phantom, no_compute):
    with no_compute():
        labels = unsupervised.transform(phantom.hq)  # lazy
    assert labels.dtype == np.uint8 and labels.dims == ("z", "y", "x")
    assert unsupervised.mode_ == "unsupervised"
    assert set(unsupervised.history) == {"stage2", "stage3"}
    assert _matched_miou(labels.values, phantom.labels.values) >= 0.8


def test_nan_outside_the_field_of_view_trains_and_stays_unlabelled(phantom):
    # NaN voxels used to reach the network in training: the loss was NaN from the
    # first step and the labels one class everywhere, without a word
    hq = phantom.hq.values.copy()
    yy, xx = np.mgrid[:96, :96]
    outside = (yy - 47.5) ** 2 + (xx - 47.5) ** 2 > 40**2
    hq[:, outside] = np.nan
    seg = xd.Segmenter(3, steps=80, steps_self_correct=10, **SMALL).fit(hq)
    for stage in ("stage2", "stage3"):
        assert np.isfinite(seg.history[stage]["loss"]).all()
    labels = seg.transform(hq).values
    assert (labels[:, outside] == 255).all() and (labels[:, ~outside] < 3).all()
    truth = np.where(outside, 255, phantom.labels.values)
    mapping = xd.metrics.match_labels(np.where(outside, 0, labels), truth, 3, 3)
    mapped = np.asarray(xd.metrics.apply_mapping(labels, mapping))
    iou = xd.metrics.iou(mapped[:, ~outside], phantom.labels.values[:, ~outside], n_classes=3)
    assert float(np.mean(iou)) >= 0.6  # 0.75 here; one class everywhere scores 0.29


def test_sparse_labels_train_a_supervised_network(phantom):
    truth = phantom.labels.values
    sparse = np.full_like(truth, 255)
    annotated = [3, 9, 15, 21, 27]
    sparse[annotated] = truth[annotated]
    before = sparse.copy()
    labels = xd.segment(phantom.hq, 3, labels=sparse, steps=150, **SMALL)
    np.testing.assert_array_equal(sparse, before)  # input untouched
    miou = xd.metrics.mean_iou(labels.values, truth, n_classes=3)  # no matching needed
    assert float(miou) >= 0.8


def test_clean_scan_trains_the_stacked_network(phantom):
    seg = xd.Segmenter(3, steps=10, patch=32, depth=2, f0=4, progress=False)
    seg.fit(phantom.lq, clean=phantom.hq)
    assert seg.mode_ == "unsupervised+denoise"
    assert seg.network_.config["name"] == "stacked-denseuseg"
    denoised = seg.transform(phantom.lq[:8], output="denoised")
    assert denoised.dtype == np.float32 and denoised.shape == (8, 96, 96)
    assert np.isfinite(denoised.values).all()


def test_time_series_and_save_load(unsupervised, phantom, tmp_path):
    series = xr.concat([phantom.hq[:8], phantom.lq[:8]], dim="t")
    labels = unsupervised.transform(series)
    assert labels.dims == ("t", "z", "y", "x") and labels.shape == (2, 8, 96, 96)
    np.testing.assert_array_equal(labels[1].values, unsupervised.transform(phantom.lq[:8]).values)
    path = unsupervised.save(tmp_path / "seg.pt")
    back = xd.Segmenter.load(path)
    assert back.normalization_ == unsupervised.normalization_
    assert back.mode_ == "unsupervised" and back.history == unsupervised.history
    # what fit chose is reported after loading too
    assert (back.pseudo_sigma_, back.steps_self_correct_) == (0.0, 40)
    np.testing.assert_array_equal(back.transform(phantom.lq[:8]).values, labels[1].values)
    with pytest.raises(FileExistsError):
        unsupervised.save(path)


def test_a_stored_time_series_is_read_step_by_step_from_the_store(unsupervised, phantom, tmp_path):
    import zarr

    series = np.stack([phantom.hq.values[:8], phantom.lq.values[:8], phantom.lq.values[8:16]])
    store = zarr.create_array(
        tmp_path / "s.zarr", shape=series.shape, chunks=(1, 4, 48, 48), dtype=series.dtype
    )
    store[:] = series
    vol = xd.open_volume(tmp_path / "s.zarr", dims=("t", "z", "y", "x"))
    labels = unsupervised.transform(vol)
    graph = dict(labels.data.__dask_graph__())
    storage_chunks = 3 * 2 * 2 * 2
    assert len(graph) / storage_chunks <= 3  # no read tasks: blocks read the store
    np.testing.assert_array_equal(labels[1].values, unsupervised.transform(phantom.lq[:8]).values)
    xd.save_volume(labels, tmp_path / "labels.zarr", progress=False)  # the series' labels
    saved = xd.open_volume(tmp_path / "labels.zarr")
    assert saved.dims == ("t", "z", "y", "x") and saved.attrs["storage_chunks"] == [1, 4, 48, 48]
    np.testing.assert_array_equal(saved.values, labels.values)


def test_grey_values_in_another_type_than_the_fit_are_flagged(unsupervised, phantom, tmp_path):
    assert unsupervised.dtype_ == str(phantom.hq.dtype) == "float32"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # floats of any width are the same grey values
        unsupervised.transform(phantom.hq.astype(np.float64))
    as_integers = (phantom.hq * 1000).astype(np.uint16)
    with pytest.warns(UserWarning, match=r"fitted on float32 grey values and is given uint16"):
        unsupervised.transform(as_integers)
    back = xd.Segmenter.load(unsupervised.save(tmp_path / "seg.pt"))  # kept in the file
    with pytest.warns(UserWarning, match="is given uint16"):
        back.transform(as_integers)


def test_labels_without_a_class_are_flagged(phantom):
    sparse = np.full(phantom.labels.shape, 255, np.uint8)
    sparse[10] = np.minimum(phantom.labels.values[10], 1)  # classes 0 and 1, never 2
    seg = xd.Segmenter(3, steps=2, steps_self_correct=0, **SMALL)
    with (
        pytest.warns(UserWarning, match=r"no voxel of class 2 \(of 3\)"),
        pytest.warns(UserWarning, match=r"^1 annotated slice \(z = \[10\]\): it trains"),
    ):
        seg.fit(phantom.hq, labels=sparse)


def test_normalization_comes_from_the_histogram(unsupervised, phantom):
    hq = phantom.hq.values
    lab = xd.PseudoLabeler(3, mask="cylinder").fit(hq).predict(hq)
    inside = hq[lab != 255]
    mean, std = unsupervised.normalization_
    assert abs(mean - inside.mean()) < 0.01 * inside.std()
    assert abs(std - inside.std()) < 0.01 * inside.std()


def test_bad_input(phantom, tmp_path):
    hq, truth = phantom.hq.values, phantom.labels.values
    with pytest.raises(ValueError, match="shape"):
        xd.segment(hq, 3, labels=truth[:, :50], **SMALL)
    with pytest.raises(ValueError, match="shape"):
        xd.segment(hq, 3, clean=hq[:10], **SMALL)
    bad = truth.copy()
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        xd.segment(hq, 3, labels=bad, **SMALL)
    with pytest.raises(ValueError, match="no labelled voxel"):
        xd.segment(hq, 3, labels=np.full_like(truth, 255), **SMALL)
    ignore = np.where(np.arange(hq.shape[0])[:, None, None] == 2, truth.astype(np.int16), -1)
    with pytest.raises(ValueError, match=r"values \[-1\] .*np.where\(labels < 0, 255"):
        xd.segment(hq, 3, labels=ignore, **SMALL)  # -1 as "unlabelled" counted as annotated
    with pytest.raises(TypeError, match="integers"):
        xd.segment(hq, 3, labels=truth.astype(np.float32), **SMALL)
    with pytest.raises(TypeError, match=r"boolean.*astype\(np.uint8\)"):
        xd.segment(hq, 2, labels=truth == 1, **SMALL)
    with pytest.raises(ValueError, match="n_classes"):
        xd.segment(hq, 1, **SMALL)
    with pytest.raises(ValueError, match="3-D"):
        xd.segment(hq[0], 3, **SMALL)
    with pytest.raises(RuntimeError, match="not fitted"):
        xd.Segmenter(3).transform(hq)
    with pytest.raises(FileNotFoundError):
        xd.Segmenter.load(tmp_path / "missing.pt")
    (tmp_path / "folder").mkdir()
    seg = xd.Segmenter(3, steps=1, steps_self_correct=0, depth=1, f0=2, patch=32, progress=False)
    seg.fit(hq[:8])
    with pytest.raises(IsADirectoryError, match=r"folder; give a file name inside it"):
        seg.save(tmp_path / "folder", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]  # no temporary file left
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=4)
    xd.models.save(net, tmp_path / "net.pt")
    with pytest.raises(ValueError, match="not an xctdask Segmenter"):
        xd.Segmenter.load(tmp_path / "net.pt")


def test_pix2pix_is_a_segmenter_that_fits_and_transforms():
    """The PXCT paper segments with Pix2Pix: the Segmenter must train and apply it."""
    ds = xd.phantoms.make("fibre-composite", (24, 64, 64), seed=5)
    seg = xd.Segmenter(
        3,
        model="pix2pix",
        steps=4,
        steps_self_correct=2,
        patch=32,
        depth=2,
        f0=4,
        tile=32,
        progress=False,
    ).fit(ds.hq)
    assert seg.network_.config["name"] == "pix2pix" and "stage3" in seg.history
    labels = seg.transform(ds.hq).values
    assert labels.shape == ds.hq.shape and labels.max() < 3


@pytest.mark.parametrize("nz", [1, 2, 5])
def test_any_stack_of_at_least_one_slice_runs(phantom, nz):
    """Short stacks are trained without a validation slab (and say so), with the 2.5D
    context repeating the end slices, as inference does."""
    vol = phantom.hq[:nz]
    seg = xd.Segmenter(3, steps=3, steps_self_correct=2, patch=32, depth=1, f0=4, context=7,
                       progress=False)  # fmt: skip
    with pytest.warns(UserWarning, match="too short for a z-slab validation split"):
        seg.fit(vol)
    assert seg.transform(vol).shape == vol.shape
    truth = phantom.labels.values[:nz]
    with pytest.warns(UserWarning, match="too short"):
        labels = xd.segment(vol, 3, labels=truth, steps=3, patch=32, depth=1, f0=4, context=7,
                            progress=False)  # fmt: skip
    assert labels.shape == vol.shape


def test_a_stack_of_unrelated_slices_is_segmented_slice_by_slice(phantom):
    seg = xd.Segmenter(3, steps=3, stack="slices", patch=32, depth=1, f0=4, progress=False)
    seg.fit(phantom.hq[:6], phantom.labels.values[:6])
    assert seg.network_.context == 1
    assert seg.transform(phantom.hq[:6]).shape == (6, 96, 96)
    with pytest.raises(ValueError, match="2-D model"):
        xd.Segmenter(3, model="unet3d", stack="slices").validate()
    with pytest.raises(ValueError, match="stack must be"):
        xd.Segmenter(3, stack="pile").validate()


def test_annotated_slices_are_all_used_or_named(phantom):
    truth = phantom.labels.values
    few = np.full_like(truth, 255)
    few[[2, 30]] = truth[[2, 30]]  # 30 lies in the validation slab's margin by default
    with pytest.warns(UserWarning, match=r"z = \[2, 30\]\): all of them train"):
        xd.Segmenter(3, steps=2, **SMALL).fit(phantom.hq, few)
    many = np.full_like(truth, 255)
    annotated = list(range(0, 32, 3))  # 11 slices: a validation slab is kept
    many[annotated] = truth[annotated]
    with pytest.warns(UserWarning, match="lie in the margin") as record:
        xd.Segmenter(3, steps=2, **SMALL).fit(phantom.hq, many)
    message = next(str(w.message) for w in record if "margin" in str(w.message))
    named = [int(z) for z in message.split("[")[1].split("]")[0].split(",")]
    assert named and set(named) <= set(annotated)


def test_denoised_output_comes_back_in_the_clean_scans_grey_values(phantom, tmp_path):
    lq = phantom.lq * 3.0 + 5.0  # a scan on another grey scale than the clean one
    seg = xd.Segmenter(3, steps=30, patch=32, depth=2, f0=4, progress=False)
    seg.fit(lq, clean=phantom.hq)
    denoised = seg.transform(lq[:8], output="denoised").values
    clean = phantom.hq.values[:8]
    assert abs(denoised.mean() - clean.mean()) < 0.2 * abs(lq.values[:8].mean() - clean.mean())
    back = xd.Segmenter.load(seg.save(tmp_path / "denoise.pt"))
    np.testing.assert_allclose(back.transform(lq[:8], output="denoised").values, denoised,
                               rtol=1e-5, atol=1e-5)  # fmt: skip


def test_flips_average_the_mirror_images(unsupervised, phantom):
    """Test-time flips: lazy, and mirroring the input mirrors the labels."""
    vol = phantom.lq[:6]
    labels = unsupervised.transform(vol, flips=True)
    assert labels.dtype == np.uint8 and labels.dims == ("z", "y", "x")
    mirrored = unsupervised.transform(vol[:, ::-1], flips=True).values[:, ::-1]
    assert (mirrored == labels.values).mean() > 0.999
    probs = unsupervised.transform(vol, output="probabilities", flips=True).values
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(0), labels.values)
    plain = unsupervised.transform(vol).values
    assert (plain == labels.values).mean() > 0.9  # a refinement, not another answer
    with pytest.raises(ValueError, match="flips=True"):
        unsupervised.transform(vol, output="entropy", flips=True)
    with pytest.raises(TypeError, match="flips must be True or False, got 'no'"):
        unsupervised.transform(vol, flips="no")  # a truthy string would have flipped


def test_fit_like_an_lq_scan_adds_the_noise_the_hq_scan_lacks(phantom):
    """``like=``: the LQ scan's extra noise spectrum, measured on each scan in its own
    normalised grey values, goes into training; white noise at Immerkær's levels where
    adjacent slices are unrelated; a bad ``like`` is refused before any work."""
    from xctdask.metrics import noise_level, noise_spectrum

    tiny = {"patch": 32, "depth": 1, "f0": 2, "context": 1, "progress": False}
    seg = xd.Segmenter(3, steps=2, steps_self_correct=2, **tiny)
    seg.fit(phantom.hq, like=phantom.lq)
    lq_labeler = xd.PseudoLabeler(3, mask="cylinder").fit(phantom.lq)
    lq_stats = _histogram_stats(lq_labeler.histogram_)
    fov = lq_labeler.field_of_view_
    assert not fov.everything  # the phantom is a reconstruction with a field of view
    theirs = noise_spectrum(phantom.lq, normalize=lq_stats, field_of_view=fov)
    ours = noise_spectrum(phantom.hq, normalize=seg.normalization_, field_of_view=fov)
    # what changes between slices (the structure, alike in both) cancels in the difference
    assert theirs.mean() > ours.mean() + 0.02  # the LQ scan is the noisier one
    np.testing.assert_allclose(seg.degrade_spectrum_, np.maximum(theirs - ours, 0))
    assert seg.degrade_sigma_ == pytest.approx(np.sqrt(seg.degrade_spectrum_.mean()))
    assert len(seg.history["stage2"]["loss"]) == 2 and "stage3" in seg.history
    # unrelated slices: white noise at the difference of Immerkær's levels
    flat = xd.Segmenter(3, steps=1, steps_self_correct=0, stack="slices", **tiny)
    flat.fit(phantom.hq, like=phantom.lq)
    white_theirs = noise_level(phantom.lq, normalize=lq_stats)
    white_ours = noise_level(phantom.hq, normalize=flat.normalization_)
    assert flat.degrade_spectrum_ is None
    assert flat.degrade_sigma_ == pytest.approx(np.sqrt(white_theirs**2 - white_ours**2))
    # an HQ scan "like" itself needs no noise
    same = xd.Segmenter(3, steps=1, steps_self_correct=0, **tiny).fit(phantom.hq, like=phantom.hq)
    assert same.degrade_sigma_ == pytest.approx(0.0, abs=1e-9) and same.degrade_spectrum_ is None
    with pytest.raises(ValueError, match="like must be 3-D"):
        xd.Segmenter(3, **tiny).fit(phantom.hq, like=phantom.lq.values[0])


def test_stage_3_keeps_a_tenth_of_every_class_by_default(phantom):
    """The Segmenter's stage 3 keeps each predicted class's most confident tenth as
    targets (``class_keep=0.1``) even where no voxel passes the threshold; 0 is the
    paper's plain threshold, which then masks everything."""
    tiny = {"patch": 32, "depth": 1, "f0": 2, "context": 1, "progress": False}
    masked = {}
    for keep in (None, 0.0):
        options = {} if keep is None else {"class_keep": keep}
        seg = xd.Segmenter(3, steps=1, steps_self_correct=2, threshold=1.0, **tiny, **options)
        masked[keep] = seg.fit(phantom.hq).history["stage3"]["masked_fraction"]
    assert all(0.8 <= m < 0.95 for m in masked[None]), masked
    assert masked[0.0] == [1.0, 1.0]


def test_pretraining_on_matched_pseudo_labels_comes_before_the_annotations(phantom):
    """``pretrain_steps``: the pseudo labels, their clusters matched to the annotated
    classes, train first; then the annotations for ``steps``."""
    tiny = {"patch": 32, "depth": 1, "f0": 2, "context": 1, "progress": False}
    truth = phantom.labels.values
    sparse = np.full_like(truth, 255)
    sparse[[8, 16]] = truth[[8, 16]]
    seg = xd.Segmenter(3, steps=3, pretrain_steps=4, **tiny).fit(phantom.hq, sparse)
    assert len(seg.history["pretrain"]["loss"]) == 4
    assert len(seg.history["stage2"]["loss"]) == 3 and seg.mode_ == "supervised"
    # what it pretrained on: pseudo labels in the annotations' class numbers
    pseudo = np.asarray(seg.pseudo_labeler_.predict(phantom.hq))
    inside = pseudo != 255  # outside the field of view stays unlabelled
    assert 0 < inside.mean() < 1
    mapping = xd.metrics.match_labels(
        np.where(inside, pseudo, 0), np.where(inside, sparse, 255), 3, 3
    )
    matched = np.asarray(xd.metrics.apply_mapping(pseudo, mapping))
    assert (matched[~inside] == 255).all()
    agree = (matched == truth)[inside].mean()
    raw_agree = (pseudo == truth)[inside].mean()
    assert agree > 0.8 and agree >= raw_agree
    with pytest.raises(ValueError, match="pretrain_steps"):
        xd.Segmenter(3, pretrain_steps=-1, **tiny).fit(phantom.hq, sparse)


def test_annotations_weigh_the_classes_pseudo_labels_do_not(unsupervised, phantom):
    """``class_weights="auto"``: median-frequency weights with annotations, so the
    smallest class weighs most; none with pseudo labels; ``False`` turns them off."""
    tiny = {"patch": 32, "depth": 1, "f0": 2, "context": 1, "progress": False}
    truth = phantom.labels.values
    sparse = np.full_like(truth, 255)
    sparse[[8, 16]] = truth[[8, 16]]
    weights = xd.Segmenter(3, steps=2, **tiny).fit(phantom.hq, sparse).history["stage2"]
    weights = np.asarray(weights["class_weights"])
    share = np.bincount(truth[[8, 16]].ravel(), minlength=3)
    assert weights.shape == (3,) and weights[share.argmin()] > weights[share.argmax()]
    off = xd.Segmenter(3, steps=2, class_weights=False, **tiny).fit(phantom.hq, sparse)
    assert off.history["stage2"]["class_weights"] == []
    assert unsupervised.history["stage2"]["class_weights"] == []
    with pytest.raises(ValueError, match="class_weights"):
        xd.Segmenter(3, class_weights="balanced", **tiny).fit(phantom.hq, sparse)


def test_self_training_follows_the_annotations_with_the_teacher(phantom):
    """``self_train_steps``: the labelled + unlabelled Unbiased Teacher after stage 2,
    with stage 2's class weights on the annotations; the teacher is what is kept."""
    tiny = {"patch": 32, "depth": 1, "f0": 2, "context": 1, "progress": False}
    truth = phantom.labels.values
    sparse = np.full_like(truth, 255)
    sparse[[8, 16]] = truth[[8, 16]]
    seg = xd.Segmenter(3, steps=2, self_train_steps=3, **tiny).fit(phantom.hq, sparse)
    history = seg.history["self_train"]
    assert len(history["loss"]) == 3 and len(history["masked_fraction"]) == 3
    assert history["class_weights"] == seg.history["stage2"]["class_weights"] != []
    assert not any(p.requires_grad for p in seg.network_.parameters())  # the EMA teacher
    assert seg.transform(phantom.hq[:4]).shape == (4, 96, 96)
    with pytest.raises(ValueError, match="self_train_steps"):
        xd.Segmenter(3, self_train_steps=-1, **tiny).fit(phantom.hq, sparse)


def test_stage3_steps_follow_the_volume_by_default(phantom):
    """``steps_self_correct="auto"``: four passes over the volume (here 32×96×96 at
    patch 32, batch 4: 72 steps a pass), kept as ``steps_self_correct_``; stage 3 runs
    exactly that many; a bad value is refused before any work."""
    from xctdask.selfcorrect import steps_for_volume

    tiny = {"patch": 32, "depth": 1, "f0": 2, "context": 1, "progress": False}
    seg = xd.Segmenter(3, steps=2, batch_size=4, **tiny)
    assert seg.steps_self_correct == "auto"
    seg.fit(phantom.hq)
    assert seg.steps_self_correct_ == 288 == steps_for_volume((32, 96, 96), (1, 32, 32), 4)
    assert len(seg.history["stage3"]["loss"]) == 288
    for bad in ("many", -1, 2.5, True):
        with pytest.raises(ValueError, match="steps_self_correct must be 'auto' or an integer"):
            xd.Segmenter(3, steps_self_correct=bad, **tiny).fit(phantom.hq)


def test_pseudo_labels_cluster_the_local_mean_when_asked(phantom):
    """``pseudo_sigma``: 0 by default (raw values); ``"auto"`` keeps the raw values of
    the clean HQ scan (fibres a few voxels across, little noise) and takes the local mean
    at scale 1 of a noisy copy (in-plane for a stack of slices); the value used is
    ``pseudo_sigma_``; annotations need no pseudo labels; bad values are refused before
    any work."""
    tiny = {"patch": 32, "depth": 1, "f0": 2, "context": 1, "progress": False}
    fast = {"steps": 2, "steps_self_correct": 0, **tiny}
    rng = np.random.default_rng(0)
    noisy = phantom.hq.values + rng.normal(0, 0.3, phantom.hq.shape).astype(np.float32)
    default = xd.Segmenter(3, **fast).fit(noisy)
    assert default.pseudo_sigma_ == 0.0 and default.pseudo_labeler_.features_ == ("intensity",)
    clean = xd.Segmenter(3, pseudo_sigma="auto", **fast).fit(phantom.hq)
    assert clean.pseudo_sigma_ == 0.0 and clean.pseudo_labeler_.features_ == ("intensity",)
    seg = xd.Segmenter(3, pseudo_sigma="auto", **fast).fit(noisy)
    assert seg.pseudo_sigma_ == 1.0 and seg.pseudo_labeler_.features_ == ("mean",)
    assert seg.pseudo_labeler_.sigma == 1.0
    slices = xd.Segmenter(3, pseudo_sigma=1.5, stack="slices", **fast).fit(noisy)
    assert slices.pseudo_labeler_.sigma == (0.0, 1.5, 1.5)
    annotated = xd.Segmenter(3, pseudo_sigma="auto", **fast).fit(noisy, phantom.labels.values)
    assert annotated.pseudo_sigma_ == 0.0
    for bad in ("wide", -1.0, True, 100):
        with pytest.raises(ValueError, match="pseudo_sigma must be"):
            xd.Segmenter(3, pseudo_sigma=bad, **fast).fit(noisy)
