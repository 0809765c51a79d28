"""The deploy recipes parse: YAML loads, Python compiles, the sbatch script is valid bash."""

from __future__ import annotations

import py_compile
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


@pytest.mark.parametrize(
    "path",
    ["kubernetes/daskcluster.yaml", "kubernetes/segment-job.yaml", "docker/compose.yaml"],
)
def test_yaml_parses_and_names_the_gpu(path):
    yaml = pytest.importorskip("yaml")
    documents = list(yaml.safe_load_all((DEPLOY / path).read_text()))
    assert documents and all(isinstance(d, dict) for d in documents)
    text = (DEPLOY / path).read_text()
    assert "gpu" in text


def test_python_and_shell_recipes_are_valid(tmp_path):
    py_compile.compile(
        str(DEPLOY / "slurm/jobqueue_cluster.py"), cfile=str(tmp_path / "x.pyc"), doraise=True
    )
    result = subprocess.run(
        ["bash", "-n", str(DEPLOY / "slurm/xctdask.sbatch")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "dask cuda worker" in (DEPLOY / "slurm/xctdask.sbatch").read_text()


def _recipe():
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe", DEPLOY / "slurm/jobqueue_cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("gpu", [True, False])
def test_the_jobqueue_recipe_writes_a_job_script_that_starts_a_worker(gpu):
    """dask-jobqueue runs ``python -m <worker_command>``: the command must be a module
    that exists (``dask_cuda.cli`` for GPUs; distributed's worker module for CPUs)."""
    import importlib.util
    import re

    pytest.importorskip("dask_jobqueue")
    cluster = _recipe().make_cluster("gpu", gpu=gpu)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    (module,) = re.findall(r"python\S* -m (\S+) tcp://", script)
    if gpu:
        assert module == "dask_cuda.cli" and "--gres=gpu:4" in script
        assert "dask-cuda-worker" not in script
    else:
        assert importlib.util.find_spec(module) is not None, module
    result = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_dockerfile_installs_the_gpu_extra():
    text = (DEPLOY / "docker/Dockerfile").read_text()
    assert '"/src[gpu]"' in text and text.index("pip install torch") < text.index("/src[gpu]")


# --- Kubernetes manifests against the Dask operator's own resource definitions -------

OPERATOR = "dask-kubernetes==2026.3.0"
CRD_IN_WHEEL = "dask_kubernetes/operator/deployment/helm/dask-kubernetes-operator/crds/{}.yaml"


@pytest.fixture(scope="module")
def operator_wheel(tmp_path_factory):
    """The Dask operator's wheel, fetched from the package index (no cluster needed).

    Its helm chart ships the CustomResourceDefinitions the operator installs; the
    manifests are checked against those, not against a copy kept here.
    """
    import sys
    import zipfile

    folder = tmp_path_factory.mktemp("operator")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), OPERATOR],
        capture_output=True,
        text=True,
    )
    wheels = list(folder.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        pytest.skip(f"cannot download {OPERATOR} from the package index: {result.stderr[-300:]}")
    return zipfile.ZipFile(wheels[0])


def _openapi_schema(wheel, kind: str) -> dict:
    yaml = pytest.importorskip("yaml")
    crd = yaml.safe_load(wheel.read(CRD_IN_WHEEL.format(kind.lower())))
    assert crd["spec"]["names"]["kind"] == kind
    (served,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return crd["spec"]["group"], served["name"], served["schema"]["openAPIV3Schema"]


def _undeclared_fields(document, schema, path="") -> list[str]:
    """Fields the API server would silently prune: keys a structural schema does not
    declare (Kubernetes drops them instead of rejecting them, so a typo would pass)."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get(
        "x-kubernetes-int-or-string"
    ):
        return []
    found = []
    if isinstance(document, dict) and "properties" in schema:
        for key, value in document.items():
            if key in ("apiVersion", "kind", "metadata") and not path:
                continue
            if key not in schema["properties"]:
                found.append(f"{path}.{key}")
            else:
                found += _undeclared_fields(value, schema["properties"][key], f"{path}.{key}")
    elif isinstance(document, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, value in document.items():
            found += _undeclared_fields(value, schema["additionalProperties"], f"{path}.{key}")
    elif isinstance(document, list) and "items" in schema:
        for i, item in enumerate(document):
            found += _undeclared_fields(item, schema["items"], f"{path}[{i}]")
    return found


def _validator(schema):
    import jsonschema

    # Kubernetes formats (int-or-string, int32, quantity) are not JSON Schema formats:
    # validate types and structure, which is what would make `kubectl apply` fail.
    return jsonschema.Draft7Validator(schema)


def test_the_daskcluster_manifest_matches_the_operators_schema(operator_wheel):
    yaml = pytest.importorskip("yaml")
    group, version, schema = _openapi_schema(operator_wheel, "DaskCluster")
    (manifest,) = yaml.safe_load_all((DEPLOY / "kubernetes/daskcluster.yaml").read_text())
    assert manifest["apiVersion"] == f"{group}/{version}"
    assert manifest["kind"] == "DaskCluster"
    errors = [e.message for e in _validator(schema).iter_errors(manifest)]
    assert not errors, errors
    assert not _undeclared_fields(manifest, schema)
    # The worker starts a real entry point: dask-cuda's `dask cuda worker` subcommand.
    (worker,) = manifest["spec"]["worker"]["spec"]["containers"]
    assert worker["args"][:3] == ["dask", "cuda", "worker"], worker["args"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_the_schema_check_catches_a_typo(operator_wheel):
    """The check above could fail: a misspelt field and a wrong type are both found."""
    yaml = pytest.importorskip("yaml")
    _, _, schema = _openapi_schema(operator_wheel, "DaskCluster")
    (manifest,) = yaml.safe_load_all((DEPLOY / "kubernetes/daskcluster.yaml").read_text())
    manifest["spec"]["worker"]["replica"] = manifest["spec"]["worker"].pop("replicas")
    assert _undeclared_fields(manifest, schema) == [".spec.worker.replica"]
    manifest["spec"]["worker"]["replicas"] = "four"
    assert list(_validator(schema).iter_errors(manifest))


def test_the_segment_job_runs_a_command_the_cli_accepts():
    """The Job's container command parses with xctdask's own argument parser and
    points at the scheduler service the operator creates for the DaskCluster."""
    yaml = pytest.importorskip("yaml")
    from xctdask.cli import _parser as build_parser

    (job,) = yaml.safe_load_all((DEPLOY / "kubernetes/segment-job.yaml").read_text())
    (cluster,) = yaml.safe_load_all((DEPLOY / "kubernetes/daskcluster.yaml").read_text())
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[0] == "xctdask"
    args = build_parser().parse_args(command[1:])
    assert args.scheduler == f"tcp://{cluster['metadata']['name']}-scheduler:8786"
