"""Each study end to end at the tiny size: the JSON's shape and sanity, files written.

Real training (tiny networks, a few steps), real phantoms; the assertions are on the
numbers, not on figure pixels.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from xctdask.studies import STUDIES, run_study
from xctdask.studies.common import load_data


@pytest.fixture(scope="module")
def data():
    return load_data(size="tiny", seed=0)


def _unit(values):
    return all(v is None or 0.0 <= v <= 1.0 for v in values)


def _saved(result, tmp_path):
    path = result.save(tmp_path)
    body = json.loads(path.read_text())
    assert body["study"] == result.study
    for name in body["figures"]:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / f"{result.study}.txt").read_text().strip() == result.summary.strip()
    return body


def test_learning_curve(data, tmp_path):
    result = run_study("learning-curve", data=data, size="tiny", counts=[1, 3], progress=False)
    body = _saved(result, tmp_path)
    first_test = body["settings"]["test_slices"][0]
    assert [p["slices"] for p in body["points"]] == [1, 3]
    for point in body["points"]:
        assert len(point["z"]) == point["slices"] and max(point["z"]) < first_test - 1
        assert len(point["iou"]) == 3 and _unit(point["iou"]) and _unit([point["mean_iou"]])
    # the contiguous slices of 3 contain the single slice's neighbours
    assert np.ptp(body["points"][1]["z"]) == 2
    zero = body["baselines"]["zero_oc"]
    assert zero["iou"].count(0.0) == 2  # the majority class only
    assert body["baselines"]["bin_zero_oc"]["mean_iou"] >= zero["mean_iou"]
    with pytest.raises(ValueError, match="slice counts"):
        run_study("learning-curve", data=data, size="tiny", counts=[99], progress=False)


def test_data_fraction(data, tmp_path):
    result = run_study(
        "data-fraction", data=data, size="tiny", fractions=[0.5, 1.0], progress=False
    )
    body = _saved(result, tmp_path)
    assert set(body["curves"]) == {"unet", "pix2pix"}
    for points in body["curves"].values():
        assert [p["fraction"] for p in points] == [0.5, 1.0]
        assert points[0]["slices"] < points[1]["slices"]
        assert all(_unit([p["mean_dice"], *p["dice"]]) for p in points)
    with pytest.raises(ValueError, match="unknown models"):
        run_study("data-fraction", data=data, size="tiny", models=("vgg",), progress=False)


def test_noise_robustness(data, tmp_path):
    result = run_study(
        "noise-robustness",
        data=data,
        size="tiny",
        fractions=(0.0, 1.0),
        test_sigmas=(0.0, 3.0),
        progress=False,
    )
    body = _saved(result, tmp_path)
    assert [row["fraction"] for row in body["table"]] == [0.0, 1.0]
    for row in body["table"]:
        assert [t["sigma"] for t in row["test"]] == [0.0, 3.0]
        assert all(_unit([t["accuracy"], t["mean_iou"]]) for t in row["test"])
    with pytest.raises(ValueError, match="fractions"):
        run_study("noise-robustness", data=data, size="tiny", fractions=(1.5,), progress=False)


def test_stage2_duration(data, tmp_path):
    result = run_study("stage2-duration", data=data, size="tiny", snapshots=3, progress=False)
    body = _saved(result, tmp_path)
    assert [p["stage2_step"] for p in body["points"]] == [1, 2, 3]
    # the phantom's phases are separable by intensity: k-means pseudo labels find them
    assert body["pseudo_labels"]["mean_iou"] > 0.5
    for p in body["points"]:
        assert _unit([p["stage2_confidence"], p["stage2"]["mean_iou"], p["stage3"]["mean_iou"]])
        assert sorted(set(p["stage3"]["mapping"])) <= [0, 1, 2]


def test_gradcam(data, tmp_path):
    result = run_study("gradcam", data=data, size="tiny", progress=False)
    body = _saved(result, tmp_path)
    assert body["slice"] == data.image.shape[0] // 2
    for stage in ("stage2", "stage3"):
        corr = body[stage]["correlation"]
        assert len(corr) == 3 and all(c is None or -1 <= c <= 1 for c in corr)
    assert body["figures"] == ["gradcam-slice.png"]


def test_report_study_is_consistent(data, tmp_path):
    result = run_study("report", data=data, size="tiny", progress=False)
    body = _saved(result, tmp_path)
    cm = np.array(body["confusion"])
    table = body["table"]
    assert table["support"] == cm.sum() == sum(r["support"] for r in table["classes"].values())
    assert table["micro"]["f1"] == pytest.approx(np.trace(cm) / cm.sum())
    by_row = np.array(body["confusion_by_row"], dtype=float)
    present = cm.sum(1) > 0
    np.testing.assert_allclose(np.nansum(by_row[present], 1), 1.0)
    assert np.sum(body["histogram"]["normalised_over_all_classes"]) == pytest.approx(1.0)


def test_every_study_is_registered_and_unknown_names_are_refused():
    assert len(STUDIES) == 7
    with pytest.raises(ValueError, match="unknown study"):
        run_study("learning_curve")


def test_a_user_volume_without_labels_is_refused_before_training(tmp_path):
    image = np.random.default_rng(0).random((12, 32, 32), dtype=np.float32)
    user = load_data(image, n_classes=2)
    with pytest.raises(ValueError, match="true labels"):
        run_study("learning-curve", data=user, size="tiny", progress=False)
    with pytest.raises(ValueError, match="how many classes"):
        load_data(image)


def test_the_study_command_on_a_users_zarr_volume(tmp_path, capsys):
    """``xctdask study`` on Zarr stores a user would have: JSON, PNGs, summary."""
    from xctdask.cli import main
    from xctdask.io import save_volume
    from xctdask.phantoms import make

    ds = make("crystal", (12, 40, 40), seed=3)
    save_volume(ds.lq.values, tmp_path / "scan.zarr", progress=False)
    save_volume(ds.labels.values, tmp_path / "truth.zarr", progress=False)
    out = tmp_path / "out"
    args = ["study", "over-classes", "--volume", str(tmp_path / "scan.zarr"), "--labels",
            str(tmp_path / "truth.zarr"), "--size", "tiny", "--set", "clusters=[4]",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    body = json.loads((out / "over-classes.json").read_text())
    (run,) = body["runs"]
    matrix = np.array(run["cluster_to_class"])
    assert matrix.shape == (4, 4) and matrix.sum() == 12 * 40 * 40
    assert np.array(run["class_to_truth"]).shape == (4, ds.attrs["n_classes"])
    assert 1 <= run["stage3_classes_used"] <= 4
    assert "over-specified classes" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.png")) == [
        "over-classes-K4-truth.png",
        "over-classes-K4.png",
    ]
    # an output inside an input is refused before any work
    inside = str(tmp_path / "scan.zarr" / "study")
    assert main([*args[:-1], inside]) == 2
    assert "refusing to write" in capsys.readouterr().err
    # a second run into the same folder is refused before any work, then replaces it
    before = (out / "over-classes.json").read_text()
    assert main(args) == 2
    assert "over-classes.json exists" in capsys.readouterr().err
    assert (out / "over-classes.json").read_text() == before
    assert main([*args, "--set", "clusters=[3]", "--overwrite"]) == 0
    assert len(json.loads((out / "over-classes.json").read_text())["runs"]) == 1
    assert "K3" in json.dumps(json.loads((out / "over-classes.json").read_text())["figures"])
    # a volume without labels needs a class count, asked for by its flag once
    assert main(["study", "learning-curve", "--volume", str(tmp_path / "scan.zarr")]) == 2
    assert capsys.readouterr().err.rstrip().endswith("say how many classes: --classes")


def test_the_report_command(tmp_path, capsys):
    from xctdask.cli import main
    from xctdask.io import save_volume

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (4, 16, 16)).astype(np.uint8)
    pred = np.where(rng.random(truth.shape) < 0.8, truth, 0).astype(np.uint8)
    image = (truth * 50 + rng.integers(0, 30, truth.shape)).astype(np.uint8)
    for name, data in (("pred", pred), ("truth", truth), ("image", image)):
        save_volume(data, tmp_path / f"{name}.zarr", progress=False)
    code = main(["report", str(tmp_path / "pred.zarr"), str(tmp_path / "truth.zarr"),
                 "--class-names", "air,matrix,fibre", "--image", str(tmp_path / "image.zarr"),
                 "--out", str(tmp_path / "r")])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split()[:2] == ["class", "accuracy"] and "macro avg." in text
    body = json.loads((tmp_path / "r" / "report.json").read_text())
    assert body["table"]["micro"]["f1"] == pytest.approx(np.mean(pred == truth))
    assert main(["report", str(tmp_path / "pred.zarr"), str(tmp_path / "truth.zarr")]) == 2
    assert "--classes" in capsys.readouterr().err
    # an earlier report in --out is kept unless --overwrite
    again = ["report", str(tmp_path / "truth.zarr"), str(tmp_path / "truth.zarr"),
             "--classes", "3", "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(again) == 2
    assert "report.json exists" in capsys.readouterr().err
    assert json.loads((tmp_path / "r" / "report.json").read_text()) == body
    assert main([*again, "--overwrite"]) == 0
    assert json.loads((tmp_path / "r" / "report.json").read_text()) != body
    # a file where the folder goes is refused before the report is computed
    (tmp_path / "file").write_text("x")
    assert main([*again[:-1], str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("study", "options", "match"),
    [
        ("data-fraction", {"fractions": []}, "fractions is empty"),
        ("data-fraction", {"fractions": [0.5, 0.5]}, "fractions repeat"),
        ("data-fraction", {"fractions": [0.0, 1.0]}, "0 trains on nothing"),
        ("data-fraction", {"models": ()}, "models is empty"),
        ("data-fraction", {"test_fraction": 0}, "test_fraction must be a number in"),
        ("learning-curve", {"counts": []}, "slice counts is empty"),
        ("learning-curve", {"counts": [1.5]}, "whole numbers"),
        ("learning-curve", {"test_fraction": -0.5}, "test_fraction must"),
        ("noise-robustness", {"test_sigmas": (float("nan"),)}, "test_sigmas must be numbers"),
        ("noise-robustness", {"fractions": ()}, "fractions is empty"),
        ("noise-robustness", {"sigma_max": float("nan")}, "sigma_max must be a number"),
        ("over-classes", {"clusters": ()}, "cluster counts is empty"),
        ("over-classes", {"clusters": (2.5,)}, "whole numbers in"),
        ("stage2-duration", {"snapshots": 1.5}, "snapshots must be a whole number"),
        ("gradcam", {"slice_index": 1.5}, "slice_index must be a whole number"),
        ("report", {"test_fraction": 1.0}, "test_fraction must"),
        ("report", {"size": "huge"}, "size must be one of tiny, small, medium"),
    ],
)
def test_bad_study_options_are_refused_before_training(data, study, options, match):
    """An empty list, a repeat, a non-number or a fraction of 0 (which silently held out
    one slice) is refused in the option's name; a NaN noise level used to train every
    network and then fail on the scoring."""
    options = {"size": "tiny", **options}
    with pytest.raises(ValueError, match=match):
        run_study(study, data=data, progress=False, **options)


@pytest.mark.parametrize(
    ("labels", "options", "match"),
    [
        (lambda lab: lab.astype(np.int16) - 1, {}, "values from -1 to 0"),
        (lambda lab: lab.astype(np.int16) * 300, {}, "values from 0 to 300"),
        (lambda lab: np.full_like(lab, 255), {}, "no labelled voxel"),
        (lambda lab: lab, {"n_classes": 1}, "n_classes must be a whole number in 2..255"),
        (None, {"n_classes": 2.5}, "n_classes must be a whole number"),
    ],
)
def test_labels_a_study_cannot_use_are_refused_when_loaded(labels, options, match):
    """Labels of -1 or 300 became 255 (unlabelled) and 44 in uint8 without a word; labels
    with nothing labelled made a study of 0 classes; 2.5 classes became 2."""
    image = np.random.default_rng(0).random((12, 32, 32), dtype=np.float32)
    truth = (image > 0.5).astype(np.uint8)
    with pytest.raises(ValueError, match=match):
        load_data(image, None if labels is None else labels(truth), **options)
    with pytest.raises(ValueError, match="no finite voxel"):
        load_data(np.full_like(image, np.nan), truth)
