"""The zoo's models next to the stock transformers models of the same shape, in the tools users combine them with
(issue 14): the old `past_key_values=` keyword, bfloat16 loading, padding-free packed rows, PEFT's default target
modules, dynamic quantization, and config errors. Each test runs the same step on a tiny stock model (GPT-2, BERT,
Marian) where stock has a behaviour to match, and fails where ours differs.
"""

import warnings

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    MarianConfig,
    MarianMTModel,
)

from hf_bigmodel.models import ARCHITECTURES

peft = pytest.importorskip("peft")


def _tiny(arch: str, task: str, **overrides):
    row = ARCHITECTURES[arch]
    config = row.config_class.from_preset(f"{arch}-tiny", **overrides)
    return row.heads[task](config).eval()


def _stock(arch: str):
    """The tiny stock model of the same shape as `_tiny(arch, ...)`'s."""
    if arch == "gpt":
        return GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=256, n_positions=128)).eval()
    if arch == "bert":
        config = BertConfig(
            vocab_size=256, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
        )
        return BertForSequenceClassification(config).eval()
    config = MarianConfig(
        vocab_size=128,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=0,
        decoder_start_token_id=0,
    )
    return MarianMTModel(config).eval()


# --------------------------------------------------------------------------------------------------------------------
# 1. the pre-5.x keyword `past_key_values=`
# --------------------------------------------------------------------------------------------------------------------


def _decoder_inputs(model, ids: torch.Tensor) -> dict:
    if model.config.is_encoder_decoder:
        source = torch.arange(5, 10).expand(ids.shape[0], 5)  # the same source for every call
        return {"input_ids": source, "decoder_input_ids": ids}
    return {"input_ids": ids}


def _step_inputs(model, prefix: dict, ids: torch.Tensor) -> dict:
    if model.config.is_encoder_decoder:
        return {"input_ids": prefix["input_ids"], "decoder_input_ids": ids}
    return {"input_ids": ids}


@pytest.mark.parametrize("arch,task", [("gpt", "causal-lm"), ("transformer", "seq2seq-lm")])
def test_old_past_key_values_keyword_decodes_with_the_cache(arch, task):
    """A hand-written decoding loop that passes the cache as `past_key_values=` gets the logits of the full forward
    (with a FutureWarning), as stock models do; before, ours ignored the keyword and decoded without the cache."""
    for model in (_tiny(arch, task), _stock(arch)):
        ids = torch.randint(3, 100, (1, 6))
        full = model(**_decoder_inputs(model, ids)).logits
        prefix = _decoder_inputs(model, ids[:, :4])
        cache = model(**prefix, use_cache=True).cache
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step = model(**_step_inputs(model, prefix, ids[:, 4:5]), past_key_values=cache).logits
        torch.testing.assert_close(step[:, -1], full[:, 4], rtol=1e-4, atol=1e-4)
        assert any("past_key_values" in str(w.message) for w in caught), type(model).__name__


def test_peft_prefix_tuning_reaches_the_attention():
    """PEFT prefix tuning passes its virtual tokens' keys and values as `past_key_values=`: its output must be the
    model's output with that prefix passed as `cache=` (it was the output without the prefix when the keyword was
    ignored), for ours as for GPT-2."""
    for model in (_tiny("gpt", "causal-lm"), _stock("gpt")):
        ids = torch.randint(3, 100, (1, 6))
        config = peft.PrefixTuningConfig(task_type=peft.TaskType.CAUSAL_LM, num_virtual_tokens=3)
        tuned = peft.get_peft_model(model, config)
        with torch.no_grad():
            for parameter in tuned.prompt_encoder.parameters():
                parameter.normal_()
        out = tuned(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        prefix = tuned.get_prompt(batch_size=1)
        expected = model(input_ids=ids, attention_mask=torch.ones(1, 3 + 6, dtype=torch.long), cache=prefix).logits
        torch.testing.assert_close(out, expected)
        assert not torch.allclose(out, model(ids).logits, atol=1e-3), type(model).__name__


# --------------------------------------------------------------------------------------------------------------------
# 3. loading in bfloat16
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["dtype", "saved"])
def test_transformer_runs_after_loading_in_bfloat16(tmp_path, how):
    """`from_pretrained(dtype=torch.bfloat16)` and a folder saved in bfloat16 both run and generate, as Marian does;
    the fixed sinusoidal table stays float32 and is cast where it is added."""
    model = _tiny("transformer", "seq2seq-lm")
    if how == "dtype":
        model.save_pretrained(tmp_path)
        loaded = type(model).from_pretrained(tmp_path, dtype=torch.bfloat16)
    else:
        model.to(torch.bfloat16).save_pretrained(tmp_path)
        loaded = type(model).from_pretrained(tmp_path)
    assert loaded.dtype == torch.bfloat16
    inputs = loaded.dummy_inputs
    logits = loaded(**inputs).logits
    assert logits.dtype == torch.bfloat16
    reference = model.float()(**inputs).logits
    torch.testing.assert_close(logits.float(), reference, rtol=0.1, atol=0.1)  # bfloat16 rounding only
    assert (
        loaded.generate(inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=3).shape[0] == 2
    )


# --------------------------------------------------------------------------------------------------------------------
# 4. padding-free packed rows (TRL's packing=True)
# --------------------------------------------------------------------------------------------------------------------


def test_packed_row_longer_than_max_positions_runs_like_gpt2():
    """A row of two packed sequences (100 + 60 tokens, max_position_embeddings=128) with restarting position_ids runs,
    as GPT-2 runs it; the first sequence's logits are those it has alone."""
    ids = torch.randint(3, 200, (1, 160))
    position_ids = torch.cat([torch.arange(100), torch.arange(60)]).unsqueeze(0)
    for model in (_tiny("gpt", "causal-lm"), _stock("gpt")):
        assert model.config.max_position_embeddings == 128
        logits = model(ids, position_ids=position_ids).logits
        assert logits.shape == (1, 160, model.config.vocab_size)
        torch.testing.assert_close(logits[:, :100], model(ids[:, :100]).logits, rtol=1e-4, atol=1e-4)


def test_packed_row_with_an_invalid_position_is_refused():
    model = _tiny("gpt", "causal-lm")
    ids = torch.randint(3, 200, (1, 10))
    with pytest.raises(ValueError, match=r"position_ids go up to 130, beyond max_position_embeddings=128"):
        model(ids, position_ids=torch.arange(121, 131).unsqueeze(0))
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=128"):
        model(torch.randint(3, 200, (1, 129)))  # without position_ids the row is one sequence: still refused


# --------------------------------------------------------------------------------------------------------------------
# 7. PEFT's default target modules
# --------------------------------------------------------------------------------------------------------------------

PEFT_CASES = {
    "gpt": ("causal-lm", peft.TaskType.CAUSAL_LM),
    "bert": ("sequence-classification", peft.TaskType.SEQ_CLS),
    "transformer": ("seq2seq-lm", peft.TaskType.SEQ_2_SEQ_LM),
}


@pytest.mark.parametrize("arch", [name for name in ARCHITECTURES if name in PEFT_CASES])
def test_lora_without_target_modules_adapts_the_attention(arch):
    """`LoraConfig(task_type=...)` alone works, as for the stock model: LoRA lands on the attention projections and
    starts as the identity (B = 0). Stock Marian has no entry in PEFT's table (BART has, `q_proj`/`v_proj`): ours
    follows BART's, so the Transformer is checked alone."""
    task, task_type = PEFT_CASES[arch]
    for model in (_tiny(arch, task), _stock(arch)) if arch != "transformer" else (_tiny(arch, task),):
        inputs = _decoder_inputs(model, torch.randint(3, 100, (2, 6)))
        before = model(**inputs).logits
        tuned = peft.get_peft_model(model, peft.LoraConfig(task_type=task_type, r=4))
        adapted = {name.rsplit(".", 1)[-1] for name, module in tuned.named_modules() if hasattr(module, "lora_A")}
        assert adapted, type(model).__name__
        if model.config.model_type.startswith("bigmodel"):
            assert adapted <= {"qkv_proj", "q_proj", "kv_proj"}
        torch.testing.assert_close(tuned(**inputs).logits, before)


def test_every_text_architecture_has_peft_targets():
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as table

    for name, row in ARCHITECTURES.items():
        if name != "resnet":  # stock ResNet has no entry either: image models name their targets
            assert row.model_type in table, name


# --------------------------------------------------------------------------------------------------------------------
# 9. config errors
# --------------------------------------------------------------------------------------------------------------------

BAD_FIELDS = {
    "gpt": dict(hidden_size=30),
    "bert": dict(hidden_size=30),
    "transformer": dict(hidden_size=30),
    "resnet": dict(embedding_size=0),
}


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_inconsistent_config_raises_a_value_error(arch, tmp_path):
    """`except ValueError` catches a bad config, and so does `except StrictDataclassError` (what Llama's config
    raises); the message names the field. The check also runs before `save_pretrained`."""
    assert arch in BAD_FIELDS, f"add a bad field for {arch} to BAD_FIELDS"
    row = ARCHITECTURES[arch]
    field = next(iter(BAD_FIELDS[arch]))
    with pytest.raises(ValueError, match=f"`{field}`") as caught:
        row.config_class.from_preset(f"{arch}-tiny", **BAD_FIELDS[arch])
    assert isinstance(caught.value, StrictDataclassError)
    config = row.config_class.from_preset(f"{arch}-tiny")
    setattr(config, field, BAD_FIELDS[arch][field])
    with pytest.raises(ValueError, match=f"`{field}`"):
        config.save_pretrained(tmp_path)
