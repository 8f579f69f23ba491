"""Device and dtype choice: auto prefers cuda, then mps, then cpu; float16 on GPUs, float32 on the CPU."""

from __future__ import annotations

import pytest
import torch

from pipeline.devices import default_dtype, resolve_device


def test_cpu_is_always_there_and_runs_float32() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert default_dtype(torch.device("cpu")) == torch.float32
    assert default_dtype("cpu") == torch.float32


def test_gpus_default_to_float16() -> None:
    assert default_dtype(torch.device("cuda", 0)) == torch.float16
    assert default_dtype(torch.device("mps")) == torch.float16


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert default_dtype("auto") == torch.float32
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert default_dtype("auto") == torch.float16
    with pytest.raises(ValueError, match=r"'cuda:3' does not exist.*1 CUDA device"):
        resolve_device("cuda:3")


def test_missing_or_unknown_devices_say_what_to_pass_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"'cuda' is not available.*device='auto'"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match=r"unknown device 'gpu0'.*'auto'"):
        resolve_device("gpu0")
