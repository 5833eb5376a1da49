"""What this machine computes well, asked of torch alone, so that the CLI, the demo and the benchmarks can choose a
precision before they import the models."""

from __future__ import annotations


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX), which is when bf16 autocast pays.
    Elsewhere bfloat16 is emulated: on an AMD EPYC with AVX2 alone, BERT4Rec trained about 6x slower under bf16
    autocast than in float32 (benchmarks/README.md)."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


__all__ = ["native_bf16"]
