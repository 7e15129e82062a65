"""Runtime choices: precision and memory format by what the hardware does fast, threads, and
the heap allocator setting that training processes use."""

import platform
import sys

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.runtime import device as runtime
from cnnlab.runtime.device import choose_runtime, keep_allocations_on_heap, set_threads


def test_auto_picks_fp32_without_native_bf16_and_bf16_with_it(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert choose_runtime("cpu").amp_dtype is None
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert choose_runtime("cpu").amp_dtype is torch.bfloat16
    assert choose_runtime("cpu", "fp32").amp_dtype is None
    assert choose_runtime("cpu", channels_last="off").channels_last is False
    with pytest.raises(CnnlabError, match="fp16 is for GPUs"):
        choose_runtime("cpu", "fp16")


def test_set_threads():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_threads(0) >= 1
    finally:
        torch.set_num_threads(before)


def test_heap_setting_applies_where_the_c_library_is_glibc():
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert keep_allocations_on_heap() is glibc  # elsewhere a no-op that says so
    assert keep_allocations_on_heap() is glibc  # idempotent
    big = torch.ones(64, 1024, 1024)  # 256 MB: from the heap on glibc, not a fresh mapping
    assert float(big.sum()) == 64 * 1024 * 1024
