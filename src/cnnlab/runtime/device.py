"""Where and how tensors run: device, mixed precision, memory format, threads.

"auto" picks what the hardware does fast: bf16 autocast only on CPUs with native bf16
(AMX or AVX512-BF16; elsewhere it is emulated and slower than fp32), bf16/fp16 on GPUs,
channels_last where oneDNN or cuDNN run convolutions in it natively.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import sys
from dataclasses import dataclass

import torch

from cnnlab.errors import CnnlabError
from cnnlab.fileio import GIB
from cnnlab.machine import MAX_PER_CORE, available_cpus

log = logging.getLogger("cnnlab")


def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16 in the CPU, and PyTorch allowed to use AVX-512 (ATEN_CPU_CAPABILITY=avx2
    with ONEDNN_MAX_CPU_ISA=AVX2 makes such a CPU behave as an AVX2-only one, for measuring)."""
    if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return False
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)


@dataclass
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # None = fp32
    channels_last: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def needs_grad_scaler(self) -> bool:
        return self.amp_dtype is torch.float16 and self.device.type == "cuda"

    def describe(self) -> str:
        precision = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[
            self.amp_dtype
        ]
        fmt = "channels_last" if self.channels_last else "contiguous"
        where = self.device.type
        if where == "cpu":  # the vector units set the speed: AVX2, AVX512 (with or without bf16)
            where = f"cpu {cpu_capability()}"
        return f"{where} / {precision} / {fmt} / {torch.get_num_threads()} threads"


def cpu_capability() -> str:
    """What PyTorch's CPU kernels use here (`AVX2`, `AVX512`, ...), with native bf16 named:
    times measured on one machine say little without it."""
    cap = torch.backends.cpu.get_cpu_capability()
    return f"{cap}+bf16" if cpu_has_native_bf16() else cap


def machine_line(precision: str = "auto", threads: int | None = None) -> str:
    """One line naming what a measured time depends on: the CPU model and capability, the
    threads, what `precision` resolves to here, torch; printed beside every benchmark's times."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:  # noqa: PTH123 - Linux only; elsewhere no model name
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    amp = choose_runtime("cpu", precision, "auto").amp_dtype if precision != "fp16" else None
    resolved = "bf16 autocast" if amp is torch.bfloat16 else "fp32"
    shown = (
        f"precision {precision} -> {resolved}" if precision == "auto" else f"precision {resolved}"
    )
    threads = threads or torch.get_num_threads()
    return (f"CPU {cpu_capability()}{f' ({model})' if model else ''}, {threads} threads, {shown}, "
            f"torch {torch.__version__}")  # fmt: skip


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CnnlabError(f"unknown device {name!r} (use auto, cpu or cuda[:N])") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("device cuda asked for, but no CUDA GPU is available here")
    return device


def choose_runtime(
    device: str = "auto", precision: str = "auto", channels_last: str = "auto"
) -> Runtime:
    dev = pick_device(device)
    if precision == "auto":
        if dev.type == "cuda":
            amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            amp = torch.bfloat16 if cpu_has_native_bf16() else None
    else:
        amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        if amp is torch.float16 and dev.type == "cpu":
            raise CnnlabError("precision fp16 is for GPUs; on a CPU use bf16 or fp32")
    if channels_last == "auto":
        cl = dev.type == "cuda" or torch.backends.mkldnn.is_available()
    else:
        cl = channels_last == "on"
    return Runtime(dev, amp, cl)


def set_threads(threads: int = 0) -> int:
    """Use `threads` intra-op threads (0 = every core this process may use), at most
    `MAX_PER_CORE` per core: a recipe written on a big machine still runs on a small one."""
    cores = available_cpus()
    if threads <= 0:
        # processes started together by torchrun on one machine share its cores
        threads = max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    elif threads > MAX_PER_CORE * cores:
        log.warning("train.threads %d is more than %d per core on %d cores: using %d",
                    threads, MAX_PER_CORE, cores, MAX_PER_CORE * cores)  # fmt: skip
        threads = MAX_PER_CORE * cores
    torch.set_num_threads(threads)
    return threads


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)
_heap_kept = False


def keep_allocations_on_heap() -> bool:
    """Serve large CPU tensors from glibc's heap instead of fresh mmap pages.

    glibc hands out every allocation above its mmap threshold (128 KB to 32 MB) as new
    pages and unmaps them on free, so each training step page-faults its activations and
    gradients in again, and the kernel zeroes every page first. On 2 AVX2 cores that cost
    up to a third of a small CNN's step (CIFAR cifarnet, batch 512: 1,037 -> 741 ms; MNIST
    fastnet, batch 256: 47 -> 29 ms). PyTorch's tuning guide reaches the same end with
    jemalloc or tcmalloc through LD_PRELOAD; this does it in-process with `mallopt`.
    Training processes only (the heap is kept, not given back to the system); a no-op
    where the C library is not glibc. Returns whether it applied.
    """
    global _heap_kept
    if _heap_kept:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _heap_kept = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, GIB))
    return _heap_kept
