"""Test-session set-up shared by ``tests/`` and the doctests of ``xctdask/``.

The suite runs on two pytest processes (``-n 2`` in ``pyproject.toml``). Each gets one
PyTorch/OpenMP thread: two processes with a thread per core each oversubscribe the
cores, and PyTorch training then runs several times slower than with one thread.
"""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):  # one of several pytest processes
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "XCTDASK_TRAIN_THREADS"):
        os.environ.setdefault(variable, "1")
    import torch

    torch.set_num_threads(1)
