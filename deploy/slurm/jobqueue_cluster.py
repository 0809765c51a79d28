"""Start Dask GPU workers through SLURM with dask-jobqueue, then segment a volume.

Run on a login node (pip install "xctdask[gpu,deploy]"):

    python jobqueue_cluster.py /data/scan.zarr /data/labels.zarr --jobs 4

Each SLURM job runs one ``dask-cuda-worker`` per GPU of its node (here 4 GPUs per job),
so every worker owns one GPU; xctdask sends the network to each worker once.
Adapt queue, account, walltime and the module/conda lines to your site.
"""

import argparse

from dask.distributed import Client
from dask_jobqueue import SLURMCluster

import xctdask as xd


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--queue", default="gpu")
    parser.add_argument("--account", default=None)
    args = parser.parse_args()

    cluster = SLURMCluster(
        queue=args.queue,
        account=args.account,
        cores=32,
        processes=4,  # one worker process per GPU
        memory="480GB",
        walltime="04:00:00",
        job_extra_directives=["--gres=gpu:4"],
        # dask-cuda-worker pins one GPU per process and sets CUDA_VISIBLE_DEVICES
        worker_command="dask-cuda-worker",
        job_script_prologue=["source ~/.bashrc", "conda activate xctdask"],
    )
    cluster.scale(jobs=args.jobs)
    with Client(cluster) as client:
        print("dashboard:", client.dashboard_link)
        client.wait_for_workers(4 * args.jobs, timeout=1800)
        vol = xd.open_volume(args.input)
        labels = xd.segment(vol, args.classes)
        xd.save_volume(labels, args.output, kind="labels")
    cluster.close()


if __name__ == "__main__":
    main()
