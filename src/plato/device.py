"""Where and how tensors are computed: the device, bf16 autocast, the layout of activations."""

from __future__ import annotations

import functools

import torch

from plato.errors import PlatoError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto": a CUDA GPU if there is one, else Apple's MPS, else the CPU; else the device named,
    which must exist."""
    if str(device) != "auto":
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise PlatoError(f"unknown device '{device}': use auto, cpu, cuda or cuda:N") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise PlatoError(f"device '{device}' asked for, but no CUDA GPU is available")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@functools.cache  # asked on every autocast step: the answer never changes in a process
def native_bf16(device: torch.device) -> bool:
    """Does this device compute bf16 natively (a CUDA GPU from Ampere on, a CPU with AVX512-BF16
    or AMX)? Elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a build without oneDNN
            return False
    return False


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """bf16 for "bf16", and for "auto" where the device computes bf16 natively; else None."""
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bf16 autocast where `autocast_dtype` says so, else a disabled autocast (fp32)."""
    dtype = autocast_dtype(device, precision)
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def memory_format(channels_last: bool) -> torch.memory_format:
    """The layout of 4-d activations and batches: NHWC (channels last) or NCHW."""
    return torch.channels_last if channels_last else torch.contiguous_format


def layout_of(t: torch.Tensor) -> torch.memory_format:
    """The memory format a tensor is in: channels last for a 4-d NHWC tensor, else
    contiguous."""
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) \
            and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def free_memory(device: torch.device) -> int:
    """Memory free for a cache on `device`: CUDA's free memory, or Linux's MemAvailable; 0
    where unknown (no cache)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
