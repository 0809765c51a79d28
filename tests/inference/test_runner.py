"""The runner's process-level resources: the GPU memory cap and cache release."""

from __future__ import annotations

import pytest
import torch

from xctdask.inference.runner import cap_cuda_memory, release_cuda_cache


def test_no_cap_on_the_cpu_and_none_unless_asked(monkeypatch):
    monkeypatch.delenv("XCTDASK_CUDA_MEMORY_FRACTION", raising=False)
    assert cap_cuda_memory(torch.device("cpu"), 0.5) is None
    if not torch.cuda.is_available():
        assert release_cuda_cache() is False


def test_a_bad_fraction_is_refused(monkeypatch):
    monkeypatch.setenv("XCTDASK_CUDA_MEMORY_FRACTION", "1.5")
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        cap_cuda_memory(torch.device("cuda", 0))


@pytest.mark.gpu
def test_the_cap_is_applied_on_a_gpu(monkeypatch):
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU")
    monkeypatch.setenv("XCTDASK_CUDA_MEMORY_FRACTION", "0.9")
    assert cap_cuda_memory(torch.device("cuda", 0)) == 0.9
    torch.ones(1, device="cuda")
    assert release_cuda_cache() is True
