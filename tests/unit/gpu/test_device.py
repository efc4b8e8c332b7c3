"""What the process sees of the GPUs: the count and a card's memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from analysis.gpu import device
from analysis.gpu.device import device_memory_gb, gpu_count


def test_no_driver_tool_means_no_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    device.device_memory_gb.cache_clear()
    try:
        assert device_memory_gb() is None
    finally:
        device.device_memory_gb.cache_clear()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_card_memory_agrees_with_torch() -> None:
    assert gpu_count() == torch.cuda.device_count() >= 1
    total_gb = [torch.cuda.get_device_properties(i).total_memory / 2**30
                for i in range(torch.cuda.device_count())]
    # nvidia-smi counts every card in PCI order, torch those of CUDA_VISIBLE_DEVICES: the
    # first card nvidia-smi reports is one of a node's (identical) cards
    measured = device_memory_gb(0)
    assert measured is not None
    assert any(measured == pytest.approx(t, rel=0.02) for t in total_gb)
