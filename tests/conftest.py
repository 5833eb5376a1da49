"""Shared fixtures: tiny configs of every GPT variant, built from the `gpt-tiny` preset."""

import random

import numpy as np
import pytest
import torch

from hf_bigmodel.models.gpt import BigModelGPTConfig

# The two families the GPT covers: GPT-2 (learned positions, LayerNorm, GELU, tied, biases) and Llama-style
# (rotary positions, RMSNorm, SwiGLU, grouped-query attention, untied, no biases).
GPT_VARIANTS = {
    "gpt2": dict(position_embedding_type="learned", norm_type="layernorm", mlp_type="gelu", bias=True),
    "llama": dict(
        position_embedding_type="rope",
        norm_type="rmsnorm",
        mlp_type="swiglu",
        num_key_value_heads=2,
        bias=False,
        tie_word_embeddings=False,
    ),
}


def _make_gpt_config(variant: str = "gpt2", **overrides) -> BigModelGPTConfig:
    return BigModelGPTConfig.from_preset("gpt-tiny", **{**GPT_VARIANTS[variant], **overrides})


@pytest.fixture(scope="session")
def make_gpt_config():
    """`make_gpt_config("llama", initializer_range=0.5)`: a fresh tiny config (never shared between models)."""
    return _make_gpt_config


@pytest.fixture(params=list(GPT_VARIANTS))
def gpt_variant(request) -> str:
    """Parametrizes a test over every GPT variant."""
    return request.param


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state, so a tolerance that holds once holds in CI too (a
    tolerance checked on one draw of random weights can fail on another)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
