"""Where a model runs and in which precision: CUDA, then Apple MPS, then the CPU; bf16 where it pays.

    device = resolve_device(None)                   # the best available
    precision = resolve_precision("auto", device)   # "bf16", "fp16" or "fp32"
    with autocast(device, precision):
        loss = model(**batch).loss

bf16 keeps float32's range, so it needs no loss scaling; fp16 (older GPUs) trains with a
gradient scaler. On a CPU bf16 is chosen only where it is faster (:func:`cpu_bf16_is_faster`).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from bertlab.config import PRECISIONS

__all__ = ["autocast", "check_dtypes", "cpu_bf16_is_faster", "explained_mps_gaps", "model_device",
           "parse_device", "resolve_device", "resolve_precision"]


def parse_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` of a known type, or a ValueError that lists them."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:1', 'mps', "
            "or None to pick the best available"
        )
    return parsed


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: the one asked for, else CUDA, then Apple MPS, then the CPU."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    parsed = parse_device(device)
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but PyTorch sees no CUDA GPU here (torch.cuda.is_available() is "
            "False); use device=None to pick the best available device"
        )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device={device!r} but Apple's MPS backend is not available here; "
            "use device=None to pick the best available device"
        )
    return parsed


def cpu_bf16_is_faster() -> bool:
    """True where bf16 autocast beats float32 on this CPU: AMX tiles, used by torch's kernels.

    Measured (benchmarks/README.md): with AMX a pretraining step is ~1.5x faster in bf16; with
    AVX512-BF16 alone (Intel without AMX, AMD Zen 4) it is ~1.2x *slower*; with AVX2 alone bf16
    matrix products are emulated, ~70x slower. The instruction set is the one torch reports, so
    ``ATEN_CPU_CAPABILITY=avx2`` (a stand-in for another CPU) also gets that CPU's precision.
    """
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        return False
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``"auto"`` into ``"bf16"``, ``"fp16"`` or ``"fp32"`` for ``device``; check the others.

    bf16 keeps float32's range, so it needs no loss scaling: used on GPUs that have it and on CPUs
    where it is faster (AMX, see ``cpu_bf16_is_faster``). fp16 (with a gradient scaler) is for
    older GPUs such as the T4.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and cpu_bf16_is_faster():
            return "bf16"
        return "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision='fp16' needs a GPU; on the CPU use 'bf16' or 'fp32'")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            "this GPU has no bfloat16 support; use precision='fp16' (with loss scaling) or 'auto'"
        )
    return precision


def autocast(device: torch.device, precision: str):
    """The autocast context for a resolved precision (fp32: a context that does nothing)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def model_device(model: nn.Module) -> torch.device:
    """Where a model's weights are (the CPU for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def check_dtypes(model: nn.Module, device: torch.device) -> None:
    """Refuse, before moving anything, a float64 model for Apple's MPS, which has no float64."""
    if device.type != "mps":
        return
    doubles = [name for name, t in (*model.named_parameters(), *model.named_buffers())
               if t.dtype == torch.float64]
    if doubles:
        raise TypeError(f"Apple's MPS backend has no float64, and {len(doubles)} tensors of the "
                        f"model are float64 (e.g. {doubles[0]}); convert it with model.float(), "
                        "or train on the CPU with device='cpu'")


@contextlib.contextmanager
def explained_mps_gaps(device: torch.device):
    """On MPS, an operation that has no MPS kernel raises NotImplementedError: add the way out.

    PyTorch can run such operations on the CPU instead, but only when the environment variable
    is set before torch is imported, so the fix is a restart, which the message says.
    """
    try:
        yield
    except NotImplementedError as error:
        if device.type != "mps":
            raise
        raise NotImplementedError(
            f"{error}\nThis operation has no kernel on Apple's MPS backend. Restart Python with "
            "PYTORCH_ENABLE_MPS_FALLBACK=1 set before torch is imported (such operations then "
            "run on the CPU), or train with device='cpu'.") from error
