"""The GPT's training fast paths compute what the plain ones do: the chunked causal-LM loss equals transformers'
ForCausalLMLoss (value and gradient), the blockwise causal attention equals sdpa, and the rand-based dropout has
nn.Dropout's distribution. Plus a smoke run of both benchmarks."""

from pathlib import Path

import pytest
import torch
from transformers.loss.loss_utils import ForCausalLMLoss

from hf_bigmodel.models.gpt import BigModelGPTConfig, BigModelGPTForCausalLM, modeling_gpt
from hf_bigmodel.models.gpt.cpu_kernels_gpt import causal_lm_loss, dropout_training

REPO = Path(__file__).resolve().parents[1]


def _loss_and_grad(loss_fn, logits, labels, vocab_size, **kwargs):
    logits = logits.clone().requires_grad_(True)
    loss = loss_fn(logits, labels, vocab_size, **kwargs)
    (loss * 3.0).backward()
    return loss.detach(), logits.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"num_items_in_batch": torch.tensor(123)}, {"num_items_in_batch": 77}, {"ignore_index": 7}, {"shift": True}],
)
def test_causal_lm_loss_matches_transformers(dtype, kwargs):
    torch.manual_seed(0)
    vocab_size = 4096  # 2048 rows x 4096 > LOSS_CHUNK_ELEMENTS: several chunks
    logits = (torch.randn(4, 512, vocab_size) * 3).to(dtype)
    labels = torch.randint(0, vocab_size, (4, 512))
    labels[0, :5] = -100
    labels[-1, -3:] = -100
    kwargs = dict(kwargs)
    if kwargs.pop("shift", False):
        kwargs["shift_labels"] = torch.roll(labels, -1, dims=1)
    if "ignore_index" in kwargs:
        labels = labels.masked_fill(labels == -100, kwargs["ignore_index"])
    expected_loss, expected_grad = _loss_and_grad(ForCausalLMLoss, logits, labels, vocab_size, **kwargs)
    loss, grad = _loss_and_grad(causal_lm_loss, logits, labels, vocab_size, **kwargs)
    assert loss.dtype == expected_loss.dtype == torch.float32
    assert grad.dtype == expected_grad.dtype == dtype
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad.float(), expected_grad.float(), rtol=1e-5, atol=2e-6)


def test_causal_lm_loss_all_ignored_is_nan_and_bad_target_raises():
    labels = torch.full((2, 5), -100)
    assert torch.isnan(causal_lm_loss(torch.randn(2, 5, 10), labels, 10))
    with pytest.raises(IndexError, match="out of bounds"):
        causal_lm_loss(torch.randn(1, 3, 10), torch.tensor([[1, 50, 2]]), 10)


def test_model_uses_chunked_loss_unless_replaced():
    model = BigModelGPTForCausalLM(BigModelGPTConfig.from_preset("gpt-tiny"))
    assert model.loss_function is causal_lm_loss
    model.loss_function = ForCausalLMLoss
    assert model.loss_function is ForCausalLMLoss


@pytest.mark.parametrize(
    "overrides, seq_len",
    [({}, 128), ({}, 300), ({"num_key_value_heads": 2, "position_embedding_type": "rope"}, 77)],
)
def test_blockwise_training_attention_matches_sdpa(monkeypatch, overrides, seq_len):
    torch.manual_seed(0)
    config = BigModelGPTConfig.from_preset("gpt-tiny", max_position_embeddings=512, initializer_range=0.5, **overrides)
    model = BigModelGPTForCausalLM(config).train()  # dropout 0: deterministic
    input_ids = torch.randint(0, config.vocab_size, (3, seq_len))

    def logits_and_grads():
        model.zero_grad()
        output = model(input_ids=input_ids, labels=input_ids)
        output.loss.backward()
        return output.logits.detach(), [p.grad.clone() for p in model.parameters()]

    sdpa_logits, sdpa_grads = logits_and_grads()  # fp32 without attention dropout: sdpa's own kernel
    monkeypatch.setattr(
        modeling_gpt.BigModelGPTAttention, "_use_blockwise_causal", lambda self, q, k, mask: mask is None
    )
    block_logits, block_grads = logits_and_grads()
    torch.testing.assert_close(block_logits, sdpa_logits, rtol=1e-5, atol=1e-4)
    for block_grad, sdpa_grad in zip(block_grads, sdpa_grads):
        torch.testing.assert_close(block_grad, sdpa_grad, rtol=1e-4, atol=1e-4 * sdpa_grad.abs().max().item())


def test_blockwise_path_only_where_exact():
    config = BigModelGPTConfig.from_preset("gpt-tiny", attention_dropout=0.1)
    attention = BigModelGPTForCausalLM(config).model.layers[0].self_attn
    q = torch.zeros(1, 4, 5, 8)
    assert attention.train()._use_blockwise_causal(q, q, None)
    assert not attention._use_blockwise_causal(q, torch.zeros(1, 4, 9, 8), None)  # cached prefix
    assert not attention._use_blockwise_causal(q, q, torch.zeros(1, 1, 5, 5, dtype=torch.bool))  # padding
    assert not attention.eval()._use_blockwise_causal(q, q, None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_training_distribution(dtype):
    torch.manual_seed(0)
    x = torch.ones(2_000_000, dtype=dtype, requires_grad=True)
    y = dropout_training(x, 0.1)
    y.sum().backward()
    assert y.dtype == dtype
    assert abs((y == 0).float().mean().item() - 0.1) < 1e-3
    kept = y[y != 0].float()
    torch.testing.assert_close(kept, torch.full_like(kept, torch.tensor(1 / 0.9, dtype=dtype).item()))
    assert torch.equal(x.grad, y.detach())  # the gradient is the same mask
    assert dropout_training(x, 0.0) is x
