"""Getting a Dask cluster: the one already running, a local one, or a remote scheduler."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["active_client", "connect", "gpu_count", "local", "peak_rss_mb"]


def gpu_count() -> int:
    """Number of CUDA GPUs visible to PyTorch (0 without CUDA or without PyTorch)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def active_client() -> Any | None:
    """The ``distributed.Client`` in use (the default one), or None.

    The one place xctdask asks whether a cluster is there: computations go to it,
    samplers cut patches on its workers, training leaves its local cores alone.
    """
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:
        return None


def local(
    n_workers: int | None = None,
    *,
    threads_per_worker: int | None = None,
    memory_limit: str | float = "auto",
    gpu: bool | None = None,
    dashboard_address: str | None = ":0",
    **cluster_kwargs: Any,
) -> Any:
    """A ``distributed.Client`` for this machine; an existing client is used as it is.

    If a client is already active (``distributed.get_client()`` finds one), it is
    returned and nothing else is started. Otherwise, when CUDA GPUs and ``dask-cuda``
    are present (and ``gpu`` is not False), a ``LocalCUDACluster`` with one worker per
    GPU is started; else a ``LocalCluster`` of worker processes sized to the machine:
    one worker per two cores (at least one), the cores shared out as threads.

    Parameters
    ----------
    n_workers, threads_per_worker, memory_limit, dashboard_address
        Passed to the cluster; defaults as above (``":0"`` picks a free dashboard port).
    gpu : bool, optional
        ``True`` requires a GPU cluster (error if impossible), ``False`` forbids one,
        ``None`` decides from what is installed.
    **cluster_kwargs
        Further cluster options.

    Examples
    --------
    >>> client = local(n_workers=1, threads_per_worker=1)   # doctest: +SKIP
    >>> client.dashboard_link                               # doctest: +SKIP
    """
    from distributed import Client, LocalCluster

    for name, value in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    client = active_client()
    if client is not None:
        return client
    n_gpus = gpu_count() if gpu is not False else 0
    if gpu and n_gpus == 0:
        raise RuntimeError("gpu=True but PyTorch sees no CUDA GPU")
    if n_gpus:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError as err:
            if gpu:
                raise ImportError("gpu=True needs dask-cuda: pip install 'xctdask[gpu]'") from err
        else:
            cluster = LocalCUDACluster(
                n_workers=n_workers,
                threads_per_worker=threads_per_worker or 1,
                dashboard_address=dashboard_address,
                **cluster_kwargs,
            )
            return Client(cluster)
    cores = os.cpu_count() or 1
    if n_workers is None:
        n_workers = max(1, cores // 2)
    if threads_per_worker is None:
        threads_per_worker = max(1, cores // n_workers)
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        memory_limit=memory_limit,
        processes=True,
        dashboard_address=dashboard_address,
        **cluster_kwargs,
    )
    return Client(cluster)


def connect(address: str, *, timeout: float = 10.0) -> Any:
    """A client on the scheduler at ``address`` (e.g. ``"tcp://10.0.0.5:8786"``).

    Raises
    ------
    OSError
        The scheduler cannot be reached within ``timeout`` seconds.
    """
    from distributed import Client

    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as err:
        raise OSError(f"cannot reach the Dask scheduler at {address!r}: {err}") from err


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (run it on workers with
    ``client.run(peak_rss_mb)``).

    On Linux it is ``VmHWM`` of ``/proc/self/status``, the high-water mark of this
    process's own memory. ``getrusage``'s ``ru_maxrss`` is not used there: it survives
    ``fork`` and ``exec``, so a worker spawned by a process that once held 1 GB reports
    at least 1 GB. Elsewhere ``ru_maxrss`` is the best there is.

    Examples
    --------
    >>> peak_rss_mb() > 0
    True
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS
