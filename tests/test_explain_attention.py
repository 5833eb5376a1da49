"""Attention maps and rollout (`hf_bigmodel.explanation.attention_maps`) for every text architecture of the zoo and
a stock model: eager attention switched on for the call and the previous implementation restored, the same weights
as a model built eager, self- and cross-attention for the encoder-decoder, rollout by hand."""

from __future__ import annotations

import pytest
import torch
from test_explain import WORDS, make_tokenizer
from transformers import BertConfig, BertModel

import hf_bigmodel
from hf_bigmodel.explanation import AttentionMaps, ExplainError, attention_maps

TEXT_ARCHS = [name for name, arch in hf_bigmodel.ARCHITECTURES.items() if arch.image_processor is None]
TEXT = "the movie was good"


def tiny(arch: str, **overrides):
    preset = next(name for name in hf_bigmodel.ARCHITECTURES[arch].presets if name.endswith("-tiny"))
    task = "seq2seq-lm" if "seq2seq-lm" in hf_bigmodel.ARCHITECTURES[arch].heads else "base"
    extra = {"decoder_start_token_id": 2, "bos_token_id": 2, "eos_token_id": 3} if task == "seq2seq-lm" else {}
    return hf_bigmodel.create_model(preset, task=task, vocab_size=len(WORDS), pad_token_id=0, **extra, **overrides)


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


@pytest.mark.parametrize("arch", TEXT_ARCHS)
def test_maps_from_sdpa_model_equal_eager_and_sdpa_is_restored(arch, tokenizer):
    torch.manual_seed(0)
    model = tiny(arch).eval()
    assert model.config._attn_implementation == "sdpa"
    maps = attention_maps(model, TEXT, tokenizer, target_text="the film")
    assert model.config._attn_implementation == "sdpa"  # restored
    config = model.config
    seq = len(tokenizer(TEXT)["input_ids"])
    layers = getattr(config, "num_hidden_layers", None) or config.encoder_layers
    assert maps.self_attentions.shape[0] == layers and maps.self_attentions.shape[2:] == (seq, seq)
    torch.testing.assert_close(maps.self_attentions.sum(-1), torch.ones(maps.self_attentions.shape[:3]))
    assert maps.tokens == tokenizer.convert_ids_to_tokens(tokenizer(TEXT)["input_ids"])

    eager = type(model)(model.config).eval()  # the same weights, built with eager attention from the start
    eager.load_state_dict(model.state_dict())
    eager.set_attn_implementation("eager")
    encoding = tokenizer(TEXT, return_tensors="pt")
    with torch.no_grad():
        if config.is_encoder_decoder:
            decoder = torch.tensor([[2, *tokenizer(text_target="the film")["input_ids"][:-1]]])
            outputs = eager(**encoding, decoder_input_ids=decoder, output_attentions=True)
            torch.testing.assert_close(maps.self_attentions, torch.stack([a[0] for a in outputs.encoder_attentions]))
            torch.testing.assert_close(maps.cross_attentions, torch.stack([a[0] for a in outputs.cross_attentions]))
            torch.testing.assert_close(
                maps.decoder_attentions, torch.stack([a[0] for a in outputs.decoder_attentions])
            )
            assert maps.cross_attentions.shape[2:] == (decoder.shape[1], seq)
            assert maps.target_tokens == tokenizer.convert_ids_to_tokens(decoder[0].tolist())
        else:
            outputs = eager(**encoding, output_attentions=True)
            torch.testing.assert_close(maps.self_attentions, torch.stack([a[0] for a in outputs.attentions]))
            assert maps.cross_attentions is None


def test_encoder_decoder_without_target_uses_the_greedy_output(tokenizer):
    arch = next(a for a in TEXT_ARCHS if "seq2seq-lm" in hf_bigmodel.ARCHITECTURES[a].heads)
    model = tiny(arch).eval()
    maps = attention_maps(model, TEXT, tokenizer)
    generated = model.generate(**tokenizer(TEXT, return_tensors="pt"), max_new_tokens=32, do_sample=False)
    assert maps.target_tokens == tokenizer.convert_ids_to_tokens(generated[0, :-1].tolist())


def test_stock_model_and_restore_after_an_error(tokenizer):
    model = BertModel(
        BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, max_position_embeddings=16),
        add_pooling_layer=False,
    ).eval()  # fmt: skip
    model.set_attn_implementation("sdpa")
    maps = attention_maps(model, TEXT, tokenizer)
    assert maps.self_attentions.shape == (2, 2, 6, 6) and model.config._attn_implementation == "sdpa"
    with pytest.raises(Exception):  # noqa: B017  (20 tokens > 16 positions: the forward itself fails)
        attention_maps(model, " ".join(["film"] * 18), tokenizer)
    assert model.config._attn_implementation == "sdpa"


def test_rollout_by_hand():
    first = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])  # (heads, queries, keys)
    second = torch.tensor([[[0.2, 0.8], [1.0, 0.0]], [[0.2, 0.8], [1.0, 0.0]]])
    maps = AttentionMaps(tokens=["a", "b"], self_attentions=torch.stack([first, second]))
    mean1, mean2 = first.mean(0), second.mean(0)
    torch.testing.assert_close(maps.rollout(residual=False), mean2 @ mean1)
    with_residual = [(m + torch.eye(2)) / (m + torch.eye(2)).sum(-1, keepdim=True) for m in (mean1, mean2)]
    torch.testing.assert_close(maps.rollout(), with_residual[1] @ with_residual[0])
    torch.testing.assert_close(maps.rollout().sum(-1), torch.ones(2))
    with pytest.raises(ExplainError, match="No 'decoder' attentions"):
        maps.rollout("decoder")


def test_png_grid_and_json(tokenizer):
    arch = next(a for a in TEXT_ARCHS if "seq2seq-lm" in hf_bigmodel.ARCHITECTURES[a].heads)
    maps = attention_maps(tiny(arch).eval(), TEXT, tokenizer, target_text="the film")
    for which in ("self", "decoder", "cross"):
        assert maps.render_png(which)[:8] == b"\x89PNG\r\n\x1a\n"
    data = maps.to_dict()
    assert torch.tensor(data["cross_attentions"]).shape == maps.cross_attentions.shape
