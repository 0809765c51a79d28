"""Start Dask GPU workers through SLURM with dask-jobqueue, then segment a volume.

Run on a login node (pip install "xctdask[gpu,deploy]"):

    python jobqueue_cluster.py /data/scan.zarr /data/labels.zarr --jobs 4

Each SLURM job runs dask-cuda's worker, one worker process per GPU of its node (here 4
GPUs per job), so every worker owns one GPU; xctdask sends the network to each worker
once. ``--cpu`` starts plain CPU workers instead. Adapt queue, account, walltime and
the environment lines to your site; ``--print`` shows the job script and submits
nothing.

dask-jobqueue starts a worker as ``python -m <worker_command>``: the command is a
*module*. dask-cuda's is ``dask_cuda.cli`` (made runnable with ``python -m`` for exactly
this, dask-cuda PR #1181); ``"dask-cuda-worker"`` would read ``python -m
dask-cuda-worker``, which cannot start.
"""

from __future__ import annotations

import argparse

GPU_WORKER_MODULE = "dask_cuda.cli"
GPUS_PER_JOB = 4


def make_cluster(queue: str = "gpu", account: str | None = None, *, gpu: bool = True):
    """The SLURMCluster of this recipe (no job is submitted until ``scale``)."""
    from dask_jobqueue import SLURMCluster

    options = dict(
        queue=queue,
        account=account,
        cores=32,
        memory="480GB",
        walltime="04:00:00",
        job_script_prologue=["source ~/.bashrc", "conda activate xctdask"],
    )
    if gpu:
        options.update(
            processes=GPUS_PER_JOB,  # one worker process per GPU
            job_extra_directives=[f"--gres=gpu:{GPUS_PER_JOB}"],
            worker_command=GPU_WORKER_MODULE,
        )
    else:
        options.update(processes=4)
    return SLURMCluster(**options)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--queue", default="gpu")
    parser.add_argument("--account", default=None)
    parser.add_argument("--cpu", action="store_true", help="plain CPU workers")
    parser.add_argument("--print", action="store_true", help="show the job script only")
    args = parser.parse_args()

    cluster = make_cluster(args.queue, args.account, gpu=not args.cpu)
    if args.print:
        print(cluster.job_script())
        cluster.close()
        return

    from dask.distributed import Client

    import xctdask as xd

    cluster.scale(jobs=args.jobs)
    with Client(cluster) as client:
        print("dashboard:", client.dashboard_link)
        client.wait_for_workers(GPUS_PER_JOB * args.jobs, timeout=1800)
        vol = xd.open_volume(args.input)
        labels = xd.segment(vol, args.classes)
        xd.save_volume(labels, args.output, kind="labels")
    cluster.close()


if __name__ == "__main__":
    main()
