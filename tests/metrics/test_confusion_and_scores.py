import dask.array as da
import numpy as np
import pytest
import xarray as xr
from sklearn import metrics as skm

from xctdask import metrics

N = 4
RNG = np.random.default_rng(0)
TRUTH = RNG.integers(0, N, (9, 10, 11)).astype(np.uint8)
PRED = np.where(RNG.random(TRUTH.shape) < 0.6, TRUTH, RNG.integers(0, N, TRUTH.shape)).astype(
    np.uint8
)
T, P = TRUTH.ravel(), PRED.ravel()


def _inputs(kind):
    if kind == "numpy":
        return PRED, TRUTH
    if kind == "dask":  # different chunkings on purpose
        return da.from_array(PRED, chunks=(4, 5, 6)), da.from_array(TRUTH, chunks=(3, 10, 4))
    return (
        xr.DataArray(da.from_array(PRED, chunks=5), dims=("z", "y", "x")),
        xr.DataArray(TRUTH, dims=("z", "y", "x")),
    )


KINDS = ["numpy", "dask", "dataarray"]


def _value(x):
    return np.asarray(x.compute() if hasattr(x, "compute") else x)


@pytest.mark.parametrize("kind", KINDS)
def test_confusion_matrix_equals_sklearn(kind):
    pred, truth = _inputs(kind)
    cm = _value(metrics.confusion_matrix(pred, truth, N))
    np.testing.assert_array_equal(cm, skm.confusion_matrix(T, P, labels=range(N)))


@pytest.mark.parametrize("kind", KINDS)
def test_iou_dice_prf_accuracy_equal_sklearn(kind):
    pred, truth = _inputs(kind)
    np.testing.assert_array_equal(
        _value(metrics.iou(pred, truth, N)), skm.jaccard_score(T, P, average=None)
    )
    assert _value(metrics.mean_iou(pred, truth, N)) == skm.jaccard_score(T, P, average="macro")
    np.testing.assert_array_equal(
        _value(metrics.dice(pred, truth, N)), skm.f1_score(T, P, average=None)
    )
    precision, recall, f1 = (_value(x) for x in metrics.precision_recall_f1(pred, truth, N))
    sk_p, sk_r, sk_f, _ = skm.precision_recall_fscore_support(T, P, labels=range(N))
    np.testing.assert_array_equal(precision, sk_p)
    np.testing.assert_array_equal(recall, sk_r)
    np.testing.assert_array_equal(f1, sk_f)
    assert _value(metrics.pixel_accuracy(pred, truth, N)) == skm.accuracy_score(T, P)


def test_everything_stays_lazy_on_dask(no_compute):
    pred, truth = _inputs("dask")
    with no_compute():
        results = [
            metrics.confusion_matrix(pred, truth, N),
            metrics.iou(pred, truth, N),
            metrics.mean_iou(pred, truth, N),
            metrics.dice(pred, truth, N),
            metrics.pixel_accuracy(pred, truth, N),
            *metrics.precision_recall_f1(pred, truth, N),
            metrics.psnr(pred.astype(float), truth.astype(float)),
            metrics.ssim(pred.astype(float), truth.astype(float)),
            metrics.apply_mapping(pred, np.array([1, 0, 3, 2])),
        ]
    assert all(isinstance(r, da.Array) for r in results)


def test_ignore_index_skips_unlabelled_voxels():
    truth = TRUTH.copy()
    truth[:3] = 255
    keep = truth.ravel() != 255
    cm = metrics.confusion_matrix(PRED, truth, N)
    np.testing.assert_array_equal(
        cm, skm.confusion_matrix(truth.ravel()[keep], P[keep], labels=range(N))
    )


def test_absent_class_is_nan_and_left_out_of_the_mean():
    pred, truth = np.array([0, 0, 1]), np.array([0, 1, 1])
    scores = metrics.iou(pred, truth, 3)
    assert np.isnan(scores[2])
    assert metrics.mean_iou(pred, truth, 3) == pytest.approx(np.mean(scores[:2]))


def test_out_of_range_labels_raise_numpy_and_dask():
    bad = TRUTH.copy()
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"label 7, outside 0\.\.3"):
        metrics.confusion_matrix(PRED, bad, N)
    lazy = metrics.confusion_matrix(da.from_array(PRED, chunks=4), da.from_array(bad, chunks=4), N)
    with pytest.raises(ValueError, match="label 7"):
        lazy.compute()


def test_an_unlabelled_prediction_says_how_to_score_it():
    pred = PRED.copy()
    pred[0, 0, 0] = 255  # a NaN voxel of the scan, as predict leaves it
    with pytest.raises(ValueError, match=r"255 = unlabelled.*set the truth to 255 there"):
        metrics.confusion_matrix(pred, TRUTH, N)
    truth = TRUTH.copy()
    truth[0, 0, 0] = 255  # the advice: then the voxel is not scored
    expected = metrics.confusion_matrix(PRED, truth, N)
    np.testing.assert_array_equal(metrics.confusion_matrix(pred, truth, N), expected)


def test_shape_mismatch_and_bad_dtype():
    with pytest.raises(ValueError, match="does not match"):
        metrics.mean_iou(PRED[:-1], TRUTH, N)
    with pytest.raises(TypeError, match="integer labels"):
        metrics.mean_iou(PRED.astype(float), TRUTH, N)
    with pytest.raises(ValueError, match=r"1\.\.255"):
        metrics.confusion_matrix(PRED, TRUTH, 0)
    for score in (metrics.mean_iou, metrics.iou, metrics.dice, metrics.pixel_accuracy):
        with pytest.raises(ValueError, match=r"^n_classes must be an integer in 1\.\.255"):
            score(PRED, TRUTH, "3")  # named as the caller named it


def test_inputs_are_not_modified():
    pred, truth = PRED.copy(), TRUTH.copy()
    metrics.classification_report(pred, truth, N)
    np.testing.assert_array_equal(pred, PRED)
    np.testing.assert_array_equal(truth, TRUTH)


def test_classification_report_dict_matches_sklearn():
    report = metrics.classification_report(PRED, TRUTH, N, class_names=list("abcd"), as_dict=True)
    sk = skm.classification_report(T, P, target_names=list("abcd"), output_dict=True)
    for name in "abcd":
        assert report[name]["precision"] == pytest.approx(sk[name]["precision"])
        assert report[name]["support"] == sk[name]["support"]
    assert report["accuracy"] == pytest.approx(sk["accuracy"])


@pytest.mark.parametrize(
    ("names", "match"),
    [
        (["pore", "pore", "fibre"], "pore repeated"),  # one row, means over 2 classes
        (["mean", "matrix", "fibre"], "mean cannot name a class"),  # hid the mean row
        (["pore", "matrix"], "2 class names for 3 classes"),
    ],
)
def test_class_names_that_would_drop_a_row_are_refused(names, match):
    """The report is keyed by class name: a repeated name silently merged two classes'
    rows and took the means over fewer classes; a class called "mean" replaced the
    mean row."""
    truth = np.array([0, 1, 2, 2])
    with pytest.raises(ValueError, match=match):
        metrics.classification_report(truth, truth, 3, class_names=names, as_dict=True)
