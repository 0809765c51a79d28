"""The ``xctdask`` command line. Thin: it parses, starts a cluster, calls the library."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from xctdask._files import check_new_file

__all__ = ["main"]


def _print_json(report: Any) -> None:
    """Print a command's report as strict JSON (NaN and ±inf as null)."""
    from xctdask._jsonable import dumps

    print(dumps(report))


@contextmanager
def _cluster(address: str | None, workers: int | None):
    """A client for the command: the given scheduler, the active client, or a local
    cluster that this command starts and closes."""
    from xctdask import cluster

    if address:
        client, owned = cluster.connect(address), False
    else:
        existing = cluster.active_client()
        client = existing or cluster.local(n_workers=workers)
        owned = existing is None
    print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr, flush=True)
    try:
        yield client
    finally:
        if owned:
            local_cluster = client.cluster
            client.close()
            local_cluster.close()
        elif address:
            client.close()


def _guard(inputs: Sequence[str | None], outputs: Sequence[str | None]) -> None:
    """Before any work: no output may be, contain or lie inside an input (or another
    output)."""
    from xctdask.io.locations import location, overlaps

    given_in = [p for p in inputs if p]
    given_out = [p for p in outputs if p]
    for i, out in enumerate(given_out):
        for source in given_in:
            if overlaps(out, source):
                how = "is" if location(out) == location(source) else "overlaps"
                raise ValueError(
                    f"refusing to write {out}: it {how} the input {source}; choose an output "
                    "outside every input"
                )
        for other in given_out[i + 1 :]:
            if overlaps(out, other):
                raise ValueError(f"the outputs {out} and {other} overlap; choose separate paths")


def _so(args: argparse.Namespace) -> dict[str, Any]:
    """``storage_options=...`` for the library calls, from ``--storage-options``."""
    text = getattr(args, "storage_options", None)
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--storage-options must be a JSON object: {err}") from None
    if not isinstance(options, dict):
        raise ValueError("--storage-options must be a JSON object, e.g. '{\"anon\": true}'")
    return {"storage_options": options}


#: API words in library messages, and what a CLI user types instead
_CLI_WORDS = {
    "overwrite=True": "--overwrite",
    "pass mask= to": "use --mask with",
    "n_classes=": "--classes ",
    "n_classes must": "--classes must",
    "(with clean=,": "(with --clean,",
    "bins must": "--bins must",
    "sigma must be a positive number or three": "--sigma must be a positive number or three",
    "features='mean'": "--features mean",
    "kind='labels' needs": "--kind labels needs",
    "as kind='image'": "with --kind image",
}


def _cli_words(message: str, flags: dict[str, str] | None = None) -> str:
    """``message`` with API words replaced by what a CLI user types: the fixed
    :data:`_CLI_WORDS`, and ``"<setting> must"`` as ``"--<flag> must"`` for every
    option of the command (``flags`` maps an option's setting name to its flag).

    Examples
    --------
    >>> _cli_words("batch_size must be a positive integer", {"batch_size": "--batch-size"})
    '--batch-size must be a positive integer'
    """
    for api, flag in _CLI_WORDS.items():
        message = message.replace(api, flag)
    for name, flag in (flags or {}).items():
        message = re.sub(rf"(?<![\w-]){re.escape(name)} must\b", f"{flag} must", message)
    return message


def _flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Setting name → long flag, for every option of one command's parser."""
    found = {}
    for action in parser._actions:  # argparse keeps no public list of its options
        long = [o for o in action.option_strings if o.startswith("--")]
        if long and action.dest != "help":
            found[action.dest] = long[0]
    return found


def _cmd_info(args: argparse.Namespace) -> int:
    from pathlib import Path

    import dask

    from xctdask.io import check_store, open_volume
    from xctdask.io.locations import is_url
    from xctdask.io.open import _looks_like_zarr

    vol = open_volume(args.path, dataset=args.dataset, level=args.level, **_so(args))
    if args.check and not (is_url(args.path) or _looks_like_zarr(Path(args.path))):
        raise ValueError(
            f"--check verifies the chunks of a Zarr store; {args.path} is not one (the "
            "min/max pass without --check reads every voxel of it)"
        )
    info: dict[str, Any] = {
        "path": args.path,
        "shape": list(vol.shape),
        "dtype": str(vol.dtype),
        "chunks": [int(max(c)) for c in vol.chunks],
        "storage_chunks": vol.attrs.get("storage_chunks"),
        "voxel_size": list(vol.attrs["voxel_size"]),
        "unit": vol.attrs["unit"],
        "size_gb": round(vol.nbytes / 1e9, 3),
    }
    report = None
    # a local threaded pass suffices for min/max; --check or --scheduler use a cluster
    use_cluster = bool(args.check or args.scheduler)
    if args.check or not args.no_stats:
        with _cluster(args.scheduler, args.workers) if use_cluster else nullcontext():
            if args.check:
                report = check_store(args.path, progress=True, **_so(args))
                info["check"] = report.to_dict()
            if not args.no_stats and (report is None or report.ok):
                lo, hi, finite = dask.compute(
                    vol.data.min(), vol.data.max(), dask.array.isfinite(vol.data).all()
                )
                info["min"], info["max"] = float(lo), float(hi)
                info["all_finite"] = bool(finite)
    _print_json(info)
    if report is not None and not report.ok:
        raise OSError(report.summary())
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from xctdask.io import check_store_path, open_volume, save_volume

    _guard([args.input], [args.output])
    check_store_path(args.output)
    chunks = tuple(args.chunks) if args.chunks else None
    vol = open_volume(
        args.input, dataset=args.dataset, voxel_size=args.voxel_size, unit=args.unit, **_so(args)
    )
    with _cluster(args.scheduler, args.workers):
        result = save_volume(
            vol,
            args.output,
            chunks=chunks,
            overwrite=args.overwrite,
            multiscale=args.multiscale or False,
            kind=args.kind,
            **_so(args),
        )
    print(
        f"wrote {args.output}: {result.chunks_written} chunks written, "
        f"{result.chunks_skipped} already complete, {result.levels} level(s)"
    )
    return 0


def _cmd_phantom(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xctdask import phantoms
    from xctdask.io import check_store_path, save_volume

    check_store_path(args.output, folder_of_stores=True)
    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    with _cluster(args.scheduler, args.workers):
        ds = phantoms.make(args.kind, tuple(args.shape), args.seed, lazy=True).persist()
        out.mkdir(parents=True, exist_ok=True)
        for name in ("labels", "attenuation", "hq", "lq"):
            save_volume(
                ds[name],
                out / f"{name}.zarr",
                overwrite=args.overwrite,
                kind="labels" if name == "labels" else "image",
            )
    print(
        f"wrote {args.kind} phantom {tuple(args.shape)} to {out}/{{labels,attenuation,hq,lq}}.zarr"
    )
    return 0


def _auto_or(kind: type, low: float, high: float | None, words: str):
    """An argparse type: ``"auto"``, or a ``kind`` number in ``low..high``."""

    def parse(value: str) -> Any:
        if value == "auto":
            return value
        try:
            number = kind(value)
        except ValueError:
            number = None
        if number is None or number < low or (high is not None and number > high):
            raise argparse.ArgumentTypeError(f"expected 'auto' or {words}, got {value!r}")
        return number

    return parse


_steps_or_auto = _auto_or(int, 0, None, "an integer ≥ 0")
_sigma_or_auto = _auto_or(float, 0.0, 64.0, "a number in 0..64")


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _classes(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {value!r}") from None


def _cmd_pseudo_labels(args: argparse.Namespace) -> int:

    from xctdask.io import open_volume, save_volume
    from xctdask.pseudolabels import PseudoLabeler

    _guard([args.input], [args.output, args.save_model])
    _refuse_existing(args.output, overwrite=args.overwrite, storage_options=_so(args))
    if args.save_model:
        check_new_file(args.save_model, args.overwrite, "labeler.json")
    vol = open_volume(args.input, dataset=args.dataset, **_so(args))
    labeler = PseudoLabeler(
        args.classes,
        args.method,
        bins=args.bins,
        mask=None if args.mask == "none" else args.mask,
        features=tuple(args.features),
        sigma=args.sigma[0] if len(args.sigma) == 1 else tuple(args.sigma),
        progress=True,
    ).validate()  # every setting, before the cluster starts
    training = _fit_step(vol, args.fit_step)
    with _cluster(args.scheduler, args.workers):
        labeler.fit(training)
        result = save_volume(
            labeler.predict(vol), args.output, overwrite=args.overwrite, kind="labels", **_so(args)
        )
    if args.save_model:
        labeler.save(args.save_model, overwrite=args.overwrite)
    summary = labeler.summary()
    summary.update(
        output=str(args.output),
        chunks_written=result.chunks_written,
        nonfinite_voxels=labeler.n_nonfinite_,
        voxels_outside_mask=labeler.n_excluded_,
    )
    _print_json(summary)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:

    from xctdask.inference import predict
    from xctdask.io import open_volume, save_volume
    from xctdask.models import load

    _guard([args.input, args.model], [args.output])
    _refuse_existing(
        args.output, overwrite=args.overwrite, resumable=args.output, storage_options=_so(args)
    )
    net = load(args.model)
    vol = open_volume(args.input, dataset=args.dataset, **_so(args))

    def lazy_result():
        return predict(
            vol,
            net,
            output=args.output_kind,
            tile=args.tile[0] if args.tile and len(args.tile) == 1 else args.tile,
            overlap=args.overlap,
            blend=args.blend,
            batch_size=args.batch_size,
            axes=args.axes,
            device=args.device,
            precision=args.precision,
        )

    # A local cluster runs on this machine: the graph is built (and its settings and
    # --device checked here) before it starts. A --scheduler's workers have their own
    # devices and memory limits: the graph is built against them.
    result = None if args.scheduler else lazy_result()
    kind = "labels" if args.output_kind == "labels" else "image"
    with _cluster(args.scheduler, args.workers):
        result = lazy_result() if result is None else result
        written = save_volume(result, args.output, overwrite=args.overwrite, kind=kind, **_so(args))
    report = {
        "output": str(args.output),
        "kind": args.output_kind,
        "shape": list(result.shape),
        "tiles": result.attrs["tiles"],
        "tile": result.attrs["tile"],
        "chunks_written": written.chunks_written,
        "chunks_skipped": written.chunks_skipped,
    }
    _print_json(report)
    return 0


def _segmenter_from(args: argparse.Namespace):
    from xctdask.segment import Segmenter

    seg = Segmenter(
        3 if args.classes is None else args.classes,
        model=args.model,
        context=args.context,
        skip=args.skip,
        depth=args.depth,
        f0=args.f0,
        patch=args.patch,
        steps=args.steps,
        steps_self_correct=args.steps_self_correct,
        pseudo_sigma=args.pseudo_sigma,
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        axes=args.axes,
        seed=args.seed,
        preset=args.preset,
        stack=args.stack,
    )
    seg.validate()  # every setting, before any data is read
    return seg


def _training_inputs(args: argparse.Namespace, seg: Any, vol: Any) -> dict[str, Any]:
    """What ``seg`` (from :func:`_segmenter_from`) fits on: the time step of ``vol``
    (:func:`_fit_step`) and the command's labels, clean and like scans, opened and
    checked against each other (shapes and types, metadata only) before the cluster
    starts. ``seg.fit(**inputs)`` trains on them."""
    from xctdask.io import open_volume

    training = _fit_step(vol, args.fit_step)
    inputs = {
        "vol": training,
        "labels": open_volume(args.labels, **_so(args)) if args.labels else None,
        "clean": open_volume(args.clean, **_so(args)) if args.clean else None,
        "like": open_volume(args.like, **_so(args)) if args.like else None,
    }
    seg._check(**inputs)
    return inputs


def _fit_step(vol: Any, step: int | None) -> Any:
    """The 3-D volume to train on: ``vol`` itself, or one time step of a series (said
    on stderr). Lazy and cheap: commands call it before the cluster starts."""
    if vol.ndim != 4:
        if step is not None:
            raise ValueError(
                f"--fit-step is for a (t, z, y, x) series; this input is {vol.ndim}-D "
                f"with shape {tuple(vol.shape)}"
            )
        return vol
    step = 0 if step is None else step
    if not 0 <= step < vol.shape[0]:
        raise ValueError(f"--fit-step must be in 0..{vol.shape[0] - 1}, got {step}")
    print(f"training on time step {step} of {vol.shape[0]}", file=sys.stderr)
    return vol[step]


def _refuse_existing(
    *paths: str | None,
    overwrite: bool,
    resumable: str | None = None,
    storage_options: dict | None = None,
) -> None:
    """Fail before any work if an output exists, unless it is ``resumable``: an
    interrupted write of an output store, which the run then completes."""
    from xctdask.io import check_store_path, is_interrupted_write
    from xctdask.io.locations import exists

    options = (storage_options or {}).get("storage_options")
    for path in paths:
        if path:
            check_store_path(path)
        if path and exists(path, options) and not overwrite:
            if path == resumable and is_interrupted_write(path, options):
                print(f"resuming the interrupted write of {path}", file=sys.stderr)
                continue
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")


def _cmd_train(args: argparse.Namespace) -> int:
    from xctdask.io import open_volume

    _guard([args.input, args.labels, args.clean, args.like], [args.segmenter])
    check_new_file(args.segmenter, args.overwrite)  # a folder there fails now, not after
    seg = _segmenter_from(args)  # the settings and the inputs, before the cluster starts
    vol = open_volume(args.input, dataset=args.dataset, **_so(args))
    inputs = _training_inputs(args, seg, vol)
    with _cluster(args.scheduler, args.workers):
        seg = seg.fit(**inputs)
    seg.save(args.segmenter, overwrite=args.overwrite)
    stage = seg.history.get("stage3", seg.history["stage2"])
    report = {
        "segmenter": str(args.segmenter),
        "mode": seg.mode_,
        "network": seg.network_.config["name"],
        "normalization": list(seg.normalization_),
        "degrade_sigma": seg.degrade_sigma_,
        "best_validation_miou": stage.get("best_miou"),
    }
    _print_json(report)
    return 0


def _cmd_segment(args: argparse.Namespace) -> int:
    from xctdask.io import open_volume, save_volume
    from xctdask.segment import Segmenter

    _guard(
        [args.input, args.labels, args.clean, args.like, args.segmenter],
        [args.output, args.save_segmenter],
    )
    _refuse_existing(
        args.output, overwrite=args.overwrite, resumable=args.output, storage_options=_so(args)
    )
    if args.save_segmenter:
        check_new_file(args.save_segmenter, args.overwrite)
    vol = open_volume(args.input, dataset=args.dataset, **_so(args))
    if args.segmenter:
        seg = Segmenter.load(args.segmenter)
        if args.classes is not None and args.classes != seg.n_classes:
            raise ValueError(
                f"{args.segmenter} was fitted for {seg.n_classes} classes; --classes "
                f"{args.classes} cannot change that (fit a new one with `xctdask train`)"
            )
        if args.labels or args.clean or args.like or args.fit_step is not None:
            raise ValueError(
                "--labels, --clean, --like and --fit-step are for training; with "
                "--segmenter, drop them"
            )
    else:
        seg = _segmenter_from(args)  # the settings and the inputs, before the cluster
        inputs = _training_inputs(args, seg, vol)
    with _cluster(args.scheduler, args.workers):
        if not args.segmenter:
            seg = seg.fit(**inputs)
        result = save_volume(
            seg.transform(vol), args.output, overwrite=args.overwrite, kind="labels", **_so(args)
        )
    if args.save_segmenter:
        seg.save(args.save_segmenter, overwrite=args.overwrite)
    report = {
        "output": str(args.output),
        "mode": seg.mode_,
        "chunks_written": result.chunks_written,
        "chunks_skipped": result.chunks_skipped,
    }
    _print_json(report)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from xctdask.demo import check_demo_settings, run_demo
    from xctdask.io import check_store_path

    check_demo_settings(tuple(args.shape), args.kind, args.steps, args.steps_self_correct)
    check_store_path(args.out, folder_of_stores=True)

    with _cluster(args.scheduler, args.workers):
        report = run_demo(
            args.out,
            kind=args.kind,
            shape=tuple(args.shape),
            seed=args.seed,
            steps=args.steps,
            steps_self_correct=args.steps_self_correct,
            overwrite=args.overwrite,
        )
    _print_json(report)
    return 0


def _study_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs as keyword arguments (VALUE read as JSON if it parses)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    return options


def _cmd_study(args: argparse.Namespace) -> int:
    import importlib
    import inspect

    from xctdask.studies import STUDIES
    from xctdask.studies.common import check_result_free, load_data

    _guard([args.volume, args.labels], [args.out])
    check_result_free(args.out, args.name, overwrite=args.overwrite)
    options = _study_options(args.set or [])
    module = importlib.import_module(f"xctdask.studies.{STUDIES[args.name]}")
    accepted = set(inspect.signature(module.run).parameters) - {"data", "size", "seed", "progress"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"the {args.name} study has no option {', '.join(unknown)}; its options: "
            f"{', '.join(sorted(accepted))}"
        )
    if args.labels and not args.volume:
        raise ValueError("--labels needs --volume (the scan they label)")
    data = load_data(
        args.volume,
        args.labels,
        n_classes=args.classes,
        kind=args.kind,
        size=args.size,
        seed=args.seed,
        **_so(args),
    )
    context = _cluster(args.scheduler, args.workers) if args.scheduler else nullcontext()
    with context:
        result = module.run(data, size=args.size, seed=args.seed, progress=True, **options)
    path = result.save(args.out, overwrite=args.overwrite)
    print(result.summary)
    print(f"numbers: {path}; figures: {', '.join(sorted(result.figures)) or 'none'}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from xctdask.io import open_volume
    from xctdask.studies.common import check_result_free
    from xctdask.studies.report import report

    _guard([args.pred, args.truth, args.image], [args.out])
    if args.out:
        check_result_free(args.out, "report", overwrite=args.overwrite)
    so = _so(args)
    pred, truth = open_volume(args.pred, **so), open_volume(args.truth, **so)
    image = open_volume(args.image, **so) if args.image else None
    names = args.class_names.split(",") if args.class_names else None
    n_classes = args.classes or (len(names) if names else None)
    if n_classes is None:
        raise ValueError("say how many classes: --classes N (or --class-names a,b,c)")
    context = _cluster(args.scheduler, args.workers) if args.scheduler else nullcontext()
    with context:
        result = report(pred, truth, n_classes, image=image, class_names=names, bins=args.bins)
    if args.out:
        path = result.save(args.out, overwrite=args.overwrite)
        print(f"numbers: {path}", file=sys.stderr)
    print(result.summary)
    return 0


def _parser() -> argparse.ArgumentParser:
    # the library's own lists, from modules that import nothing heavy
    from xctdask import __version__
    from xctdask.inference.lattice import BLENDS
    from xctdask.inference.mergers import OUTPUTS
    from xctdask.inference.plan import PRECISIONS
    from xctdask.phantoms.geometry import KINDS
    from xctdask.pseudolabels.features import FEATURES
    from xctdask.pseudolabels.fit1d import METHODS

    parser = argparse.ArgumentParser(
        prog="xctdask", description="Segment terabyte X-ray CT volumes on Dask."
    )
    parser.add_argument("--version", action="version", version=f"xctdask {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def cluster_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--storage-options",
            metavar="JSON",
            help="fsspec options for s3:// gs:// https:// paths, e.g. "
            '\'{"endpoint_url": "http://host:9000", "key": "...", "secret": "..."}\'',
        )
        p.add_argument(
            "--scheduler",
            metavar="ADDRESS",
            help="address of a running Dask scheduler (default: start a local cluster)",
        )
        p.add_argument(
            "--workers",
            type=_positive,
            default=None,
            help="worker processes of the local cluster (default: cores / 2)",
        )

    def phantom_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--kind",
            choices=KINDS,
            default="fibre-composite",
            help="phantom sample (default: %(default)s)",
        )
        p.add_argument(
            "--shape",
            type=_positive,
            nargs=3,
            default=(64, 256, 256),
            metavar=("Z", "Y", "X"),
            help="phantom voxels (default: 64 256 256)",
        )
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    p = sub.add_parser("info", help="shape, dtype, chunks, voxel size and intensity range")
    p.add_argument("path", help="a volume: Zarr store or URL, TIFF, raw, HDF5/NeXus, .npy")
    p.add_argument("--dataset", help="array inside an HDF5 file or Zarr group")
    p.add_argument("--level", type=int, default=0, help="OME-Zarr multiscale level")
    p.add_argument("--no-stats", action="store_true", help="skip the min/max pass over the data")
    p.add_argument(
        "--check",
        action="store_true",
        help="read every chunk of a Zarr store: report missing and undecodable ones (exit 2)",
    )
    cluster_options(p)
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("convert", help="any readable volume to Zarr (resumable)")
    p.add_argument("input", help="the volume to convert (any readable format)")
    p.add_argument("output", help="the Zarr store to write (resumes an interrupted write)")
    p.add_argument(
        "--chunks",
        type=_positive,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help="storage chunks (default: the input's own, else Dask's)",
    )
    p.add_argument("--dataset", help="array inside an HDF5 file or Zarr group")
    p.add_argument("--voxel-size", type=float, help="voxel size to record")
    p.add_argument("--unit", help="unit of the voxel size, e.g. micrometer")
    p.add_argument(
        "--multiscale",
        type=int,
        metavar="LEVELS",
        help="write an OME-Zarr pyramid with this many levels",
    )
    p.add_argument("--kind", choices=("image", "labels"), help="how to downsample")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output store")
    cluster_options(p)
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("phantom", help="write a synthetic CT phantom (labels, attenuation, HQ, LQ)")
    p.add_argument("output", help="folder to hold the four Zarr stores")
    phantom_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    cluster_options(p)
    p.set_defaults(func=_cmd_phantom)

    p = sub.add_parser(
        "pseudo-labels", help="stage 1: label a volume by clustering its voxel intensities"
    )
    p.add_argument("input", help="the scan (any readable volume, or a (t, z, y, x) store)")
    p.add_argument("output", help="Zarr store for the uint8 labels (255 = unlabelled)")
    p.add_argument("--classes", type=_classes, default=3, help="k, or 'auto' (default: 3)")
    p.add_argument(
        "--method",
        choices=METHODS,
        default="kmeans",
        help="clustering of the histogram (default: kmeans; otsu is Multi-Otsu)",
    )
    p.add_argument(
        "--mask",
        choices=("none", "cylinder"),
        default="none",
        help="'cylinder': leave out the constant region outside the field of view",
    )
    p.add_argument("--bins", type=int, help="histogram bins for float volumes (default 8192)")
    p.add_argument(
        "--features",
        nargs="+",
        choices=FEATURES,
        default=["intensity"],
        help="voxel features: intensity (default), mean (the same methods on the local "
        "mean), or several (k-means on a voxel sample)",
    )
    p.add_argument(
        "--sigma",
        type=float,
        nargs="+",
        default=[1.0],
        metavar="S",
        help="scale (voxels) of the mean/std features: one number, or Z Y X (0 leaves an "
        "axis alone)",
    )
    p.add_argument("--dataset", help="array inside an HDF5 file or Zarr group")
    p.add_argument("--save-model", metavar="JSON", help="also write the fitted labeler here")
    p.add_argument(
        "--fit-step",
        type=int,
        default=None,
        metavar="T",
        help="a (t, z, y, x) input: the time step whose histogram sets the classes "
        "(default 0); every step is labelled with them",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace existing output and model files"
    )
    cluster_options(p)
    p.set_defaults(func=_cmd_pseudo_labels)

    p = sub.add_parser("predict", help="run a saved network over a volume (seamless tiles)")
    p.add_argument("input", help="the scan (any readable volume, or a (t, z, y, x) store)")
    p.add_argument("model", help="a network file from xctdask.models.save")
    p.add_argument("output", help="Zarr store for the result")
    p.add_argument(
        "--output",
        dest="output_kind",
        choices=OUTPUTS,
        default="labels",
        help="what to write (default: labels, uint8)",
    )
    p.add_argument("--tile", type=int, nargs="+", help="tile size (default 256 2-D, 64 3-D)")
    p.add_argument(
        "--overlap", type=float, default=0.5, help="share of a tile its neighbour overlaps (0.5)"
    )
    p.add_argument(
        "--blend", choices=BLENDS, default="gaussian", help="tile weights (default: gaussian)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="tiles per network call (8)")
    p.add_argument("--axes", default="z", help="slicing axes of a 2-D network: z, y, x or zyx")
    p.add_argument(
        "--device",
        default="auto",
        help="auto (each worker's GPU if it has one, else its CPU), cpu, cuda or cuda:N",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="autocast precision (default auto: bf16 on a GPU, fp32 on a CPU)",
    )
    p.add_argument("--dataset", help="array inside an HDF5 file or Zarr group")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output (an interrupted one resumes without it)",
    )
    cluster_options(p)
    p.set_defaults(func=_cmd_predict)

    def training_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--classes",
            type=int,
            default=None,
            help="number of classes (default 3; a fitted --segmenter keeps its own)",
        )
        p.add_argument("--labels", help="dense or sparse labels (255 = unlabelled)")
        p.add_argument("--clean", help="a high-quality scan of the same sample (stacked net)")
        p.add_argument(
            "--like",
            help="a low-quality scan the network will segment (a later time step, not "
            "necessarily aligned): training patches get its extra noise",
        )
        p.add_argument("--model", default="unet2d", help="network of the zoo (default unet2d)")
        p.add_argument(
            "--preset",
            default=None,
            help="a paper's setting (network, loss, optimiser, patch, batch): "
            "modular-unet-2d, modular-unet-2.5d, modular-unet-3d, sr-ct-unsupervised, "
            "stacked-denseuseg, pix2pix-pxct, unet-pxct",
        )
        p.add_argument("--context", type=int, default=7, help="2.5D slices (default 7)")
        p.add_argument(
            "--stack",
            choices=["volume", "slices"],
            default="volume",
            help="'slices': the input is a stack of unrelated 2-D images (each segmented "
            "on its own, no z-slab validation); default 'volume'",
        )
        p.add_argument(
            "--skip",
            dest="skip",
            action="store_const",
            const=True,
            default="auto",
            help="U-Net skip connections (default: on with --labels, off for pseudo labels)",
        )
        p.add_argument("--no-skip", dest="skip", action="store_const", const=False, help="no skips")
        p.add_argument("--depth", type=int, default=4, help="U-Net levels (default 4)")
        p.add_argument("--f0", type=int, default=16, help="first level's channels (16)")
        p.add_argument("--patch", type=int, default=128, help="training patch side (128)")
        p.add_argument("--steps", type=int, default=600, help="stage-2 steps")
        p.add_argument(
            "--steps-self-correct",
            type=_steps_or_auto,
            default="auto",
            help="stage-3 steps, or 'auto' (default: four passes over the volume, 150..900)",
        )
        p.add_argument(
            "--pseudo-sigma",
            type=_sigma_or_auto,
            default=0.0,
            help="scale (voxels) of a local mean the pseudo labels cluster instead of the "
            "raw voxel values (default 0: raw values); 'auto': 1 on noisy scans, else 0",
        )
        p.add_argument("--tile", type=int, help="inference tile (default 256 2-D, 64 3-D)")
        p.add_argument(
            "--overlap", type=float, default=0.5, help="inference tile overlap (default 0.5)"
        )
        p.add_argument("--batch-size", type=int, default=8, help="patches/tiles per batch")
        p.add_argument("--axes", default="z", help="slicing axes: z, y, x or zyx")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.add_argument(
            "--fit-step",
            type=int,
            default=None,
            metavar="T",
            help="a (t, z, y, x) input: the time step to train on (default 0); segment "
            "then labels every step",
        )
        p.add_argument("--dataset", help="array inside an HDF5 file or Zarr group")
        p.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    p = sub.add_parser("train", help="fit a Segmenter (unsupervised, labels, or clean scan)")
    p.add_argument("input", help="the scan to learn from (or a (t, z, y, x) store)")
    p.add_argument("segmenter", help="file to write the fitted Segmenter to")
    training_options(p)
    cluster_options(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("segment", help="segment a volume end to end (train, then infer)")
    p.add_argument("input", help="the scan to segment (or a (t, z, y, x) store)")
    p.add_argument("output", help="Zarr store for the uint8 labels")
    p.add_argument("--segmenter", help="use this fitted Segmenter instead of training")
    p.add_argument("--save-segmenter", metavar="FILE", help="also write the Segmenter")
    training_options(p)
    cluster_options(p)
    p.set_defaults(func=_cmd_segment)

    from xctdask.studies import STUDIES

    p = sub.add_parser(
        "study",
        help="rerun a paper's experiment on your scan or a phantom (JSON, PNG, summary)",
        description="Studies: " + ", ".join(STUDIES) + ". Without --volume a phantom of "
        "--size's shape is used. Runs in this process (add --scheduler to use a cluster).",
    )
    p.add_argument("name", choices=list(STUDIES), help="the experiment to rerun")
    p.add_argument("--volume", help="the scan (any readable volume); default a phantom")
    p.add_argument("--labels", help="its true labels (255 = unlabelled)")
    p.add_argument("--classes", type=_positive, help="number of classes (default from labels)")
    p.add_argument("--kind", choices=KINDS, default="fibre-composite", help="phantom kind")
    p.add_argument(
        "--size",
        choices=["tiny", "small", "medium"],
        default="small",
        help="networks, steps and phantom shape: tiny (seconds), small (minutes on a "
        "laptop, the default), medium (a GPU)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default="xctdask-study", help="output folder (default: %(default)s)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier result of this study in --out"
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a study option, e.g. --set counts=[1,2,4] or --set spacing=even (repeatable)",
    )
    cluster_options(p)
    p.set_defaults(func=_cmd_study)

    p = sub.add_parser(
        "report",
        help="classification report of two label volumes (Table D.5, confusion matrices)",
    )
    p.add_argument("pred", help="predicted labels")
    p.add_argument("truth", help="true labels (255 = unlabelled)")
    p.add_argument("--classes", type=_positive, help="number of classes")
    p.add_argument("--class-names", help="comma-separated class names")
    p.add_argument("--image", help="the scan, for class-wise gray-value histograms")
    p.add_argument("--bins", type=_positive, help="histogram bins (default: exact or 256)")
    p.add_argument("--out", help="folder for report.json and the figures")
    p.add_argument("--overwrite", action="store_true", help="replace a report.json in --out")
    cluster_options(p)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("demo", help="the main job on built-in defaults (phantom, local cluster)")
    p.add_argument("--out", default="xctdask-demo", help="output folder (default: %(default)s)")
    phantom_options(p)
    p.add_argument("--steps", type=int, default=400, help="stage-2 steps (default 400)")
    p.add_argument("--steps-self-correct", type=int, default=600, help="stage-3 steps")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    cluster_options(p)
    p.set_defaults(func=_cmd_demo)
    for command in sub.choices.values():
        command.set_defaults(flags=_flags(command))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xctdask`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (
        FileExistsError,
        FileNotFoundError,
        ValueError,
        TypeError,
        KeyError,
        OSError,
        FloatingPointError,  # a training loss that turned NaN: said in one line
    ) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        line = " ".join(_cli_words(str(message), args.flags).split())  # one line, in CLI words
        print(f"xctdask {args.command}: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
