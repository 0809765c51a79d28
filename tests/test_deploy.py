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
