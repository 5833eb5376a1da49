"""The explanation tools people already use, unmodified, on the models of the zoo (tiny, trained here on the
synthetic sentiment task of test_explain): shap's `Explainer` over our text-classification pipeline,
transformers-interpret's `SequenceClassificationExplainer`, and bertviz's `head_view` / `model_view` (the
encoder-decoder form included) given our attention maps. lime is tested in test_explain."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_explain import NEGATIVE, POSITIVE, TEXT_ARCHS, make_tokenizer, sentences, trained  # noqa: F401
from transformers import pipeline

import hf_bigmodel
from hf_bigmodel.explanation import attention_maps

SENTIMENT = set(POSITIVE + NEGATIVE)


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest: tiny models run fastest on one thread


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def sentiment_texts(count: int) -> list[str]:
    return [text for text, _ in sentences(count, seed=2000)]


@pytest.mark.parametrize("arch", TEXT_ARCHS)
def test_shap_explainer_over_our_pipeline(arch, trained, tokenizer):  # noqa: F811
    shap = pytest.importorskip("shap")
    classifier = pipeline("text-classification", model=trained[arch], tokenizer=tokenizer, top_k=None)
    texts = sentiment_texts(2)
    values = shap.Explainer(classifier)(texts)
    for row, text in enumerate(texts):
        tokens = [str(token).strip() for token in values.data[row]]
        assert [t for t in tokens if t] == text.split()  # one value per word ([CLS]/[SEP] are the empty strings)
        # Additivity (shap's partition explainer is exact): base value + the token values = the pipeline's output.
        scores = {item["label"]: item["score"] for item in classifier([text])[0]}
        labels = values.output_names
        expected = np.array([scores[label] for label in labels])
        np.testing.assert_allclose(values.base_values[row] + values.values[row].sum(0), expected, atol=1e-4)
        # Two classes whose probabilities sum to one: every token moves them by opposite amounts.
        np.testing.assert_allclose(values.values[row].sum(-1), 0.0, atol=1e-5)


@pytest.mark.parametrize("arch", TEXT_ARCHS)
def test_transformers_interpret_sequence_classification(arch, trained, tokenizer):  # noqa: F811
    interpret = pytest.importorskip("transformers_interpret")
    model = trained[arch]
    explainer = interpret.SequenceClassificationExplainer(model, tokenizer)
    hits = 0
    texts = sentiment_texts(10)
    for text in texts:
        attributions = explainer(text)
        encoding = tokenizer(text, return_tensors="pt")
        assert [token for token, _ in attributions] == tokenizer.convert_ids_to_tokens(encoding["input_ids"][0])
        with torch.no_grad():
            predicted = int(model(**encoding).logits.argmax(-1))
        assert explainer.predicted_class_name == model.config.id2label[predicted]
        top = max(attributions, key=lambda pair: abs(pair[1]))[0]
        hits += top in SENTIMENT
    assert hits >= 8, f"{arch}: the sentiment word led transformers-interpret's attributions in {hits} of 10"
    html = explainer.visualize().data
    assert "<table" in html and all(word in html for word in texts[-1].split())


def bertviz_params(html: str) -> dict:
    """The data bertviz embeds in its page: `const params = {...};` (attention weights and tokens)."""
    start = html.index("const params = ") + len("const params = ")
    return json.JSONDecoder().raw_decode(html[start:])[0]


def test_bertviz_head_and_model_view(tokenizer):
    bertviz = pytest.importorskip("bertviz")
    model = hf_bigmodel.create_model("bert-tiny", task="base", vocab_size=tokenizer.vocab_size, pad_token_id=0)
    maps = attention_maps(model.eval(), "the movie was good", tokenizer)
    for view in (bertviz.head_view, bertviz.model_view):
        params = bertviz_params(view(**maps.bertviz(), html_action="return").data)
        (everything,) = [item for item in params["attention"] if item["name"] in (None, "All")]
        np.testing.assert_allclose(np.array(everything["attn"]), maps.self_attentions.numpy(), atol=1e-6)
        assert everything["left_text"] == maps.tokens == everything["right_text"]


def test_bertviz_encoder_decoder_form(tokenizer):
    bertviz = pytest.importorskip("bertviz")
    torch.manual_seed(0)
    model = hf_bigmodel.create_model("transformer-tiny", task="seq2seq-lm", vocab_size=tokenizer.vocab_size,
                                     pad_token_id=0, decoder_start_token_id=2, eos_token_id=3)  # fmt: skip
    maps = attention_maps(model.eval(), "the movie was good", tokenizer, target_text="the film")
    for view in (bertviz.head_view, bertviz.model_view):
        params = bertviz_params(view(**maps.bertviz(), html_action="return").data)
        parts = {item["name"]: item for item in params["attention"]}
        expected = {
            "Encoder": (maps.self_attentions, maps.tokens, maps.tokens),
            "Decoder": (maps.decoder_attentions, maps.target_tokens, maps.target_tokens),
            "Cross": (maps.cross_attentions, maps.target_tokens, maps.tokens),
        }
        for name, (weights, queries, keys) in expected.items():
            np.testing.assert_allclose(np.array(parts[name]["attn"]), weights.numpy(), atol=1e-6)
            assert parts[name]["left_text"] == queries and parts[name]["right_text"] == keys


def test_attention_images_reach_tensorboard_from_a_training_run(tokenizer, tmp_path):
    pytest.importorskip("tensorboard")
    from datasets import Dataset
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from transformers import Trainer, TrainingArguments

    from hf_bigmodel.explanation.tensorboard import AttentionImagesCallback

    torch.manual_seed(0)
    model = hf_bigmodel.create_model("bert-tiny", task="sequence-classification", vocab_size=tokenizer.vocab_size,
                                     num_labels=2, pad_token_id=0)  # fmt: skip
    rows = [tokenizer(text) | {"labels": label} for text, label in sentences(8, seed=3)]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, logging_steps=1,
                             report_to=[], use_cpu=True, save_strategy="no")  # fmt: skip
    callback = AttentionImagesCallback(tokenizer, "the movie was good")
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows), callbacks=[callback])
    trainer.train()
    assert model.config._attn_implementation == "sdpa"  # the callback switched it back

    events = EventAccumulator(str(tmp_path / "attention"), size_guidance={"images": 0}).Reload()
    layers = model.config.num_hidden_layers
    assert sorted(events.Tags()["images"]) == [f"attention/self/layer_{i}" for i in range(layers)]
    images = events.Images("attention/self/layer_0")
    assert sorted({image.step for image in images}) == [1, 2]  # each logging step, and the end of training
    # The last image is the trained model's attention: decode it and compare with attention_maps (8-bit grey).
    from io import BytesIO

    from PIL import Image

    last = Image.open(BytesIO(images[-1].encoded_image_string)).convert("L")
    expected = attention_maps(model, "the movie was good", tokenizer).self_attentions[0, -1]  # the last head
    seq = expected.shape[-1]
    assert last.size[1] == seq  # heads side by side: height = queries
    decoded = torch.tensor(np.array(last), dtype=torch.float32)[:, -seq:] / 255
    torch.testing.assert_close(decoded, expected, atol=1 / 255 + 1e-6, rtol=0)
