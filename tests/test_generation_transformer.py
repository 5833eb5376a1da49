"""Generation with the encoder-decoder Transformer under transformers 5 (greedy, beam search with length penalty,
sampling; cache on/off; static cache; padded batches) and the `translation` / `text2text-generation` pipelines,
locally and from a saved folder through trust_remote_code without hf_bigmodel. Weights use initializer_range=0.1
and an untied output projection so that continuations are not degenerate (a random model with tied embeddings
repeats its input token)."""

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, pipeline

from hf_bigmodel.models import ARCHITECTURES
from hf_bigmodel.testing import WITHOUT_HF_BIGMODEL, pad_rows, run_python
from hf_bigmodel.testing.model_cases import transformer_config

Seq2Seq = ARCHITECTURES["transformer"].heads["seq2seq-lm"]
PAD, BOS, EOS = 0, 1, 2
NEW_TOKENS = 8
WORDS = ["a", "dog", "cat", "runs", "sleeps", "on", "the", "grass", "red", "ball"]
WORDS += ["ein", "hund", "katze", "läuft", "schläft", "auf", "dem", "gras", "roter", "spielt"]


def make_model(**overrides) -> torch.nn.Module:
    # eos_token_id=None unless given: every row generates exactly NEW_TOKENS tokens, so rows compare one to one.
    overrides = {"initializer_range": 0.1, "tie_word_embeddings": False, "eos_token_id": None, **overrides}
    return Seq2Seq(transformer_config(**overrides)).eval()


def sources(lengths=(7, 3, 5)) -> list[torch.Tensor]:
    return [torch.randint(3, 128, (n,)) for n in lengths]


def greedy(model, ids, mask=None, **kwargs) -> torch.Tensor:
    return model.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------------------------------------------------


def test_greedy_starts_with_decoder_start_and_is_not_degenerate():
    model = make_model()
    out = greedy(model, sources((6,))[0][None])
    assert out.shape == (1, NEW_TOKENS + 1) and out[0, 0].item() == BOS
    assert len(set(out[0, 1:].tolist())) > 2


@pytest.mark.parametrize(
    "overrides", [{}, {"pre_norm": True, "position_embedding_type": "learned"}], ids=["post", "pre"]
)
def test_greedy_cache_equals_no_cache(overrides):
    model = make_model(**overrides)
    ids, mask = pad_rows(sources(), PAD, side="right")
    cached = greedy(model, ids, mask, use_cache=True)
    assert torch.equal(cached, greedy(model, ids, mask, use_cache=False))


def test_static_cache_equals_dynamic():
    model = make_model()
    ids, mask = pad_rows(sources(), PAD, side="right")
    dynamic = greedy(model, ids, mask)
    assert torch.equal(greedy(model, ids, mask, cache_implementation="static"), dynamic)
    beams = dict(num_beams=3, max_new_tokens=6)
    assert torch.equal(
        model.generate(ids, attention_mask=mask, cache_implementation="static", **beams),
        model.generate(ids, attention_mask=mask, **beams),
    )


def test_padded_batch_rows_equal_each_row_alone():
    model = make_model()
    rows = sources()
    ids, mask = pad_rows(rows, PAD, side="right")
    batched = greedy(model, ids, mask)
    for i, row in enumerate(rows):
        assert torch.equal(batched[i], greedy(model, row[None])[0]), f"row {i}"


@pytest.mark.parametrize("length_penalty", [1.0, 2.0])
def test_beam_search_with_length_penalty(length_penalty):
    model = make_model(eos_token_id=EOS)
    ids, mask = pad_rows(sources((6, 4)), PAD, side="right")
    kwargs = dict(num_beams=3, num_return_sequences=2, max_new_tokens=8, length_penalty=length_penalty)
    out = model.generate(ids, attention_mask=mask, return_dict_in_generate=True, output_scores=True, **kwargs)
    uncached = model.generate(ids, attention_mask=mask, use_cache=False, **kwargs)
    assert out.sequences.shape[0] == 4 and torch.equal(out.sequences, uncached)
    assert not torch.equal(out.sequences[0], out.sequences[1])
    # Each returned beam's score is its summed log-probability divided by (generated length) ** length_penalty.
    seqs = out.sequences
    with torch.no_grad():
        logits = model(
            input_ids=ids.repeat_interleave(2, 0),
            attention_mask=mask.repeat_interleave(2, 0),
            decoder_input_ids=seqs[:, :-1],
        ).logits
    token_logprobs = logits.log_softmax(-1).gather(-1, seqs[:, 1:, None])[..., 0]
    generated = torch.ones_like(token_logprobs)
    for i, seq in enumerate(seqs):
        ends = (seq[1:] == EOS).nonzero()
        if len(ends):
            generated[i, ends[0, 0] + 1 :] = 0
    expected = (token_logprobs * generated).sum(-1) / generated.sum(-1) ** length_penalty
    torch.testing.assert_close(out.sequences_scores, expected, rtol=1e-4, atol=1e-4)
    assert torch.all(out.sequences_scores[0::2] >= out.sequences_scores[1::2])  # best beam first


def test_sampling_with_seed_is_reproducible():
    model = make_model()
    ids = sources((5,))[0][None].repeat(4, 1)

    def sample(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return model.generate(ids, do_sample=True, top_k=50, temperature=1.5, max_new_tokens=NEW_TOKENS)

    first = sample(1)
    assert torch.equal(first, sample(1))
    assert not torch.equal(first, sample(2))
    assert len({tuple(row.tolist()) for row in first}) > 1


def test_generating_past_max_positions_raises():
    model = make_model()
    with pytest.raises(ValueError, match=r"The target is 65 tokens long, more than max_position_embeddings=64"):
        model.generate(sources((5,))[0][None], max_new_tokens=70, min_new_tokens=70)


def test_generate_returns_cross_attentions():
    model = Seq2Seq._from_config(make_model().config, attn_implementation="eager").eval()
    ids, mask = pad_rows(sources((6, 4)), PAD, side="right")
    out = model.generate(
        ids, attention_mask=mask, max_new_tokens=3, return_dict_in_generate=True, output_attentions=True
    )
    assert len(out.cross_attentions) == 3
    assert out.cross_attentions[1][0].shape == (2, 4, 1, 6)  # one new token attends over the 6 source positions
    assert torch.all(out.cross_attentions[1][0][1, :, :, 4:] == 0)  # never to padding


# --------------------------------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------------------------------


def make_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<pad>": PAD, "<s>": BOS, "</s>": EOS, "<unk>": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.fixture
def model_folder(tmp_path):
    model = make_model(eos_token_id=EOS, vocab_size=len(WORDS) + 4)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder, model


def test_translation_pipeline_from_a_folder(model_folder):
    folder, model = model_folder
    tokenizer = make_tokenizer()
    translate = pipeline("translation", model=str(folder), trust_remote_code=False)
    texts = ["ein hund läuft", "die katze schläft auf dem roter ball"]
    inputs = tokenizer(texts[0], return_tensors="pt")
    expected = tokenizer.decode(model.generate(**inputs, num_beams=2, max_new_tokens=6)[0], skip_special_tokens=True)
    assert translate(texts[0], num_beams=2, max_new_tokens=6) == [{"translation_text": expected}]
    # A list of texts gives one dict per text; several returned sequences give a list per text.
    assert [r["translation_text"] for r in translate(texts, max_new_tokens=6)] == [
        translate(t, max_new_tokens=6)[0]["translation_text"] for t in texts
    ]
    several = translate(texts[0], num_beams=3, num_return_sequences=2, max_new_tokens=6)
    assert len(several) == 2 and all(set(s) == {"translation_text"} for s in several)
    assert several[0] != several[1]
    generic = pipeline("text2text-generation", model=str(folder), trust_remote_code=False)
    assert generic(texts[0], num_beams=2, max_new_tokens=6) == [{"generated_text": expected}]


def test_translation_pipeline_serves_stock_seq2seq_models_too(tmp_path):
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(
        vocab_size=len(WORDS) + 4,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=32,
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=PAD,
    )
    MarianMTModel(config).save_pretrained(tmp_path)
    make_tokenizer().save_pretrained(tmp_path)
    translate = pipeline("translation", model=str(tmp_path))
    assert type(translate.model) is MarianMTModel
    (result,) = translate("ein hund", max_new_tokens=4)
    assert set(result) == {"translation_text"} and isinstance(result["translation_text"], str)


def test_translation_pipeline_rejects_non_text(model_folder):
    translate = pipeline("translation", model=str(model_folder[0]), trust_remote_code=False)
    with pytest.raises(TypeError, match=r"translation inputs must be strings, got int"):
        translate(42)


PIPELINE_CHILD = """
import json, sys
from transformers import pipeline
folder, text = sys.argv[1], sys.argv[2]
translate = pipeline("translation", model=folder, trust_remote_code=True)
print("RESULTS" + json.dumps({"output": translate(text, num_beams=2, max_new_tokens=6),
                              "module": type(translate).__module__, "model": type(translate.model).__module__}))
"""


def test_saved_pipeline_loads_without_hf_bigmodel(model_folder, tmp_path):
    folder, _ = model_folder
    translate = pipeline("translation", model=str(folder), trust_remote_code=False)
    text = "ein hund läuft auf dem gras"
    expected = translate(text, num_beams=2, max_new_tokens=6)
    shipped = tmp_path / "shipped"
    translate.save_pretrained(shipped)
    config = json.loads((shipped / "config.json").read_text())
    assert config["custom_pipelines"] == {
        "translation": {
            "impl": "translation.TranslationPipeline",
            "pt": ["AutoModelForSeq2SeqLM"],
            "type": "text",
        }
    }
    assert (shipped / "translation.py").is_file() and (shipped / "modeling_transformer.py").is_file()

    result = run_python(
        WITHOUT_HF_BIGMODEL + PIPELINE_CHILD, str(shipped), text, cwd=tmp_path, env={"HF_HOME": str(tmp_path / "hf")}
    )
    assert result["output"] == expected
    assert result["module"].startswith("transformers_modules.") and result["model"].startswith("transformers_modules.")


@pytest.mark.slow  # about 10 s of graph capture
def test_compiled_forward_and_compiled_static_generation_equal_eager():
    from transformers import CompileConfig

    model = make_model()
    ids, mask = pad_rows(sources((7, 5)), PAD, side="right")
    decoder_ids = torch.randint(3, 128, (2, 4))
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # graph capture without graph breaks
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
        got = compiled(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
    # Eager computes these few-row products with `few_rows_linear`, the compiled graph with linear(): float rounding
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    compile_config = CompileConfig(fullgraph=True, backend="eager")
    compile_config._compile_all_devices = True  # generate compiles the decode step on accelerators only otherwise
    static = greedy(model, ids, mask, cache_implementation="static", compile_config=compile_config)
    assert torch.equal(static, greedy(model, ids, mask))
