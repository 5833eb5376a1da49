"""What is GPT's own: presets and their shapes, tied and untied embeddings, rotary buffers and bf16 checkpoints after
meta-device loading, corrupt checkpoints and the classification heads' pooling. Tests loop over the two model
variants (GPT-2 style and Llama style) with tiny configs. The generic checks that every architecture shares (Auto
classes, config round trip, invalid configs, save/load, sharded save, head from a base checkpoint, activation
checkpointing, gradient accumulation, bf16, compile/export, LoRA, remote code) run in test_models_common.py."""

import json
import re

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
)

import hf_bigmodel
from hf_bigmodel.models import ARCHITECTURES
from hf_bigmodel.models.gpt import BigModelGPTConfig

GPT_HEADS = ARCHITECTURES["gpt"].heads
GPT_PRESETS = ARCHITECTURES["gpt"].presets


def _random_ids(config, batch: int = 2, seq: int = 9) -> torch.Tensor:
    # Ids >= 3 keep clear of the pad/bos/eos ids of the tiny preset.
    return torch.randint(3, config.vocab_size, (batch, seq))


# --------------------------------------------------------------------------------------------------------------------
# Registration, config, presets
# --------------------------------------------------------------------------------------------------------------------


def test_auto_config_for_model_with_standard_names():
    config = AutoConfig.for_model(
        "bigmodel_gpt",
        vocab_size=100,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=6,
        intermediate_size=96,
        max_position_embeddings=40,
    )
    assert isinstance(config, BigModelGPTConfig)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (100, 48, 3)
    assert (config.num_attention_heads, config.intermediate_size, config.max_position_embeddings) == (6, 96, 40)
    assert config.num_key_value_heads == 6 and config.head_dim == 8
    model = AutoModelForCausalLM.from_config(config)
    assert model.model.layers[0].mlp.up_proj.weight.shape == (96, 48)
    assert model.model.embed_positions.weight.shape == (40, 48)
    assert len(model.model.layers) == 3


@pytest.mark.parametrize("task", list(GPT_HEADS))
@pytest.mark.parametrize("preset", list(GPT_PRESETS))
def test_every_preset_builds(preset, task):
    config = hf_bigmodel.create_config(preset, num_labels=3)
    with torch.device("meta"):  # no memory or init time for the 124M presets
        model = GPT_HEADS[task](config)
    body = model if task == "base" else model.model
    attn = body.layers[0].self_attn
    q_rows, kv_rows = config.num_attention_heads * config.head_dim, config.num_key_value_heads * config.head_dim
    assert attn.qkv_proj.weight.shape == (q_rows + 2 * kv_rows, config.hidden_size)
    assert body.layers[-1].mlp.down_proj.weight.shape == (config.hidden_size, config.intermediate_size)
    assert len(body.layers) == config.num_hidden_layers
    assert body.embed_tokens.weight.shape == (config.vocab_size, config.hidden_size)
    if task == "causal-lm":
        assert (model.lm_head.weight is model.model.embed_tokens.weight) == config.tie_word_embeddings
    elif task != "base":
        assert model.score.weight.shape == (3, config.hidden_size)


def test_gpt2_preset_has_gpt2_small_parameter_count():
    with torch.device("meta"):
        model = GPT_HEADS["causal-lm"](BigModelGPTConfig.from_preset("gpt2-124m"))
    # The parameter count of OpenAI's `gpt2` checkpoint (lm_head tied, so counted once).
    assert model.num_parameters() == 124_439_808


def test_llama_preset_shapes():
    config = BigModelGPTConfig.from_preset("llama-style-124m")
    with torch.device("meta"):
        model = GPT_HEADS["causal-lm"](config)
    assert not hasattr(model.model, "embed_positions")
    assert model.model.rotary_emb.inv_freq.shape == (config.head_dim // 2,)
    assert config.intermediate_size == 2048  # 8/3 * 768 rounded up to a multiple of 64
    assert model.model.layers[0].self_attn.qkv_proj.bias is None
    assert isinstance(model.model.norm, torch.nn.RMSNorm)


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"Unknown GPT preset 'gpt-huge'.*gpt-tiny"):
        BigModelGPTConfig.from_preset("gpt-huge")


# --------------------------------------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------------------------------------


def test_tied_embeddings(tmp_path, make_gpt_config):
    model = GPT_HEADS["causal-lm"](make_gpt_config("gpt2"))
    assert model.lm_head.weight is model.model.embed_tokens.weight
    model.save_pretrained(tmp_path)
    # The tied copy is not stored twice.
    assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    torch.testing.assert_close(loaded.lm_head.weight, model.lm_head.weight, rtol=0, atol=0)

    loaded.resize_token_embeddings(300)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    assert loaded.lm_head.weight.shape == (300, loaded.config.hidden_size) and loaded.config.vocab_size == 300


def test_untied_embeddings(tmp_path, make_gpt_config):
    model = GPT_HEADS["causal-lm"](make_gpt_config("gpt2", tie_word_embeddings=False))
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    model.save_pretrained(tmp_path)
    assert "lm_head.weight" in load_file(tmp_path / "model.safetensors")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is not loaded.model.embed_tokens.weight
    torch.testing.assert_close(loaded.lm_head.weight, model.lm_head.weight, rtol=0, atol=0)
    assert not torch.equal(loaded.lm_head.weight, loaded.model.embed_tokens.weight)


@pytest.mark.parametrize("scaling", [1.0, 4.0], ids=["default", "linear"])
def test_rope_buffers_are_rebuilt_after_meta_loading(tmp_path, scaling, make_gpt_config):
    rope = {"rope_type": "default", "rope_theta": 500.0}
    if scaling != 1.0:
        rope = {"rope_type": "linear", "factor": scaling, "rope_theta": 500.0}
    config = make_gpt_config("llama", rope_parameters=rope)
    model = GPT_HEADS["causal-lm"](config).eval()
    model.save_pretrained(tmp_path)
    # Non-persistent buffers are not in the file: on the meta device they come back as empty memory unless
    # _init_weights rebuilds them.
    assert not any("inv_freq" in key for key in load_file(tmp_path / "model.safetensors"))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    head_dim = config.head_dim
    expected = 1.0 / (500.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim)) / scaling
    torch.testing.assert_close(loaded.model.rotary_emb.inv_freq, expected)
    torch.testing.assert_close(loaded.model.rotary_emb.original_inv_freq, expected)
    ids = _random_ids(config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_bf16_checkpoint_loads_as_bf16(tmp_path, gpt_variant, make_gpt_config):
    # _from_config(dtype=...) keeps the rotary inv_freq buffer in float32 as from_pretrained does (`.to(bf16)` would
    # round it, and positions with it).
    model = GPT_HEADS["causal-lm"]._from_config(make_gpt_config(gpt_variant), dtype=torch.bfloat16).eval()
    assert model.dtype == torch.bfloat16
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)  # dtype="auto" is the v5 default
    assert loaded.dtype == torch.bfloat16
    ids = _random_ids(model.config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)
    assert AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).dtype == torch.float32


def test_base_from_head_checkpoint_drops_only_head_params(tmp_path, make_gpt_config):
    head = GPT_HEADS["sequence-classification"](make_gpt_config("llama", num_labels=2))
    head.save_pretrained(tmp_path)
    base, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["unexpected_keys"] == {"score.weight"} and not info["missing_keys"]
    ids = _random_ids(head.config)
    with torch.no_grad():
        torch.testing.assert_close(base(ids).last_hidden_state, head.model(ids).last_hidden_state, rtol=0, atol=0)


def test_size_mismatch_raises_unless_ignored(tmp_path, make_gpt_config):
    GPT_HEADS["sequence-classification"](make_gpt_config(num_labels=2)).save_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=5)
    model, info = AutoModelForSequenceClassification.from_pretrained(
        tmp_path, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert model.score.weight.shape[0] == 5
    assert [key for key, *_ in info["mismatched_keys"]] == ["score.weight"]


# --------------------------------------------------------------------------------------------------------------------
# Corrupt checkpoints
# --------------------------------------------------------------------------------------------------------------------


def _corrupt(path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\x93garbage" * 64)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
def test_corrupt_checkpoint_gives_clear_error(tmp_path, how, sharded, make_gpt_config):
    GPT_HEADS["causal-lm"](make_gpt_config()).save_pretrained(tmp_path, max_shard_size="20KB" if sharded else "1GB")
    files = sorted(tmp_path.glob("*.safetensors"))
    bad = files[1] if sharded else files[0]
    _corrupt(bad, how)
    message = rf"{re.escape(str(bad))} is corrupt or truncated.*[Rr]e-save.*re-download"
    with pytest.raises(OSError, match=message) as excinfo:
        AutoModelForCausalLM.from_pretrained(tmp_path)
    assert excinfo.value.__cause__ is not None  # the safetensors error stays visible
    # Only the damaged shard is named.
    for other in files:
        if other != bad:
            assert str(other) not in str(excinfo.value)


def test_valid_checkpoint_with_other_errors_is_not_called_corrupt(tmp_path, make_gpt_config):
    GPT_HEADS["sequence-classification"](make_gpt_config(num_labels=2)).save_pretrained(tmp_path)
    with pytest.raises(RuntimeError) as excinfo:
        AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=5)
    assert "corrupt" not in str(excinfo.value)


# --------------------------------------------------------------------------------------------------------------------
# Classification heads
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_sequence_classification_pools_last_real_token(padding_side, gpt_variant, make_gpt_config):
    config = make_gpt_config(gpt_variant, num_labels=3)
    model = GPT_HEADS["sequence-classification"](config).eval()
    rows = [torch.randint(3, config.vocab_size, (n,)) for n in (7, 4, 1)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), config.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if padding_side == "left" else slice(0, len(row))
        ids[i, span], mask[i, span] = row, 1
    with torch.no_grad():
        batched = model(ids, attention_mask=mask).logits
        by_pad_id = model(ids).logits  # no mask: the last non-pad token is found from config.pad_token_id
        alone = torch.cat([model(row[None]).logits for row in rows])
    assert batched.shape == (3, 3)
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)
    if padding_side == "right":  # without a mask, left padding changes the positions: only right padding matches
        torch.testing.assert_close(by_pad_id, alone, rtol=1e-5, atol=1e-5)

    labels = torch.tensor([0, 2, 1])
    loss = model(ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(batched, labels))


def test_sequence_classification_without_pad_id_or_mask_raises(make_gpt_config):
    model = GPT_HEADS["sequence-classification"](make_gpt_config(pad_token_id=None, num_labels=2))
    with pytest.raises(ValueError, match=r"attention_mask.*pad_token_id"):
        model(_random_ids(model.config, batch=2))
    assert model(_random_ids(model.config, batch=1)).logits.shape == (1, 2)


def test_token_classification_shapes_and_loss(gpt_variant, make_gpt_config):
    config = make_gpt_config(gpt_variant, num_labels=5)
    model = GPT_HEADS["token-classification"](config).eval()
    ids = _random_ids(config, batch=3, seq=6)
    labels = torch.randint(0, 5, (3, 6))
    labels[0, :2] = -100  # ignored positions (e.g. sub-word continuations)
    out = model(ids, labels=labels)
    assert out.logits.shape == (3, 6, 5)
    expected = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 5), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)


def test_token_classification_accepts_use_cache_as_gpt2_does():
    """Every GPT head takes `use_cache=` as its stock GPT-2 twin does; token classification returns no cache."""
    from transformers import GPT2Config, GPT2ForTokenClassification

    stock = GPT2ForTokenClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32, num_labels=3)).eval()
    ours = (
        ARCHITECTURES["gpt"]
        .heads["token-classification"](BigModelGPTConfig.from_preset("gpt-tiny", vocab_size=32, num_labels=3))
        .eval()
    )
    ids = torch.randint(0, 32, (2, 5))
    with torch.no_grad():
        for use_cache in (True, False, None):
            assert stock(ids, use_cache=use_cache).logits.shape == (2, 5, 3)
            out = ours(ids, use_cache=use_cache)
            assert out.logits.shape == (2, 5, 3) and not hasattr(out, "past_key_values")
            torch.testing.assert_close(out.logits, ours(ids).logits)
