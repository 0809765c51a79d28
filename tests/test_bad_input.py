"""Bad input loses nothing: write guards, damaged stores, errors before any training.

Every case of the "never lose a scan" issue: the error type, a message that names the
problem, no output left behind, and the input's bytes unchanged (a checksum of every
file in it).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

import xctdask as xd
from xctdask.cli import main
from xctdask.io import check_store, open_volume, save_volume


def digest(path: Path) -> str:
    """SHA-256 of every file under ``path`` (names and bytes)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path.parent)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A small phantom scan in Zarr, and a tiny fitted Segmenter and network."""
    folder = tmp_path_factory.mktemp("scan")
    ds = xd.phantoms.make("fibre-composite", (24, 48, 48), seed=3)
    save_volume(ds.lq, folder / "in.zarr", chunks=(8, 48, 48), progress=False)
    save_volume(ds.labels, folder / "truth.zarr", chunks=(8, 48, 48), progress=False)
    torch.manual_seed(0)
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=4, context=3)
    net.normalization = (float(ds.lq.mean()), float(ds.lq.std()))
    xd.models.save(net, folder / "net.pt")
    seg = xd.Segmenter(
        3,
        steps=2,
        steps_self_correct=0,
        patch=32,
        depth=2,
        f0=4,
        context=3,
        tile=32,
        progress=False,
    ).fit(ds.lq)
    seg.save(folder / "seg.pt")
    return folder


@pytest.fixture
def work(scan, tmp_path):
    """A private copy of the scan folder, so tests may try to damage it."""
    import shutil

    shutil.copytree(scan, tmp_path / "w")
    return tmp_path / "w"


def _cli(argv, client, capsys) -> tuple[int, str]:
    """Exit status and the error lines (``xctdask CMD: error: ...``) of a command."""
    code = main([*argv, "--scheduler", client.scheduler.address])
    err = capsys.readouterr().err
    return code, "".join(line + "\n" for line in err.splitlines() if ": error: " in line)


# ---------------------------------------------------------------- data loss


def test_predict_cli_refuses_to_write_over_its_input(work, client, capsys):
    before = digest(work / "in.zarr")
    argv = ["predict", str(work / "in.zarr"), str(work / "net.pt"), str(work / "in.zarr")]
    code, err = _cli([*argv, "--overwrite"], client, capsys)
    assert code == 2 and "refusing to write" in err and err.count("\n") == 1
    assert digest(work / "in.zarr") == before


def test_predict_cli_refuses_to_write_over_the_model_file(work, client, capsys):
    before = digest(work / "net.pt")
    argv = ["predict", str(work / "in.zarr"), str(work / "net.pt"), str(work / "net.pt")]
    code, err = _cli([*argv, "--overwrite"], client, capsys)
    assert code == 2 and "refusing to write" in err
    assert digest(work / "net.pt") == before


def test_segment_cli_refuses_to_write_over_its_input(work, client, capsys):
    before = digest(work / "in.zarr")
    argv = ["segment", str(work / "in.zarr"), str(work / "in.zarr")]
    code, err = _cli([*argv, "--segmenter", str(work / "seg.pt"), "--overwrite"], client, capsys)
    assert code == 2 and "refusing to write" in err
    assert digest(work / "in.zarr") == before


def test_api_refuses_predict_and_transform_results_over_their_input(work):
    before = digest(work / "in.zarr")
    net = xd.models.load(work / "net.pt")
    seg = xd.Segmenter.load(work / "seg.pt")
    vol = open_volume(work / "in.zarr")
    for result in (xd.predict(vol, net, tile=32), seg.transform(vol), vol.data * 2):
        with pytest.raises(ValueError, match=r"refusing to write .* an input"):
            save_volume(result, work / "in.zarr", overwrite=True, progress=False)
    # the graph is searched, not the attributes: a bare Dask array is caught as well
    with pytest.raises(ValueError, match="refusing to write"):
        save_volume(xd.predict(vol.data, net, tile=32).data, work / "in.zarr", overwrite=True)
    assert digest(work / "in.zarr") == before


def test_output_inside_or_around_the_input_is_refused(work, client, capsys):
    before = digest(work / "in.zarr")
    vol = open_volume(work / "in.zarr")
    with pytest.raises(ValueError, match="lies inside"):
        save_volume(vol, work / "in.zarr" / "sub.zarr", progress=False)
    with pytest.raises(ValueError, match="contains"):
        save_volume(vol, work, overwrite=True, progress=False)
    code, err = _cli(
        ["convert", str(work / "in.zarr"), str(work / "in.zarr" / "sub.zarr")], client, capsys
    )
    assert code == 2 and "refusing to write" in err
    assert not (work / "in.zarr" / "sub.zarr").exists()
    assert digest(work / "in.zarr") == before


def test_a_symbolic_link_to_the_input_is_the_input(work):
    os.symlink(work / "in.zarr", work / "link.zarr")
    vol = open_volume(work / "in.zarr")
    with pytest.raises(ValueError, match="refusing to write"):
        save_volume(vol + 1, work / "link.zarr", overwrite=True, progress=False)


COMMANDS = {
    "convert": lambda w, out: ["convert", str(w / "in.zarr"), out],
    "pseudo-labels": lambda w, out: ["pseudo-labels", str(w / "in.zarr"), out],
    "predict": lambda w, out: ["predict", str(w / "in.zarr"), str(w / "net.pt"), out],
    "train": lambda w, out: ["train", str(w / "in.zarr"), out, "--labels", str(w / "truth.zarr")],
    "segment": lambda w, out: [
        "segment",
        str(w / "in.zarr"),
        out,
        "--segmenter",
        str(w / "seg.pt"),
    ],
}


CASES = [(c, w) for c in sorted(COMMANDS) for w in ("in.zarr", "in.zarr/inner.zarr", ".")]
CASES.append(("train", "truth.zarr"))  # the labels are an input of train


@pytest.mark.parametrize(("command", "where"), CASES)
def test_no_command_writes_over_or_inside_an_input(work, client, capsys, command, where):
    """Every command that reads something refuses outputs on, inside or around it."""
    before = {name: digest(work / name) for name in ("in.zarr", "truth.zarr", "net.pt", "seg.pt")}
    out = str(work / where)
    code, err = _cli([*COMMANDS[command](work, out), "--overwrite"], client, capsys)
    assert code == 2, err
    assert "refusing to write" in err or "overlap" in err
    assert {name: digest(work / name) for name in before} == before
    assert not (work / "in.zarr" / "inner.zarr").exists()


# ------------------------------------------------------- silent wrong results


def test_a_deleted_chunk_of_a_complete_store_is_an_error_naming_it(work, client, capsys):
    chunk = work / "in.zarr" / "c" / "1" / "0" / "0"
    assert chunk.is_file()
    chunk.unlink()
    with pytest.raises(OSError, match=r"chunk 'c/1/0/0' of .*in.zarr is missing"):
        _ = open_volume(work / "in.zarr").values
    report = check_store(str(work / "in.zarr"))
    assert not report.ok and report.missing == ["c/1/0/0"] and report.n_missing == 1
    code, err = _cli(["info", str(work / "in.zarr"), "--check"], client, capsys)
    assert code == 2 and "damaged" in err and "c/1/0/0" in err


def test_a_truncated_chunk_names_the_store_and_the_chunk(work, client, capsys):
    chunk = work / "in.zarr" / "c" / "2" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:40])
    with pytest.raises(OSError, match=r"cannot decode chunk 'c/2/0/0' of .*in.zarr"):
        _ = open_volume(work / "in.zarr").values
    code, err = _cli(["info", str(work / "in.zarr")], client, capsys)
    assert code == 2 and "c/2/0/0" in err and err.count("\n") == 1
    code, err = _cli(["info", str(work / "in.zarr"), "--check"], client, capsys)
    assert code == 2 and "undecodable" in err


def test_labels_of_more_classes_than_uint8_holds_are_refused():
    net = torch.nn.Conv2d(1, 300, 1)
    net.spatial_dims = 2
    with pytest.raises(ValueError, match="300 classes"):
        xd.predict(np.zeros((2, 8, 8), np.float32), net, tile=8, normalize=None)


def test_a_fitted_segmenter_keeps_its_number_of_classes(work, client, capsys):
    out = work / "o.zarr"
    argv = ["segment", str(work / "in.zarr"), str(out), "--segmenter", str(work / "seg.pt")]
    code, err = _cli([*argv, "--classes", "4"], client, capsys)
    assert code == 2 and "fitted for 3 classes" in err and not out.exists()
    seg = xd.Segmenter.load(work / "seg.pt")
    seg.n_classes = 4
    with pytest.raises(ValueError, match="fitted for 3 classes"):
        seg.transform(open_volume(work / "in.zarr"))


# --------------------------------------------- errors before any long work


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"tile": 0}, "tile"),
        ({"overlap": 1.0}, "overlap"),
        ({"axes": "q"}, "axes"),
        ({"model": "unet4d"}, "model"),
        ({"class_names": ["a"]}, "class_names"),
        ({"class_names": ["pore", "pore", "fibre"]}, "3 different strings"),
        ({"steps": 0}, "steps"),
    ],
)
def test_segmenter_settings_fail_before_any_work(setting, message, no_compute):
    vol = open_volume(np.zeros((24, 48, 48), np.float32)).chunk({"z": 8})
    with no_compute(), pytest.raises(ValueError, match=message):
        xd.Segmenter(3, progress=False, **setting).fit(vol)


def test_a_constant_volume_is_called_constant():
    with pytest.raises(ValueError, match="the volume is constant"):
        xd.segment(np.full((24, 48, 48), 7.0, np.float32), 3, steps=2, progress=False)


def test_a_model_file_of_random_bytes(tmp_path, client, capsys):
    bad = tmp_path / "random.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="not an xctdask model file") as info:
        xd.models.load(bad)
    assert "weights_only" not in str(info.value)
    with pytest.raises(ValueError, match="not an xctdask model file"):
        xd.Segmenter.load(bad)
    save_volume(np.zeros((2, 8, 8), np.float32), tmp_path / "v.zarr", progress=False)
    code, err = _cli(
        ["predict", str(tmp_path / "v.zarr"), str(bad), str(tmp_path / "o.zarr")], client, capsys
    )
    assert code == 2 and "not an xctdask model file" in err and "weights_only" not in err


def test_labels_with_more_classes_than_the_network_fail_before_training():
    image = np.random.default_rng(0).random((24, 32, 32)).astype(np.float32)
    labels = (image * 4).astype(np.uint8)  # classes 0..3
    sampler = xd.PatchSampler(image, labels, patch=(1, 16, 16), margin=1)
    net = xd.models.build("unet2d", 1, 3, depth=1, f0=2)
    with pytest.raises(ValueError, match=r"classes 0\.\.3, but the network predicts 3"):
        xd.train(net, sampler, steps=1, progress=False)


def test_truncated_and_tiny_tiffs_name_the_file(tmp_path):
    stack = np.random.default_rng(0).integers(0, 255, (20, 64, 64), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "full.tif", stack, imagej=True)
    data = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 3])
    with pytest.raises(OSError, match=r"cut\.tif.*truncated"):
        _ = open_volume(tmp_path / "cut.tif").values
    (tmp_path / "tiny.tif").write_bytes(data[:100])
    with pytest.raises(OSError, match=r"tiny\.tif"):
        open_volume(tmp_path / "tiny.tif")


def test_bad_chunks_leave_nothing_and_a_retry_works(tmp_path, capsys):
    vol = np.ones((4, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="chunks must be three positive integers"):
        save_volume(vol, tmp_path / "o.zarr", chunks=(-1, 8, 8), progress=False)
    assert not (tmp_path / "o.zarr").exists()
    save_volume(vol, tmp_path / "o.zarr", chunks=(2, 8, 8), progress=False)
    save_volume(np.ones((2, 8, 8), np.uint8), tmp_path / "v.zarr", progress=False)
    argv = [
        "convert",
        str(tmp_path / "v.zarr"),
        str(tmp_path / "c.zarr"),
        "--chunks",
        "0",
        "0",
        "0",
    ]
    with pytest.raises(SystemExit) as stop:  # argparse's usage error: status 2, one line
        main(argv)
    assert stop.value.code == 2 and "positive integer" in capsys.readouterr().err
    assert not (tmp_path / "c.zarr").exists()


def test_a_write_that_fails_before_its_first_chunk_leaves_nothing(tmp_path):
    import dask.array as da

    def fail(block):
        raise RuntimeError("the source cannot be computed")

    broken = da.ones((4, 8, 8), chunks=(2, 8, 8), dtype=np.uint8).map_blocks(fail, dtype=np.uint8)
    with pytest.raises(RuntimeError, match="cannot be computed"):
        save_volume(broken, tmp_path / "o.zarr", progress=False)
    assert not (tmp_path / "o.zarr").exists()
    (tmp_path / "empty").mkdir()  # an empty folder left by another tool is no obstacle
    save_volume(np.ones((2, 8, 8), np.uint8), tmp_path / "empty", progress=False)


def test_the_demo_checks_its_shape_before_creating_its_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--shape", "4", "10", "10"]) == 2
    assert "--shape" in capsys.readouterr().err and not out.exists()


def test_the_cli_speaks_in_flags(work, client, capsys):
    argv = ["convert", str(work / "in.zarr"), str(work / "out.zarr")]
    assert _cli(argv, client, capsys)[0] == 0
    code, err = _cli(argv, client, capsys)
    assert code == 2 and "--overwrite" in err and "overwrite=True" not in err
