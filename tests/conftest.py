"""Shared fixtures: real data paths, a scheduler that forbids computing, a LocalCluster."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import dask
import pytest

# real CT data (see docs/data.md): $XCTDASK_TEST_DATA, else the development set-up's
# shared/data folder beside the repository
SHARED_DATA = Path(
    os.environ.get(
        "XCTDASK_TEST_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)


def _refuse(*args, **kwargs):
    raise RuntimeError("this code computed a Dask graph although it should stay lazy")


@contextmanager
def raise_if_dask_computes():
    """Any Dask compute inside the block raises (the xarray testing idea)."""
    with dask.config.set(scheduler=_refuse):
        yield


@pytest.fixture
def no_compute():
    return raise_if_dask_computes


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real CT data not found at {SHARED_DATA}: docs/data.md says where the files "
            "come from; set XCTDASK_TEST_DATA to their folder"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def local_cluster():
    """A real distributed LocalCluster with two worker processes."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.fixture
def client(local_cluster):
    from distributed import Client

    with Client(local_cluster) as c:
        yield c
