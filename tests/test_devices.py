"""bertlab.devices: CUDA, then MPS, then the CPU; bf16 where it pays, fp16 on older GPUs.

The hardware is stubbed, so every branch runs on any machine (this one has no GPU and maybe no
AMX): what torch reports decides, and each choice is checked both ways.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bertlab.devices as devices
from bertlab.devices import (
    autocast,
    cpu_bf16_is_faster,
    model_device,
    parse_device,
    resolve_device,
    resolve_precision,
)

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


def _hardware(monkeypatch, *, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


# -- the device ------------------------------------------------------------------------------


@pytest.mark.parametrize("cuda, mps, expected", [
    (True, True, "cuda"),  # CUDA first
    (True, False, "cuda"),
    (False, True, "mps"),  # then Apple's MPS
    (False, False, "cpu"),  # then the CPU
])
def test_the_best_device_is_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    _hardware(monkeypatch, cuda=cuda, mps=mps)
    assert resolve_device(None) == torch.device(expected)
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device("cpu") == CPU  # asked for: always the CPU


def test_a_device_that_is_missing_is_refused_naming_the_fix(monkeypatch):
    _hardware(monkeypatch, cuda=False, mps=False)
    with pytest.raises(ValueError, match=r"device='cuda' but PyTorch sees no CUDA GPU.*"
                                         r"use device=None to pick the best available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device(torch.device("cuda:1"))
    with pytest.raises(ValueError, match=r"device='mps' but Apple's MPS backend is not "
                                         r"available.*device=None"):
        resolve_device("mps")
    _hardware(monkeypatch, cuda=True, mps=True)  # present: given back as asked
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("mps") == MPS


@pytest.mark.parametrize("device", ["tpu", "gpu", "", 3.5])
def test_an_unknown_device_lists_the_known_ones(device):
    with pytest.raises(ValueError, match=r"unknown device .*use 'cpu', 'cuda', 'cuda:1', 'mps', "
                                         r"or None"):
        parse_device(device)


def test_parse_device_reads_names_and_devices():
    assert parse_device("cpu") == CPU
    assert parse_device("cuda:1") == torch.device("cuda", 1)  # parsing needs no GPU
    assert parse_device(MPS) == MPS


def test_model_device_is_where_the_weights_are():
    assert model_device(nn.ReLU()) == CPU  # no parameters: the CPU
    assert model_device(nn.Linear(2, 2)) == CPU
    assert model_device(nn.Linear(2, 2, device="meta")) == torch.device("meta")


# -- the precision ---------------------------------------------------------------------------


@pytest.mark.parametrize("capability, amx, faster", [
    ("AVX512", True, True),  # AMX tiles: bf16 autocast is faster
    ("AVX512", False, False),  # AVX512-BF16 without AMX: bf16 is slower
    ("AVX2", True, False),  # ATEN_CPU_CAPABILITY=avx2 on an AMX machine: like an AVX2 CPU
    ("AVX2", False, False),
    ("DEFAULT", False, False),  # Apple silicon and other ARM CPUs
])
def test_cpu_bf16_is_faster_follows_what_torch_reports(monkeypatch, capability, amx, faster):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert cpu_bf16_is_faster() is faster


@pytest.mark.parametrize("faster, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_the_cpu_is_bf16_only_where_it_is_faster(monkeypatch, faster,
                                                                    expected):
    monkeypatch.setattr(devices, "cpu_bf16_is_faster", lambda: faster)
    assert resolve_precision("auto", CPU) == expected
    # an explicit choice stays, whatever the CPU
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"


@pytest.mark.parametrize("bf16, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_precision_on_cuda_is_bf16_where_the_gpu_has_it_else_fp16(monkeypatch, bf16,
                                                                        expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert resolve_precision("auto", CUDA) == expected  # fp16: e.g. a T4
    assert resolve_precision("fp16", CUDA) == "fp16"
    assert resolve_precision("fp32", CUDA) == "fp32"


def test_auto_precision_on_mps_is_fp32(monkeypatch):
    monkeypatch.setattr(devices, "cpu_bf16_is_faster", lambda: True)  # a CPU's answer: unused
    assert resolve_precision("auto", MPS) == "fp32"


def test_precisions_a_device_cannot_run_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="precision='fp16' needs a GPU; on the CPU use 'bf16' "
                                         "or 'fp32'"):
        resolve_precision("fp16", CPU)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    with pytest.raises(ValueError, match="no bfloat16 support; use precision='fp16'"):
        resolve_precision("bf16", CUDA)
    with pytest.raises(ValueError, match="unknown precision 'fp8'; choose one of auto, fp32, "
                                         "bf16, fp16"):
        resolve_precision("fp8", CPU)


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_autocast_computes_in_the_resolved_precision(precision, dtype):
    layer = nn.Linear(4, 4)
    with autocast(CPU, precision):
        out = layer(torch.ones(2, 4))
    assert out.dtype == dtype
    assert layer.weight.dtype == torch.float32  # the weights themselves stay float32


def test_mps_refuses_a_float64_model_before_moving_it():
    from bertlab.devices import check_dtypes

    model = nn.Linear(2, 2).double()
    with pytest.raises(TypeError, match="no float64.*model.float"):
        check_dtypes(model, torch.device("mps"))
    check_dtypes(model, torch.device("cpu"))  # the CPU has float64
    check_dtypes(model.float(), torch.device("mps"))


def test_a_missing_mps_operation_names_the_fallback():
    from bertlab.devices import explained_mps_gaps

    with pytest.raises(NotImplementedError, match="PYTORCH_ENABLE_MPS_FALLBACK=1"):
        with explained_mps_gaps(torch.device("mps")):
            raise NotImplementedError("aten::something is not implemented for MPS")
    with pytest.raises(NotImplementedError, match="^elsewhere$"):  # other devices: untouched
        with explained_mps_gaps(torch.device("cpu")):
            raise NotImplementedError("elsewhere")
