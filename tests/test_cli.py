import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from xctdask.cli import main
from xctdask.io import open_volume, save_volume


def _run(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "xctdask.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_info_prints_shape_dtype_range(tmp_path, capsys):
    volume = np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6)
    save_volume(volume, tmp_path / "v.zarr", chunks=(2, 5, 6), progress=False)
    assert main(["info", str(tmp_path / "v.zarr")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [4, 5, 6] and info["dtype"] == "uint16"
    assert info["storage_chunks"] == [2, 5, 6] and (info["min"], info["max"]) == (0, 119)
    # --check verifies Zarr chunks: a TIFF is refused in words, before any cluster
    tifffile.imwrite(tmp_path / "v.tif", np.zeros((6, 5, 6), np.uint16))
    assert main(["info", str(tmp_path / "v.tif"), "--check"]) == 2
    err = capsys.readouterr().err
    assert "--check verifies the chunks of a Zarr store" in err and "dashboard" not in err


def test_convert_tiff_to_zarr_in_process(tmp_path, client, capsys):
    volume = np.random.default_rng(0).integers(0, 255, (6, 8, 8)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "v.tif", volume)
    out = tmp_path / "v.zarr"
    assert (
        main(
            [
                "convert",
                str(tmp_path / "v.tif"),
                str(out),
                "--chunks",
                "2",
                "8",
                "8",
                "--voxel-size",
                "0.5",
                "--unit",
                "um",
            ]
        )
        == 0
    )
    back = open_volume(out)
    np.testing.assert_array_equal(back.values, volume)
    assert back.attrs["voxel_size"] == (0.5, 0.5, 0.5)
    assert "3 chunks written" in capsys.readouterr().out
    # a second convert to the same output is refused, and the output is kept
    assert main(["convert", str(tmp_path / "v.tif"), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    np.testing.assert_array_equal(open_volume(out).values, volume)


def test_unknown_format_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "x.abc").write_text("x")
    assert main(["info", str(tmp_path / "x.abc")]) == 2
    assert "unknown volume format" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_command_end_to_end(tmp_path):
    out = tmp_path / "demo"
    small = ("--shape", "24", "64", "64", "--steps", "30", "--steps-self-correct", "10")
    result = _run("demo", "--out", str(out), *small, "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "Dask dashboard" in result.stderr
    report = json.loads((out / "report.json").read_text())
    assert json.loads(result.stdout) == report  # stdout is the report, progress on stderr
    assert report["hq"]["psnr_db"] > report["lq"]["psnr_db"]
    # stage 1 on the HQ scan is close to its intensity-only ceiling
    assert report["hq"]["pseudo_labels_miou"] > 0.8
    assert open_volume(out / "pseudo_labels_lq.zarr").dtype == np.uint8
    assert open_volume(out / "labels.zarr").shape == (24, 64, 64)
    assert open_volume(out / "hq.zarr", level=1).shape == (12, 32, 32)
    final = open_volume(out / "segmented_lq.zarr").values
    assert final.shape == (24, 64, 64) and final.max() < 3
    assert 0 <= report["lq"]["final_labels_miou"] <= 1
    ious = report["lq"]["final_labels_iou"]  # per class, next to the mean
    assert len(ious) == 3 and report["lq"]["final_labels_miou"] == round(np.nanmean(ious), 4)
    assert open_volume(out / "segmented_lq.zarr", level=1).shape == (12, 32, 32)  # OME-Zarr
    markdown = (out / "report.md").read_text()
    assert "napari" in markdown and "Bin-ZeroOC" in markdown and "montage.png" in markdown
    for figure in report["figures"]:
        assert Path(figure).read_bytes()[:4] == b"\x89PNG"
    again = _run("demo", "--out", str(out), *small, "--workers", "1")
    assert again.returncode == 2 and "exists" in again.stderr


def test_phantom_command_against_a_scheduler_address(tmp_path, local_cluster):
    out = tmp_path / "ph"
    result = _run(
        "phantom",
        str(out),
        "--kind",
        "crystal",
        "--shape",
        "4",
        "32",
        "32",
        "--scheduler",
        local_cluster.scheduler_address,
    )
    assert result.returncode == 0, result.stderr
    assert open_volume(out / "lq.zarr").shape == (4, 32, 32)


def test_unreachable_scheduler_through_the_cli(tmp_path):
    result = _run("phantom", str(tmp_path / "p"), "--scheduler", "tcp://127.0.0.1:1")
    assert result.returncode == 2 and "cannot reach the Dask scheduler" in result.stderr
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--classes", "1"], "--classes must be in 2..255"),
        (["--classes", "300"], "--classes must be in 2..255"),
        (["--bins", "8"], "--bins must be an integer ≥ 16, got 8"),
    ],
)
def test_pseudo_labels_settings_are_refused_in_flag_words_before_a_cluster(
    tmp_path, capsys, flags, said
):
    save_volume(np.arange(64, dtype=np.uint16).reshape(1, 8, 8), tmp_path / "v.zarr")
    argv = ["pseudo-labels", str(tmp_path / "v.zarr"), str(tmp_path / "p.zarr"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert said in err and "n_classes" not in err
    assert "Dask dashboard" not in err  # refused before the cluster started
    assert not (tmp_path / "p.zarr").exists()


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["segment", "--steps", "0"], "--steps must be an integer ≥ 1, got 0"),
        (["segment", "--batch-size", "0"], "--batch-size must be an integer ≥ 1"),
        (["segment", "--overlap", "1"], "--overlap must be in [0.0, 1.0)"),
        (["segment", "--model", "nope"], "(with --clean, the stacked network is used)"),
        (["predict", "--batch-size", "0"], "--batch-size must be a positive integer"),
        (["predict", "--tile", "0"], "--tile must be a positive int"),
    ],
)
def test_bad_settings_are_named_by_their_flags(tmp_path, capsys, argv, said):
    from xctdask import models

    save_volume(np.arange(256, dtype=np.uint16).reshape(4, 8, 8), tmp_path / "v.zarr")
    command, *flags = argv
    paths = [str(tmp_path / "v.zarr"), str(tmp_path / "out.zarr")]
    if command == "predict":
        net = models.build("unet2d", 1, 2, depth=1, f0=2)
        models.save(net, tmp_path / "net.pt")
        paths.insert(1, str(tmp_path / "net.pt"))
    assert main([command, *paths, *flags]) == 2
    err = capsys.readouterr().err
    assert said in err and "_size" not in err
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("command", ["train", "segment", "pseudo-labels"])
def test_a_folder_given_for_a_file_is_refused_before_any_work(tmp_path, capsys, command):
    save_volume(np.arange(256, dtype=np.uint16).reshape(4, 8, 8), tmp_path / "v.zarr")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("kept")
    argv = [command, str(tmp_path / "v.zarr")]
    if command == "train":
        argv += [str(tmp_path / "folder")]
    elif command == "segment":
        argv += [str(tmp_path / "out.zarr"), "--save-segmenter", str(tmp_path / "folder")]
    else:
        argv += [str(tmp_path / "out.zarr"), "--save-model", str(tmp_path / "folder")]
    assert main([*argv, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "is a folder; give a file name inside it" in err and "Dask dashboard" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "v.zarr"]
    assert (tmp_path / "folder" / "keep.txt").read_text() == "kept"


@pytest.mark.parametrize("command", ["train", "segment"])
@pytest.mark.parametrize("flag", ["--labels", "--clean"])
def test_training_inputs_of_another_shape_are_refused_before_a_cluster(
    tmp_path, capsys, command, flag
):
    save_volume(np.zeros((8, 16, 16), np.float32), tmp_path / "v.zarr")
    save_volume(np.zeros((4, 16, 16), np.uint8), tmp_path / "short.zarr")
    out = str(tmp_path / ("seg.pt" if command == "train" else "out.zarr"))
    argv = [command, str(tmp_path / "v.zarr"), out, "--classes", "2", flag]
    assert main([*argv, str(tmp_path / "short.zarr")]) == 2
    err = capsys.readouterr().err
    name = flag.lstrip("-")
    assert f"{name} shape (4, 16, 16) does not match volume shape (8, 16, 16)" in err
    assert "dashboard" not in err  # said before a cluster started
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.zarr", "v.zarr"]


@pytest.mark.parametrize("command", ["segment", "pseudo-labels", "predict", "convert"])
def test_an_output_named_like_a_tiff_is_refused_before_any_work(tmp_path, capsys, command):
    save_volume(np.arange(256, dtype=np.uint16).reshape(4, 8, 8), tmp_path / "v.zarr")
    argv = [command, str(tmp_path / "v.zarr"), str(tmp_path / "labels.tif")]
    if command == "predict":
        from xctdask import models

        models.save(models.build("unet2d", 1, 2, depth=1, f0=2), tmp_path / "net.pt")
        argv.insert(2, str(tmp_path / "net.pt"))
    if command in ("segment", "pseudo-labels"):
        argv += ["--classes", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "labels.tif names a .tif file, but xctdask writes Zarr stores" in err
    assert "Dask dashboard" not in err  # no cluster was started
    assert (
        sorted(p.name for p in tmp_path.iterdir()) == ["net.pt", "v.zarr"][command != "predict" :]
    )


@pytest.mark.parametrize("argv", [["phantom", "ph.tif"], ["demo", "--out", "run.h5"]])
def test_a_folder_of_stores_named_like_a_file_is_refused_before_any_work(
    tmp_path, capsys, argv, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "but it would be a folder of Zarr stores: choose a name without" in err
    assert "dashboard" not in err and not any(tmp_path.iterdir())


def test_pseudo_labels_command(tmp_path, client, capsys):
    from xctdask import phantoms
    from xctdask.pseudolabels import PseudoLabeler, pseudo_labels

    ds = phantoms.make("corrosion", (8, 64, 64), seed=2)
    save_volume(ds.hq, tmp_path / "hq.zarr")
    out, model = tmp_path / "labels.zarr", tmp_path / "model.json"
    argv = [
        "pseudo-labels",
        str(tmp_path / "hq.zarr"),
        str(out),
        "--classes",
        "3",
        "--method",
        "otsu",
        "--mask",
        "cylinder",
        "--save-model",
        str(model),
        "--scheduler",
        client.scheduler.address,
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "otsu" and len(summary["thresholds"]) == 2
    labels = open_volume(out).values
    np.testing.assert_array_equal(labels, pseudo_labels(ds.hq.values, 3, "otsu", mask="cylinder"))
    assert PseudoLabeler.load(model).n_classes_ == 3
    before = labels.copy()
    assert main(argv) == 2  # the output exists: refused, nothing touched
    assert "exists" in capsys.readouterr().err
    np.testing.assert_array_equal(open_volume(out).values, before)
    assert (
        main(
            ["pseudo-labels", str(tmp_path / "hq.zarr"), str(tmp_path / "x.zarr"), "--classes", "1"]
        )
        == 2
    )
    assert "2..255" in capsys.readouterr().err
    local = ["--features", "mean", "--scheduler", client.scheduler.address]
    source, smoothed = str(tmp_path / "hq.zarr"), tmp_path / "mean.zarr"
    argv = [
        "pseudo-labels",
        source,
        str(smoothed),
        "--classes",
        "3",
        *local,
        "--sigma",
        "0",
        "1",
        "1",
    ]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["sigma"] == [0.0, 1.0, 1.0]
    expected = PseudoLabeler(3, features="mean", sigma=(0, 1, 1)).fit_predict(ds.hq.values)
    np.testing.assert_array_equal(open_volume(smoothed).values, expected)
    bad = ["pseudo-labels", source, str(tmp_path / "y.zarr"), *local]
    assert main([*bad, "--sigma", "1", "1"]) == 2
    assert "--sigma must be a positive number or three" in capsys.readouterr().err
    assert main([*bad[:-4], "--sigma", "2"]) == 2  # without --features mean
    assert "--sigma must go with" in (err := capsys.readouterr().err) and "--features mean" in err
    assert not (tmp_path / "y.zarr").exists()


def test_predict_command(tmp_path, client, capsys):
    import torch

    import xctdask as xd

    torch.manual_seed(0)
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=4, context=3)
    net.normalization = (0.0, 1.0)
    model = xd.models.save(net, tmp_path / "net.pt")
    vol = np.random.default_rng(0).normal(size=(6, 40, 48)).astype(np.float32)
    save_volume(vol, tmp_path / "vol.zarr", chunks=(3, 40, 48))
    out = tmp_path / "labels.zarr"
    argv = ["predict", str(tmp_path / "vol.zarr"), str(model), str(out), "--tile", "32"]
    argv += ["--scheduler", client.scheduler.address]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tiles"] == 6 * 2 * 2
    expected = xd.predict(vol, net.eval(), tile=32, normalize=(0.0, 1.0))
    np.testing.assert_array_equal(open_volume(out).values, expected.compute().values)
    assert main(argv) == 2  # the output exists: refused
    assert "exists" in capsys.readouterr().err
    if not torch.cuda.is_available():
        # with --scheduler the workers' devices count: the graph is built against them,
        # and their own error comes back in the flag's words
        gpu = [*argv[:3], str(tmp_path / "gpu.zarr"), "--tile", "32", "--device", "cuda"]
        assert main([*gpu, *argv[-2:]]) == 2
        assert "--device must be one this process has" in capsys.readouterr().err
        # without, the local cluster runs here: refused before it starts, nothing written
        assert main(gpu) == 2
        assert "--device must be one this process has" in capsys.readouterr().err
        assert main([*gpu[:-1], "tpu"]) == 2
        assert "--device must be 'auto'" in capsys.readouterr().err
        assert not (tmp_path / "gpu.zarr").exists()
    probabilities = tmp_path / "p.zarr"
    argv = ["predict", str(tmp_path / "vol.zarr"), str(model), str(probabilities)]
    assert main([*argv, "--output", "confidence", "--tile", "32"]) == 0
    confidence = open_volume(probabilities).values
    assert confidence.dtype == np.float32 and (confidence >= 1 / 3 - 1e-6).all()
    capsys.readouterr()
    assert (
        main(
            [
                "predict",
                str(tmp_path / "vol.zarr"),
                str(tmp_path / "none.pt"),
                str(tmp_path / "o.zarr"),
            ]
        )
        == 2
    )
    assert "no model file" in capsys.readouterr().err


def _not_json(constant: str):
    raise AssertionError(f"{constant} is not JSON: strict parsers refuse it")


FAST_TRAIN = ["--classes", "3", "--steps", "20", "--steps-self-correct", "5", "--patch", "32"]
FAST_TRAIN += ["--depth", "2", "--f0", "4", "--context", "3", "--tile", "64"]


def test_train_then_segment_with_the_saved_segmenter(tmp_path, client, capsys):
    from xctdask import phantoms

    ds = phantoms.make("fibre-composite", (24, 64, 64), seed=4)
    save_volume(ds.hq, tmp_path / "hq.zarr", chunks=(8, 64, 64), progress=False)
    save_volume(ds.lq, tmp_path / "lq.zarr", chunks=(8, 64, 64), progress=False)
    truth = ds.labels.values
    sparse = np.full_like(truth, 255)
    sparse[[4, 12, 20]] = truth[[4, 12, 20]]
    save_volume(sparse, tmp_path / "ann.zarr", chunks=(8, 64, 64), progress=False)
    address = ["--scheduler", client.scheduler.address]
    model = tmp_path / "seg.pt"
    argv = ["train", str(tmp_path / "hq.zarr"), str(model), "--labels", str(tmp_path / "ann.zarr")]
    argv += ["--like", str(tmp_path / "lq.zarr")]  # the LQ scan's extra noise in training
    assert main([*argv, *FAST_TRAIN, *address]) == 0
    report = json.loads(capsys.readouterr().out, parse_constant=_not_json)
    assert report["mode"] == "supervised" and model.is_file()
    assert report["degrade_sigma"] > 0
    out = tmp_path / "labels.zarr"
    argv = ["segment", str(tmp_path / "hq.zarr"), str(out), "--segmenter", str(model), *address]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "supervised"
    from xctdask.segment import Segmenter

    expected = Segmenter.load(model).transform(open_volume(tmp_path / "hq.zarr")).compute()
    np.testing.assert_array_equal(open_volume(out).values, expected.values)


def test_commands_fit_on_one_step_of_a_stored_series_and_label_every_step(tmp_path, client, capsys):
    from xctdask import phantoms
    from xctdask.pseudolabels import PseudoLabeler
    from xctdask.segment import Segmenter

    ds = phantoms.make("fibre-composite", (16, 48, 48), seed=4)
    first, second = ds.hq.values, ds.hq.values * 2 + 1  # steps told apart by their grey values
    series = open_volume(np.stack([first, second]), dims=("t", "z", "y", "x"))
    save_volume(series, tmp_path / "series.zarr", chunks=(8, 48, 48), progress=False)
    address = ["--scheduler", client.scheduler.address]
    out, model = tmp_path / "labels.zarr", tmp_path / "seg.pt"
    argv = ["segment", str(tmp_path / "series.zarr"), str(out), "--save-segmenter", str(model)]
    assert main([*argv, "--fit-step", "1", *FAST_TRAIN, *address]) == 0
    assert "training on time step 1 of 2" in capsys.readouterr().err
    labels = open_volume(out)
    assert labels.dims == ("t", "z", "y", "x") and labels.shape == (2, 16, 48, 48)
    seg = Segmenter.load(model)  # fitted on step 1: its normalisation is that step's
    inside = PseudoLabeler(3, mask="cylinder").fit(second).predict(second) != 255
    mean, std = seg.normalization_
    assert abs(mean - second[inside].mean()) < 0.01 * std and mean > first.max()
    np.testing.assert_array_equal(labels.values[0], seg.transform(first).values)
    argv = ["segment", str(tmp_path / "series.zarr"), str(tmp_path / "x.zarr"), *address]
    assert main([*argv, "--fit-step", "2", *FAST_TRAIN]) == 2
    assert "--fit-step must be in 0..1, got 2" in capsys.readouterr().err
    assert main([*argv, "--fit-step", "0", "--segmenter", str(model)]) == 2
    assert "--fit-step are for training; with --segmenter, drop them" in capsys.readouterr().err
    argv = ["pseudo-labels", str(tmp_path / "series.zarr"), str(tmp_path / "pseudo.zarr")]
    assert main([*argv, "--fit-step", "1", *address]) == 0
    pseudo = open_volume(tmp_path / "pseudo.zarr")
    expected = PseudoLabeler(3).fit(second).predict(np.stack([first, second]))
    assert pseudo.dims == ("t", "z", "y", "x")
    np.testing.assert_array_equal(pseudo.values, expected.values)
    capsys.readouterr()
    save_volume(first, tmp_path / "one.zarr", progress=False)
    argv = ["train", str(tmp_path / "one.zarr"), str(tmp_path / "x.pt"), "--fit-step", "0"]
    assert main([*argv, *FAST_TRAIN, *address]) == 2
    assert "--fit-step is for a (t, z, y, x) series" in capsys.readouterr().err


def test_segment_bad_input_is_refused_and_nothing_is_overwritten(tmp_path, client, capsys):
    vol = np.random.default_rng(0).normal(size=(24, 48, 48)).astype(np.float32)
    save_volume(vol, tmp_path / "vol.zarr", progress=False)
    save_volume(np.zeros((24, 40, 48), np.uint8), tmp_path / "short.zarr", progress=False)
    wrong = np.zeros((24, 48, 48), np.uint8)
    wrong[3, 4, 5] = 9
    save_volume(wrong, tmp_path / "wrong.zarr", progress=False)
    address = ["--scheduler", client.scheduler.address]
    base = ["segment", str(tmp_path / "vol.zarr")]
    cases = [
        ([str(tmp_path / "o1.zarr"), "--labels", str(tmp_path / "short.zarr")], "shape"),
        ([str(tmp_path / "o2.zarr"), "--clean", str(tmp_path / "short.zarr")], "shape"),
        ([str(tmp_path / "o3.zarr"), "--labels", str(tmp_path / "wrong.zarr")], "outside 0..2"),
    ]
    for extra, message in cases:
        assert main([*base, *extra, *FAST_TRAIN, *address]) == 2
        assert message in capsys.readouterr().err
        assert not Path(extra[0]).exists()
    existing = tmp_path / "existing.zarr"
    save_volume(np.ones((2, 2, 2), np.uint8), existing, progress=False)
    before = open_volume(existing).values.copy()
    assert main([*base, str(existing), *FAST_TRAIN, *address]) == 2
    assert "exists" in capsys.readouterr().err
    np.testing.assert_array_equal(open_volume(existing).values, before)
    unreachable = [
        *base,
        str(tmp_path / "o4.zarr"),
        *FAST_TRAIN,
        "--scheduler",
        "tcp://127.0.0.1:1",
    ]
    assert main(unreachable) == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err
    assert not (tmp_path / "o4.zarr").exists()


def test_workers_must_be_a_positive_count(tmp_path, capsys):
    scan, out = str(tmp_path / "scan.zarr"), str(tmp_path / "labels.zarr")
    with pytest.raises(SystemExit):  # it used to end in a ZeroDivisionError traceback
        main(["segment", scan, out, "--workers", "0"])
    assert "--workers: expected a positive integer, got '0'" in capsys.readouterr().err
    assert not (tmp_path / "labels.zarr").exists()


def test_steps_self_correct_takes_auto_or_a_count_and_refuses_the_rest(tmp_path, capsys):
    scan, out = str(tmp_path / "scan.zarr"), str(tmp_path / "labels.zarr")
    with pytest.raises(SystemExit):
        main(["segment", scan, out, "--classes", "3", "--steps-self-correct", "lots"])
    assert "expected 'auto' or an integer ≥ 0, got 'lots'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["segment", scan, out, "--classes", "3", "--steps-self-correct", "-3"])
    assert "got '-3'" in capsys.readouterr().err
    assert not (tmp_path / "labels.zarr").exists()


def test_pseudo_sigma_takes_auto_or_a_scale_and_refuses_the_rest(tmp_path, capsys):
    scan, out = str(tmp_path / "scan.zarr"), str(tmp_path / "labels.zarr")
    for bad in ("wide", "-1"):
        with pytest.raises(SystemExit):
            main(["segment", scan, out, "--classes", "3", "--pseudo-sigma", bad])
        assert f"expected 'auto' or a number in 0..64, got '{bad}'" in capsys.readouterr().err
    assert not (tmp_path / "labels.zarr").exists()


def test_every_argument_of_every_command_says_what_it_is():
    from xctdask.cli import _parser

    parser = _parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(commands.choices) >= 10
    for name, command in commands.choices.items():
        silent = [
            (a.option_strings or [a.dest])[0]
            for a in command._actions
            if a.dest != "help" and not a.help
        ]
        assert not silent, f"xctdask {name} --help says nothing about {silent}"
