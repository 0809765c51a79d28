import numpy as np
import pytest

from xctdask import metrics, phantoms
from xctdask.phantoms.geometry import GEOMETRIES

SHAPE = (6, 160, 160)


@pytest.fixture(scope="module", params=phantoms.KINDS)
def phantom(request):
    return phantoms.make(request.param, SHAPE, seed=3)


def test_variables_dtypes_and_shapes(phantom):
    assert phantom.labels.dtype == np.uint8
    for name in ("attenuation", "hq", "lq"):
        assert phantom[name].dtype == np.float32
        assert phantom[name].shape == SHAPE
    assert phantom.labels.values.max() < len(phantom.attrs["class_names"])


def test_every_class_is_present(phantom):
    counts = np.bincount(phantom.labels.values.ravel(), minlength=phantom.attrs["n_classes"])
    assert (counts > 0).all(), counts


def test_lq_is_clearly_worse_than_hq(phantom):
    truth = phantom.attenuation.values
    data_range = float(truth.max() - truth.min())
    hq = float(metrics.psnr(phantom.hq.values, truth, data_range=data_range))
    lq = float(metrics.psnr(phantom.lq.values, truth, data_range=data_range))
    assert hq > 24
    assert hq - lq > 6, (hq, lq)


def test_reconstruction_tracks_the_attenuation(phantom):
    # HQ reconstructions are in the same units as the attenuation map
    labels, hq = phantom.labels.values, phantom.hq.values
    mu = GEOMETRIES[phantom.attrs["kind"]].mu
    for c in np.unique(labels):
        if mu[c] > 0 and phantom.attrs["kind"] != "crystal":
            assert abs(np.median(hq[labels == c]) - mu[c]) < 0.15 * max(mu)


def test_deterministic_by_seed_and_independent_of_chunks():
    a = phantoms.make("corrosion", (6, 64, 64), seed=5, chunks=2)
    b = phantoms.make("corrosion", (6, 64, 64), seed=5, chunks=5)
    c = phantoms.make("corrosion", (6, 64, 64), seed=6, chunks=2)
    for name in ("labels", "hq", "lq"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert not np.array_equal(a.lq.values, c.lq.values)


def test_lazy_phantom_is_dask_backed(no_compute):
    with no_compute():
        ds = phantoms.make("crystal", (4, 32, 32), seed=0, lazy=True)
    assert ds.hq.chunks is not None


@pytest.mark.parametrize(
    ("kind", "ranges"),
    [
        ("fibre-composite", {"fibre": (0.10, 0.17), "pore": (0.005, 0.02)}),
        ("corrosion", {"metal": (0.5, 0.7), "deposit": (0.3, 0.48), "air pocket": (0.001, 0.03)}),
        ("crystal", {"intergrowth": (0.04, 0.22)}),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_documented_class_fractions(kind, ranges, seed):
    shape = (16, 128, 128)
    geometry = GEOMETRIES[kind](shape=shape, seed=seed)
    labels = geometry.labels(0, shape[0])
    names = list(geometry.class_names)
    if kind == "fibre-composite":
        yy, xx = np.mgrid[: shape[1], : shape[2]]
        inside = np.hypot(yy - (shape[1] - 1) / 2, xx - (shape[2] - 1) / 2) <= geometry.r_sample
        inside = np.broadcast_to(inside, labels.shape)
        n = inside.sum()
        fractions = {
            "fibre": ((labels == 2) & inside).sum() / n,
            "pore": ((labels == 0) & inside).sum() / n,
        }
    else:
        n = (labels > 0).sum()
        fractions = {name: (labels == i).sum() / n for i, name in enumerate(names) if i > 0}
    for name, (lo, hi) in ranges.items():
        assert lo <= fractions[name] <= hi, (name, fractions[name])


def test_crystal_drift_defeats_a_global_threshold():
    ds = phantoms.make("crystal", (8, 128, 128), seed=0)
    zoc = metrics.bin_zero_oc(ds.attenuation.values, ds.labels.values, 3)
    assert zoc.iou[2] < 0.8  # even the noise-free map cannot be thresholded


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "sponge"}, "unknown phantom kind"),
        ({"shape": (4, 8, 8)}, "at least 16"),
        ({"shape": (4, 32)}, "three positive integer sizes"),
        ({"shape": (4.5, 32, 32)}, "three positive integer sizes"),  # gave 4 slices silently
        ({"seed": -1}, "seed must be an integer ≥ 0"),  # said numpy's "expected non-negative"
        ({"chunks": 0}, "chunks"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        phantoms.make(**{"kind": "crystal", "shape": (4, 32, 32), **kwargs})
