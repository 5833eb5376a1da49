"""`explain` on translation models (our encoder-decoder Transformer and the stock `MarianMTModel`): one explanation
per generated target token, attributing it to the source tokens with the target prefix held fixed. The attributed
forward goes through scaled source embeddings, so it is checked to equal the model's own forward; integrated
gradients are checked for completeness against logits recomputed independently."""

from __future__ import annotations

import pytest
import torch
from test_explain import WORDS, make_tokenizer
from transformers import MarianConfig, MarianMTModel

import hf_bigmodel
from hf_bigmodel.explanation import ExplainError, explain
from hf_bigmodel.explanation.cli import main as explain_main
from hf_bigmodel.explanation.text import source_embeddings

SOURCE = "the movie was good"
IDS = {"pad_token_id": 0, "decoder_start_token_id": 2, "bos_token_id": 2, "eos_token_id": 3}


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest: tiny models run fastest on one thread


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def translator(arch: str):
    torch.manual_seed(0)
    if arch == "stock-marian":
        config = MarianConfig(
            vocab_size=len(WORDS), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=32,
            scale_embedding=True, **IDS,
        )  # fmt: skip
        return MarianMTModel(config).eval()
    return hf_bigmodel.create_model("transformer-tiny", task="seq2seq-lm", vocab_size=len(WORDS), **IDS).eval()


ARCHS = ["transformer", "stock-marian"]


@pytest.mark.parametrize("arch", ARCHS)
def test_scaled_source_embeddings_give_the_plain_forward(arch, tokenizer):
    model = translator(arch)
    assert model.get_encoder().embed_scale == pytest.approx(32**0.5)  # so leaving the scale out would show
    encoding = tokenizer(SOURCE, return_tensors="pt")
    decoder = torch.tensor([[2, 5, 6]])
    with torch.no_grad():
        plain = model(**encoding, decoder_input_ids=decoder).logits
        embeds = source_embeddings(model)(encoding["input_ids"])
        through = model(inputs_embeds=embeds, attention_mask=encoding["attention_mask"], decoder_input_ids=decoder)
        # At initialisation the logits hardly depend on the source, so the encoder's output shows the scale.
        encoder = model.get_encoder()
        own = encoder(**encoding).last_hidden_state
        scaled = encoder(inputs_embeds=embeds, attention_mask=encoding["attention_mask"]).last_hidden_state
        unscaled = encoder(
            inputs_embeds=encoder.embed_tokens(encoding["input_ids"]), attention_mask=encoding["attention_mask"]
        ).last_hidden_state
    torch.testing.assert_close(through.logits, plain)
    torch.testing.assert_close(scaled, own)
    assert not torch.allclose(unscaled, own, atol=1e-2)


def baseline(tokenizer, input_ids: torch.Tensor) -> torch.Tensor:
    special = torch.tensor(tokenizer.get_special_tokens_mask(input_ids[0].tolist(), already_has_special_tokens=True))
    return torch.where(special.bool(), input_ids[0], torch.zeros_like(input_ids[0])).unsqueeze(0)


@pytest.mark.parametrize("arch", ARCHS)
def test_each_target_token_is_explained_by_the_source(arch, tokenizer):
    model = translator(arch)
    encoding = tokenizer(SOURCE, return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**encoding, max_new_tokens=4, do_sample=False, num_beams=1)
    explanations = explain(model, SOURCE, tokenizer=tokenizer, max_new_tokens=4)
    assert len(explanations) == generated.shape[1] - 1 >= 1
    source_tokens = tokenizer.convert_ids_to_tokens(encoding["input_ids"][0].tolist())
    for step, explanation in enumerate(explanations, start=1):
        prefix = generated[:, :step]
        assert explanation.kind == "translation" and explanation.target == int(generated[0, step])
        assert explanation.tokens == source_tokens and explanation.attributions.shape == (len(source_tokens),)
        assert explanation.target_tokens == tokenizer.convert_ids_to_tokens(prefix[0].tolist())
        with torch.no_grad():
            logits = model(**encoding, decoder_input_ids=prefix).logits[0, -1]
            base = model(
                input_ids=baseline(tokenizer, encoding["input_ids"]),
                attention_mask=encoding["attention_mask"],
                decoder_input_ids=prefix,
            ).logits[0, -1]
        change = (logits - base)[explanation.target].item()
        assert explanation.attributions.sum().item() == pytest.approx(change, abs=0.01 * abs(change) + 1e-4)
        assert explanation.convergence_delta <= 0.01 * abs(change) + 1e-4
        torch.testing.assert_close(torch.tensor(explanation.probabilities), logits.softmax(-1))


def test_a_given_target_text_and_the_other_methods(tokenizer):
    model = translator("transformer")
    target = "the film is great"
    expected = [2, *tokenizer(text_target=target)["input_ids"]]
    explanations = explain(model, SOURCE, tokenizer=tokenizer, target_text=target, method="gradient_x_input")
    assert [e.target for e in explanations] == expected[1:]
    assert explanations[-1].target_tokens == tokenizer.convert_ids_to_tokens(expected[:-1])
    lime = explain(model, SOURCE, tokenizer=tokenizer, target_text=target, method="lime", n_samples=40)
    assert len(lime) == len(expected) - 1 and lime[0].attributions.shape == explanations[0].attributions.shape
    with pytest.raises(ExplainError, match="target_text= .* applies to translation models only"):
        explain(hf_bigmodel.create_model("gpt-tiny", task="causal-lm", vocab_size=len(WORDS)), SOURCE,
                tokenizer=tokenizer, target_text=target)  # fmt: skip
    with pytest.raises(ExplainError, match="target= and attention= do not apply to generation"):
        explain(model, SOURCE, tokenizer=tokenizer, target="good")


def test_cli_translation_writes_a_folder_per_target_token(tokenizer, tmp_path, capsys):
    folder = tmp_path / "marian"
    translator("stock-marian").save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out = tmp_path / "out"
    capsys.readouterr()
    argv = [str(folder), "--text", SOURCE, "--target_text", "the film", "--output_dir", str(out)]
    assert explain_main(argv) == 0
    printed = capsys.readouterr().out
    # The labels as training sees them: the tokenizer's "[CLS] the film [SEP]", each behind the start token.
    assert printed.count("integrated_gradients: generated") == 4
    assert sorted(p.name for p in out.iterdir()) == [f"token_{step:02d}" for step in range(4)]
    saved = (out / "token_02" / "explanation.json").read_text()
    assert '"target_label": "film"' in saved and '"target_tokens"' in saved


def test_speech_and_vision_language_generators_are_refused_with_the_reason(tmp_path):
    from transformers import LlavaConfig, LlavaForConditionalGeneration, WhisperConfig, WhisperForConditionalGeneration

    sizes = {"d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
             "decoder_attention_heads": 2, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32, "num_mel_bins": 8,
             "max_source_positions": 16, "max_target_positions": 16}  # fmt: skip
    ids = {
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "decoder_start_token_id": 1,
        "begin_suppress_tokens": None,
    }
    whisper = WhisperForConditionalGeneration(WhisperConfig(vocab_size=64, **sizes, **ids))
    with pytest.raises(ExplainError, match=r"WhisperForConditionalGeneration: .* reads input_features, not input_ids"):
        explain(whisper, SOURCE)
    whisper.save_pretrained(tmp_path / "whisper")
    with pytest.raises(ExplainError, match="is not a model that AutoModelForSeq2SeqLM loads"):
        explain(tmp_path / "whisper", SOURCE)
    text = {"model_type": "llama", "vocab_size": 64, "hidden_size": 16, "intermediate_size": 32,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2}  # fmt: skip
    vision = {"model_type": "clip_vision_model", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
              "num_attention_heads": 2, "image_size": 8, "patch_size": 4}  # fmt: skip
    llava = LlavaForConditionalGeneration(LlavaConfig(text_config=text, vision_config=vision, image_token_id=63))
    with pytest.raises(ExplainError, match=r"LlavaForConditionalGeneration: .* is not an encoder-decoder"):
        explain(llava, SOURCE)
