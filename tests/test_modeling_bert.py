"""What is BERT's own: presets, every head against transformers' own Bert* classes at the same weights (outputs, losses
and gradients), attention implementations, captured outputs, input errors, the MLM loss under `num_items_in_batch`,
the tied decoder, the pipelines (also on remote code in a clean process) and the model card. The generic checks that
every architecture shares (Auto classes, config round trip, invalid configs, save/load, sharded save, head from a
base checkpoint, activation checkpointing, gradient accumulation in the Trainer, bf16, compile/export, LoRA, every
head in a clean process with and without hf_bigmodel) run in test_models_common.py."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    BertConfig,
    BertModel,
)

import hf_bigmodel
from hf_bigmodel.conversion.convert_bert import HEAD_CLASSES, convert_bert_to_bigmodel
from hf_bigmodel.models import ARCHITECTURES
from hf_bigmodel.models.bert import BigModelBertConfig
from hf_bigmodel.testing import WITHOUT_HF_BIGMODEL, randomize_, run_python
from hf_bigmodel.testing.model_cases import BERT_VOCAB as VOCAB
from hf_bigmodel.testing.model_cases import auto_class, bert_rows
from hf_bigmodel.testing.model_cases import bert_config as make_config
from hf_bigmodel.testing.model_cases import bert_inputs as make_inputs

REPO = Path(__file__).resolve().parents[1]
BERT_HEADS = ARCHITECTURES["bert"].heads
BERT_PRESETS = ARCHITECTURES["bert"].presets
# Task name -> the stock transformers class with the same head.
STOCK_NAME = {
    "base": "BertModel",
    "pretraining": "BertForPreTraining",
    "masked-lm": "BertForMaskedLM",
    "next-sentence-prediction": "BertForNextSentencePrediction",
    "sequence-classification": "BertForSequenceClassification",
    "token-classification": "BertForTokenClassification",
    "question-answering": "BertForQuestionAnswering",
    "multiple-choice": "BertForMultipleChoice",
}


def output_tensors(out) -> dict[str, torch.Tensor]:
    return {k: v for k, v in out.items() if torch.is_tensor(v)}


@pytest.fixture(scope="module")
def stock_and_ours(tmp_path_factory) -> dict:
    """{task: (stock model, our model)} at identical weights: each stock head is saved with save_pretrained,
    converted with convert_bert_to_bigmodel and loaded with the Auto class of its task."""
    root = tmp_path_factory.mktemp("stock")
    pairs = {}
    for task, stock_name in STOCK_NAME.items():
        stock_class = HEAD_CLASSES[stock_name][0]
        num_labels = 2 if task == "question-answering" else 3
        config = BertConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=48,
            max_position_embeddings=64,
            num_labels=num_labels,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        stock = randomize_(stock_class(config)).eval()
        stock.save_pretrained(root / task)
        convert_bert_to_bigmodel(root / task, root / f"{task}-ours")
        ours = auto_class("bert", task).from_pretrained(root / f"{task}-ours", trust_remote_code=False).eval()
        assert type(ours) is BERT_HEADS[task]
        pairs[task] = (stock, ours)
    return pairs


# --------------------------------------------------------------------------------------------------------------------
# Registration, config, presets
# --------------------------------------------------------------------------------------------------------------------


def test_every_head_has_a_stock_twin():
    assert set(BERT_HEADS) == set(STOCK_NAME)


def test_auto_config_for_model_with_standard_names():
    config = AutoConfig.for_model(
        "bigmodel_bert",
        vocab_size=100,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=6,
        intermediate_size=96,
        max_position_embeddings=40,
        type_vocab_size=3,
    )
    assert isinstance(config, BigModelBertConfig) and config.head_dim == 8
    model = AutoModelForPreTraining.from_config(config)
    assert model.bert.layers[0].attention.qkv_proj.weight.shape == (3 * 48, 48)
    assert model.bert.layers[0].mlp.up_proj.weight.shape == (96, 48)
    assert model.bert.embeddings.position_embeddings.weight.shape == (40, 48)
    assert model.bert.embeddings.token_type_embeddings.weight.shape == (3, 48)
    assert len(model.bert.layers) == 3
    assert BigModelBertConfig(hidden_size=64, num_attention_heads=4, intermediate_size=None).intermediate_size == 256


@pytest.mark.parametrize("task", list(BERT_HEADS))
@pytest.mark.parametrize("preset", list(BERT_PRESETS))
def test_every_preset_builds(preset, task):
    config = hf_bigmodel.create_config(preset)
    with torch.device("meta"):
        model = BERT_HEADS[task](config)
    body = model if task == "base" else model.bert
    assert len(body.layers) == config.num_hidden_layers
    assert body.embeddings.word_embeddings.weight.shape == (config.vocab_size, config.hidden_size)
    assert body.layers[-1].mlp.down_proj.weight.shape == (config.hidden_size, config.intermediate_size)
    if task in ("pretraining", "masked-lm"):
        assert model.cls.decoder.weight is body.embeddings.word_embeddings.weight


def test_presets_have_the_published_shapes():
    shapes = {
        name: (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.vocab_size)
        for name, c in ((n, BigModelBertConfig.from_preset(n)) for n in BERT_PRESETS)
    }
    assert shapes["bert-mini"] == (4, 256, 4, 30522)
    assert shapes["bert-small"] == (4, 512, 8, 30522)
    assert shapes["bert-medium"] == (8, 512, 8, 30522)
    assert shapes["bert-base"] == (12, 768, 12, 30522)
    # bert-base has exactly the parameters of transformers' BertModel at its defaults (bert-base-uncased).
    with torch.device("meta"):
        ours = BERT_HEADS["base"](BigModelBertConfig.from_preset("bert-base"))
        stock = BertModel(BertConfig())
    assert ours.num_parameters() == stock.num_parameters() == 109_482_240


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"Unknown BERT preset 'bert-huge'.*bert-tiny.*bert-base"):
        BigModelBertConfig.from_preset("bert-huge")


# --------------------------------------------------------------------------------------------------------------------
# Same outputs as transformers' Bert* classes
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", list(STOCK_NAME))
def test_every_head_matches_stock_bert(task, stock_and_ours):
    stock, ours = stock_and_ours[task]
    inputs = make_inputs(task)
    with torch.no_grad():
        expected, got = output_tensors(stock(**inputs)), output_tensors(ours(**inputs))
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("task", ["pretraining", "masked-lm", "sequence-classification", "question-answering"])
def test_losses_and_gradients_match_stock_bert_in_training(task, stock_and_ours):
    """Training mode: our MLM head runs only at the labelled positions; loss and every gradient must still be
    those of transformers' BERT, which computes all positions."""
    stock, ours = stock_and_ours[task]
    inputs = make_inputs(task)
    gen = torch.Generator().manual_seed(3)
    if task in ("pretraining", "masked-lm"):
        labels = torch.where(torch.rand(inputs["input_ids"].shape, generator=gen) < 0.3, inputs["input_ids"], -100)
        inputs["labels"] = labels
        if task == "pretraining":
            inputs["next_sentence_label"] = torch.tensor([0, 1, 1])
    elif task == "sequence-classification":
        inputs["labels"] = torch.tensor([0, 2, 1])
    else:
        inputs["start_positions"], inputs["end_positions"] = torch.tensor([1, 3, 20]), torch.tensor([2, 5, 4])
    results = []
    for model in (stock, ours):
        model.train().zero_grad()
        out = model(**inputs)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out, grads))
        model.eval().zero_grad()
    (stock_out, stock_grads), (our_out, our_grads) = results
    torch.testing.assert_close(our_out.loss, stock_out.loss, rtol=1e-5, atol=1e-6)
    if task in ("pretraining", "masked-lm"):
        logits = our_out.prediction_logits if task == "pretraining" else our_out.logits
        stock_logits = stock_out.prediction_logits if task == "pretraining" else stock_out.logits
        assert logits.shape == ((labels != -100).sum().item(), VOCAB)  # only the labelled positions
        torch.testing.assert_close(logits, stock_logits[labels != -100], rtol=1e-5, atol=1e-5)
    # Same gradient for every parameter: stock's fused-equivalent q/k/v rows and our fused qkv_proj.
    stock_total = sum(g.double().pow(2).sum() for g in stock_grads.values())
    our_total = sum(g.double().pow(2).sum() for g in our_grads.values())
    torch.testing.assert_close(our_total, stock_total, rtol=1e-5, atol=1e-8)
    word = "bert.embeddings.word_embeddings.weight"
    torch.testing.assert_close(our_grads[word], stock_grads[word], rtol=1e-4, atol=1e-6)
    layer0 = stock_grads["bert.encoder.layer.0.attention.self.query.weight"]
    torch.testing.assert_close(our_grads["bert.layers.0.attention.qkv_proj.weight"][:32], layer0, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("task", list(BERT_HEADS))
def test_eager_equals_sdpa(task):
    model = BERT_HEADS[task](make_config(initializer_range=0.3)).eval()
    inputs = make_inputs(task)
    with torch.no_grad():
        sdpa = output_tensors(model(**inputs))
        model.set_attn_implementation("eager")
        eager = output_tensors(model(**inputs))
    assert model.config._attn_implementation == "eager"
    for name in sdpa:
        torch.testing.assert_close(eager[name], sdpa[name], rtol=1e-5, atol=1e-5, msg=name)


def test_attentions_and_hidden_states_match_stock(stock_and_ours):
    stock, ours = stock_and_ours["base"]
    inputs = make_inputs("base")
    for model in (stock, ours):
        model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            expected = stock(**inputs, output_attentions=True, output_hidden_states=True)
            got = ours(**inputs, output_attentions=True, output_hidden_states=True)
    finally:
        for model in (stock, ours):
            model.set_attn_implementation("sdpa")
    assert len(got.hidden_states) == 3 and len(got.attentions) == 2  # embeddings + each layer; each layer
    for ours_t, stock_t in zip(got.hidden_states + got.attentions, expected.hidden_states + expected.attentions):
        torch.testing.assert_close(ours_t, stock_t, rtol=1e-5, atol=1e-5)
    assert got.attentions[0].shape == (3, 4, 9, 9)
    assert torch.all(got.attentions[0][1, :, :, 6:] == 0)  # padding gets no attention
    as_tuple = ours(**inputs, return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], got.last_hidden_state)


def test_padding_does_not_change_the_real_tokens():
    model = BERT_HEADS["base"](make_config(initializer_range=0.3)).eval()
    inputs = make_inputs("base")
    with torch.no_grad():
        padded = model(**inputs).last_hidden_state[1, :6]
        alone = model(**{k: v[1:2, :6] for k, v in inputs.items()}).last_hidden_state[0]
    torch.testing.assert_close(padded, alone, rtol=1e-5, atol=1e-5)


def test_token_type_ids_matter_and_default_to_segment_zero():
    model = BERT_HEADS["base"](make_config(initializer_range=0.3)).eval()
    inputs = make_inputs("base")
    with torch.no_grad():
        with_types = model(**inputs).last_hidden_state
        zeros = model(**{**inputs, "token_type_ids": torch.zeros_like(inputs["token_type_ids"])}).last_hidden_state
        default = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
    torch.testing.assert_close(default, zeros, rtol=0, atol=0)
    assert not torch.allclose(with_types, zeros)


# --------------------------------------------------------------------------------------------------------------------
# Input errors
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        (
            dict(input_ids=torch.full((1, 129), 7)),
            r"Sequence length 129 exceeds max_position_embeddings=128.*truncation",
        ),
        (dict(input_ids=torch.tensor([[2, 7, 101]])), r"`input_ids` contains 101, outside \[0, vocab_size=101\)"),
        (dict(input_ids=torch.tensor([[2, -100, 3]])), r"`input_ids` contains -100.*resize_token_embeddings"),
        (
            dict(input_ids=torch.tensor([[2, 7, 3]]), token_type_ids=torch.tensor([[0, 1, 2]])),
            r"`token_type_ids` contains 2, outside \[0, type_vocab_size=2\)",
        ),
    ],
    ids=["too-long", "id-too-big", "negative-id", "token-type"],
)
def test_bad_inputs_give_clear_errors(change, message):
    model = BERT_HEADS["masked-lm"](make_config()).eval()
    with pytest.raises(ValueError, match=message):
        model(**change)


def test_multiple_choice_needs_3d_inputs():
    model = BERT_HEADS["multiple-choice"](make_config()).eval()
    with pytest.raises(ValueError, match=r"input_ids of shape \(batch, num_choices, seq\)"):
        model(input_ids=torch.tensor([[2, 7, 3]]))


# --------------------------------------------------------------------------------------------------------------------
# Training: the MLM loss under gradient accumulation
# --------------------------------------------------------------------------------------------------------------------


def test_masked_lm_loss_honours_num_items_in_batch():
    model = BERT_HEADS["masked-lm"](make_config(initializer_range=0.2)).train()
    rows = bert_rows("masked-lm")
    batch = {key: torch.stack([row[key] for row in rows]) for key in rows[0]}
    full = model(**batch).loss
    halves = [
        model(**{k: v[s] for k, v in batch.items()}, num_items_in_batch=12).loss for s in (slice(0, 2), slice(2, None))
    ]
    torch.testing.assert_close(halves[0] + halves[1], full)


# --------------------------------------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------------------------------------


def test_tied_decoder_is_the_word_embedding(tmp_path):
    model = BERT_HEADS["masked-lm"](make_config())
    assert model.get_output_embeddings() is model.cls.decoder
    assert model.cls.decoder.weight is model.bert.embeddings.word_embeddings.weight
    model.save_pretrained(tmp_path)
    assert "cls.decoder.weight" not in load_file(tmp_path / "model.safetensors")  # stored once
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path, trust_remote_code=False)
    assert loaded.cls.decoder.weight is loaded.bert.embeddings.word_embeddings.weight
    loaded.resize_token_embeddings(120)
    assert loaded.cls.decoder.weight is loaded.bert.embeddings.word_embeddings.weight
    assert loaded.cls.decoder.bias.shape == (120,) and loaded.config.vocab_size == 120
    assert loaded(input_ids=torch.tensor([[2, 119, 3]])).logits.shape == (1, 3, 120)


def test_untied_decoder(tmp_path):
    model = BERT_HEADS["masked-lm"](make_config(tie_word_embeddings=False))
    assert model.cls.decoder.weight.data_ptr() != model.bert.embeddings.word_embeddings.weight.data_ptr()
    model.save_pretrained(tmp_path)
    assert "cls.decoder.weight" in load_file(tmp_path / "model.safetensors")
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path, trust_remote_code=False)
    torch.testing.assert_close(loaded.cls.decoder.weight, model.cls.decoder.weight, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------------------------------

WORDS = ["the", "cat", "dog", "sat", "on", "mat", "a", "big", "red", "house", "paris", "is", "in", "france", "."]
PIECES = ["##s", "##ing", "##ed"]


def wordpiece_tokenizer():
    """A BERT-style WordPiece tokenizer built directly with the `tokenizers` library."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *PIECES])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


@pytest.fixture(scope="module")
def pipeline_folders(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("pipelines")
    tokenizer = wordpiece_tokenizer()
    folders = {}
    labels = {0: "negative", 1: "positive"}
    for task, head in (
        ("fill-mask", "masked-lm"),
        ("text-classification", "sequence-classification"),
        ("token-classification", "token-classification"),
        ("feature-extraction", "base"),
    ):
        config = make_config(
            vocab_size=len(tokenizer), num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}
        )
        BERT_HEADS[head](config).save_pretrained(root / task)
        tokenizer.save_pretrained(root / task)
        folders[task] = root / task
    return folders


FILL_MASK = """
import json, sys
import transformers

fill = transformers.pipeline("fill-mask", model=sys.argv[1], trust_remote_code=True, top_k=2)
out = fill("the [MASK] sat on the mat")
print("\\nRESULTS" + json.dumps({"n": len(out), "module": type(fill.model).__module__, "token": out[0]["token_str"]}))
"""


def test_fill_mask_pipeline_runs_on_remote_code_without_hf_bigmodel(pipeline_folders, tmp_path):
    # Every head's outputs in such a process are checked in test_models_common.py; this adds the pipeline, which
    # needs the saved tokenizer too.
    fill_mask = str(pipeline_folders["fill-mask"])
    remote = run_python(
        WITHOUT_HF_BIGMODEL + FILL_MASK, fill_mask, cwd=tmp_path, env={"HF_HOME": str(tmp_path / "hf")}
    )
    # The fill-mask pipeline runs on the remote code alone and predicts what the registered classes predict.
    assert remote["n"] == 2 and remote["module"].startswith("transformers_modules.")
    from transformers import pipeline

    local = pipeline("fill-mask", model=fill_mask, trust_remote_code=False, top_k=2)
    assert local("the [MASK] sat on the mat")[0]["token_str"] == remote["token"]


def test_tokenizer_gives_pairs_with_token_type_ids():
    encoded = wordpiece_tokenizer()("The cats sat", "on the mat")
    assert encoded["input_ids"][0] == 2 and encoded["input_ids"].count(3) == 2
    assert encoded["token_type_ids"] == [0] * 6 + [1] * 4


def test_pipelines(pipeline_folders):
    from transformers import pipeline

    fill = pipeline("fill-mask", model=str(pipeline_folders["fill-mask"]), trust_remote_code=False, top_k=3)
    predictions = fill("paris is in [MASK] .")
    assert len(predictions) == 3 and {"score", "token", "token_str", "sequence"} <= set(predictions[0])
    assert predictions[0]["score"] >= predictions[1]["score"] >= predictions[2]["score"]

    classify = pipeline(
        "text-classification", model=str(pipeline_folders["text-classification"]), trust_remote_code=False
    )
    result = classify(["the big red house", "a dog sat on the mat"])
    assert [r["label"] in ("negative", "positive") for r in result] == [True, True]

    tag = pipeline(
        "token-classification",
        model=str(pipeline_folders["token-classification"]),
        trust_remote_code=False,
        aggregation_strategy="simple",
    )
    entities = tag("the cats sat on the mat")
    assert entities and all(e["entity_group"] in ("negative", "positive") for e in entities)
    assert {"start", "end", "word", "score"} <= set(entities[0])

    extract = pipeline(
        "feature-extraction", model=str(pipeline_folders["feature-extraction"]), trust_remote_code=False
    )
    features = extract("the cat sat on the mat")
    assert torch.tensor(features).shape == (1, 8, 32)  # [CLS] + 6 words + [SEP], hidden 32


# --------------------------------------------------------------------------------------------------------------------
# Model card
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head, pipeline_tag",
    [("masked-lm", "fill-mask"), ("pretraining", "fill-mask"), ("question-answering", "question-answering")],
)
def test_model_card(tmp_path, head, pipeline_tag):
    from hf_bigmodel.publish.card import build_model_card

    BERT_HEADS[head](make_config()).save_pretrained(tmp_path)
    wordpiece_tokenizer().save_pretrained(tmp_path)
    card = build_model_card(tmp_path, repo_id="me/tiny-bert")
    assert f"pipeline_tag: {pipeline_tag}" in card.text
    assert "| Attention | 4 heads of 8, bidirectional |" in card.text
    assert "configuration_bert.py" in card.text and "hf-bigmodel convert tiny-bert/ tiny-bert-bert/" in card.text
    assert f'{auto_class("bert", head).__name__}.from_pretrained("me/tiny-bert", trust_remote_code=True)' in card.text
    assert "Devlin" in card.text
