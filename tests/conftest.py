"""Shared fixtures for every architecture. Tiny configs and inputs come from `hf_bigmodel.testing.model_cases` (one
`ModelCase` per architecture); plain helpers that child processes or other files also need live in
`hf_bigmodel.testing`."""

import random

import numpy as np
import pytest
import torch

from hf_bigmodel.testing.model_cases import GPT_VARIANTS, model_case


@pytest.fixture(scope="session")
def tiny_config():
    """`tiny_config("bert", classifier_dropout=0.2)`, `tiny_config("gpt", "llama")`: a fresh tiny config of any
    registered architecture (never shared between models), from its ModelCase."""

    def make(arch: str, variant: str | None = None, **overrides):
        case = model_case(arch)
        return case.make_config(variant or next(iter(case.variants)), **overrides)

    return make


@pytest.fixture(scope="session")
def make_gpt_config(tiny_config):
    """`make_gpt_config("llama", initializer_range=0.5)`: a fresh tiny GPT config (never shared between models)."""
    return lambda variant="gpt2", **overrides: tiny_config("gpt", variant, **overrides)


@pytest.fixture(params=list(GPT_VARIANTS))
def gpt_variant(request) -> str:
    """Parametrizes a test over every GPT variant (GPT-2 style and Llama style)."""
    return request.param


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models run fastest on one thread: with several threads on a busy 2-core machine each small op waits on
    the others (measured: 12 greedy GPT tokens take seconds instead of ~0.1 s). Use it per module with
    `pytestmark = pytest.mark.usefixtures("single_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state, so a tolerance that holds once holds in CI too (a
    tolerance checked on one draw of random weights can fail on another)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
