import pytest

from xctdask import cluster


def test_existing_client_is_used_as_it_is(client):
    assert cluster.local() is client


def test_local_starts_a_cpu_cluster_without_gpus():
    if cluster.gpu_count():
        pytest.skip("this machine has GPUs")
    client = cluster.local(n_workers=1, threads_per_worker=1, dashboard_address=":0")
    try:
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 1
        assert client.submit(sum, [1, 2]).result() == 3
    finally:
        c = client.cluster
        client.close()
        c.close()


@pytest.mark.parametrize("options", [{"n_workers": 0}, {"threads_per_worker": -1}])
def test_no_workers_or_threads_is_a_clear_error(options):
    with pytest.raises(ValueError, match="must be a positive integer"):
        cluster.local(**options)  # was a ZeroDivisionError


def test_gpu_true_without_gpu_is_a_clear_error():
    if cluster.gpu_count():
        pytest.skip("this machine has GPUs")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        cluster.local(gpu=True)


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(OSError, match="cannot reach the Dask scheduler"):
        cluster.connect("tcp://127.0.0.1:1", timeout=2)


def _child_peak(queue) -> None:
    from xctdask.cluster import peak_rss_mb

    queue.put(peak_rss_mb())


def test_peak_memory_of_a_spawned_process_is_its_own():
    """``ru_maxrss`` survives fork and exec: a worker spawned by a process that held
    1 GB would report 1 GB. ``peak_rss_mb`` reports the child's own peak."""
    import multiprocessing

    import numpy as np

    from xctdask.cluster import peak_rss_mb

    held = np.ones(800 * 2**20, np.uint8)  # the parent holds 800 MiB while spawning
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child_peak, args=(queue,))
    child.start()
    peak = queue.get(timeout=120)
    child.join(timeout=60)
    assert peak_rss_mb() > 800
    assert 0 < peak < 400, peak
    del held
