"""`hf_bigmodel.explain` and `hf-bigmodel explain`: attributions for every text- and image-classification head of
the zoo and the stock transformers models of the same kinds, checked for faithfulness on small models trained here
(integrated-gradients completeness, model randomisation, deletion), plus the outputs and the user errors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    PreTrainedTokenizerFast,
    ResNetConfig,
    ResNetForImageClassification,
)

import hf_bigmodel
from hf_bigmodel.explanation import ExplainError, explain, find_target_layer
from hf_bigmodel.explanation.cli import main as explain_main

# A synthetic sentiment task: six neutral words and one sentiment word; the label is the sentiment word's. A model
# that learns it must rest its decision on that one token, which is what the faithfulness checks look for.
NEUTRAL = [
    "the",
    "a",
    "movie",
    "film",
    "plot",
    "actor",
    "scene",
    "story",
    "was",
    "is",
    "it",
    "this",
    "that",
    "and",
    "of",
    "with",
]
POSITIVE = ["good", "great", "fun", "superb", "lovely"]
NEGATIVE = ["bad", "awful", "dull", "boring", "poor"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = SPECIALS + NEUTRAL + POSITIVE + NEGATIVE
LABELS = {"id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}
TEXT_ARCHS = [name for name, arch in hf_bigmodel.ARCHITECTURES.items() if "sequence-classification" in arch.heads]
IMAGE_ARCHS = [name for name, arch in hf_bigmodel.ARCHITECTURES.items() if "image-classification" in arch.heads]


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest: tiny models run fastest on one thread


def make_tokenizer() -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=32,
    )  # fmt: skip


def sentences(count: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        label = rng.randrange(2)
        words = rng.choices(NEUTRAL, k=6)
        words.insert(rng.randrange(7), rng.choice(POSITIVE if label else NEGATIVE))
        out.append((" ".join(words), label))
    return out


def tiny_preset(arch: str) -> str:
    return next(name for name in hf_bigmodel.ARCHITECTURES[arch].presets if name.endswith("-tiny"))


def fresh_classifier(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    return hf_bigmodel.create_model(
        tiny_preset(arch), task="sequence-classification", vocab_size=len(WORDS), num_labels=2, pad_token_id=0,
        **LABELS,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="module")
def trained(tokenizer):
    """arch -> its sequence-classification head trained on the synthetic task (40 steps, a few seconds each)."""
    out = {}
    for arch in TEXT_ARCHS:
        model = fresh_classifier(arch)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for step in range(40):
            batch = sentences(32, seed=step)
            encoding = tokenizer([s for s, _ in batch], return_tensors="pt", padding=True)
            loss = model(**encoding, labels=torch.tensor([label for _, label in batch])).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        model.eval()
        test = sentences(40, seed=1000)
        with torch.no_grad():
            encoding = tokenizer([s for s, _ in test], return_tensors="pt", padding=True)
            predictions = model(**encoding).logits.argmax(-1)
        accuracy = (predictions == torch.tensor([label for _, label in test])).float().mean().item()
        assert accuracy >= 0.95, f"{arch}: the synthetic task was not learned (accuracy {accuracy:.2f})"
        out[arch] = model
    return out


def target_logit(model, tokenizer, input_ids: torch.Tensor, target: int) -> float:
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits[0, target].item()


def baseline_ids(tokenizer, input_ids: torch.Tensor) -> torch.Tensor:
    """The documented baseline: special tokens kept, every other token replaced by padding."""
    special = torch.tensor(tokenizer.get_special_tokens_mask(input_ids[0].tolist(), already_has_special_tokens=True))
    return torch.where(special.bool(), input_ids, torch.full_like(input_ids, tokenizer.pad_token_id))


# ------------------------------------------------------------------------------------------------- faithfulness


@pytest.mark.parametrize("arch", TEXT_ARCHS)
def test_integrated_gradients_completeness(arch, trained, tokenizer):
    """The attributions sum to f(x) - f(baseline), with f the target's logit computed here independently, within
    the default tolerance (1% of the change); the reported convergence delta is that very gap."""
    model = trained[arch]
    for text, label in sentences(2, seed=7):
        explanation = explain(model, text, target=label, tokenizer=tokenizer)
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        change = target_logit(model, tokenizer, ids, label) - target_logit(
            model, tokenizer, baseline_ids(tokenizer, ids), label
        )
        gap = abs(explanation.attributions.sum().item() - change)
        assert gap <= 0.01 * abs(change) + 1e-4, (text, gap, change, explanation.n_steps)
        assert explanation.convergence_delta == pytest.approx(gap, abs=1e-3 * abs(change) + 1e-4)
        assert explanation.n_steps in (64, 128, 256, 512, 1024)
        assert explanation.tokens == tokenizer.convert_ids_to_tokens(ids[0].tolist())


@pytest.mark.parametrize("arch", TEXT_ARCHS)
def test_sentiment_word_gets_the_largest_attribution(arch, trained, tokenizer):
    """On a model that decides from one word, that word carries the attribution. Attributions explain the change
    from the baseline, and a model may well treat one class as "no word of the other" (its baseline is then already
    that class), so the check takes the sentences whose logit the words move by more than 1."""
    hits, moved = 0, 0
    for text, label in sentences(24, seed=11):
        explanation = explain(trained[arch], text, target=label, tokenizer=tokenizer, n_steps=64)
        if abs(explanation.attributions.sum().item()) > 1.0:
            moved += 1
            hits += explanation.tokens[int(explanation.attributions.abs().argmax())] in POSITIVE + NEGATIVE
    assert moved >= 5 and hits >= 0.8 * moved, f"{hits}/{moved}"


@pytest.mark.parametrize("arch", TEXT_ARCHS)
def test_model_randomisation_changes_attributions(arch, trained, tokenizer):
    """Adebayo et al.'s sanity check: with re-initialised weights the attributions must change, or they describe
    the input rather than the model."""
    randomised = fresh_classifier(arch, seed=123).eval()
    correlations = []
    for text, label in sentences(6, seed=5):
        a = explain(trained[arch], text, target=label, tokenizer=tokenizer, n_steps=64).attributions[1:-1]
        b = explain(randomised, text, target=label, tokenizer=tokenizer, n_steps=64).attributions[1:-1]
        correlations.append(abs(np.corrcoef(a.abs().numpy(), b.abs().numpy())[0, 1]))
    assert np.mean(correlations) < 0.5, correlations


@pytest.mark.parametrize("arch", TEXT_ARCHS)
def test_deletion_of_top_tokens_lowers_probability_most(arch, trained, tokenizer):
    """Replacing the top-attributed word by padding lowers the predicted probability more than replacing a random
    word does (averaged over every word, so the comparison has no sampling noise)."""
    model = trained[arch]
    top_drops, random_drops = [], []
    for text, _ in sentences(12, seed=3):
        explanation = explain(model, text, tokenizer=tokenizer, n_steps=64)  # the predicted class
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        edits = []  # row 0: the sentence; row i: word i replaced by padding
        for position in range(ids.shape[1]):
            edited = ids[0].clone()
            if position > 0:
                edited[position] = tokenizer.pad_token_id
            edits.append(edited)
        with torch.no_grad():
            probabilities = model(input_ids=torch.stack(edits)).logits.softmax(-1)[:, explanation.target]
        drops = probabilities[0] - probabilities  # drops[i]: the fall when word i goes
        top = 1 + int(explanation.attributions[1:-1].argmax())
        top_drops.append(drops[top].item())
        random_drops.append(drops[1:-1].mean().item())  # not [CLS] / [SEP]
    assert np.mean(top_drops) > np.mean(random_drops) + 0.1, (np.mean(top_drops), np.mean(random_drops))


# ----------------------------------------------------------------------------------------- stock models, methods


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(
            lambda: BertForSequenceClassification(
                BertConfig(
                    vocab_size=len(WORDS),
                    hidden_size=32,
                    num_hidden_layers=2,
                    num_attention_heads=2,
                    intermediate_size=64,
                    num_labels=2,
                )
            ),
            id="bert",
        ),  # fmt: skip
        pytest.param(
            lambda: GPT2ForSequenceClassification(
                GPT2Config(
                    vocab_size=len(WORDS),
                    n_embd=32,
                    n_layer=2,
                    n_head=2,
                    pad_token_id=0,
                    bos_token_id=2,
                    eos_token_id=3,
                    num_labels=2,
                )
            ),
            id="gpt2",
        ),  # fmt: skip
    ],
)
def test_stock_text_models(model, tokenizer):
    model = model().eval()
    text = "the movie was good"
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    explanation = explain(model, text, target=1, tokenizer=tokenizer, output="probability")
    with torch.no_grad():
        change = (
            model(input_ids=ids).logits.softmax(-1)[0, 1] - model(input_ids=baseline_ids(tokenizer, ids)).logits.softmax(-1)[0, 1]
        ).item()  # fmt: skip
    assert explanation.attributions.sum().item() == pytest.approx(change, abs=0.01 * abs(change) + 1e-6)
    assert explanation.output == "probability" and explanation.target_label == "LABEL_1"
    gradient = explain(model, text, target=1, tokenizer=tokenizer, method="gradient_x_input")
    assert gradient.attributions.shape == (ids.shape[1],) and gradient.convergence_delta is None
    assert gradient.attributions.abs().sum() > 0


def test_model_is_left_in_training_mode_it_had(trained, tokenizer):
    model = trained[TEXT_ARCHS[0]]
    model.train()
    explain(model, "the movie was good", tokenizer=tokenizer, method="gradient_x_input")
    assert model.training
    model.eval()


# ------------------------------------------------------------------------------------------------------- images


def image(mode: str = "RGB", size: tuple[int, int] = (36, 36)) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


@pytest.fixture(scope="module")
def processor():
    return hf_bigmodel.ARCHITECTURES["resnet"].image_processor(size={"shortest_edge": 40}, crop_size=32)


@pytest.mark.parametrize("arch", IMAGE_ARCHS)
def test_grad_cam_finds_the_last_block(arch, processor):
    """The target layer is the last residual block, pytorch-grad-cam's choice for ResNets (`layer4[-1]`), in ours
    and in the stock model; the map has the input's size, is non-negative (ReLU) and not all zero."""
    model = hf_bigmodel.create_model(tiny_preset(arch), task="image-classification").eval()
    stock = ResNetForImageClassification(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 2], num_labels=3)
    ).eval()
    last = len(model.config.depths) - 1, model.config.depths[-1] - 1
    for candidate, expected in ((model, "resnet.stages.{}.layers.{}"), (stock, "resnet.encoder.stages.{}.layers.{}")):
        explanation = explain(candidate, image(), image_processor=processor)
        assert explanation.target_layer == expected.format(*last)
        assert explanation.attributions.shape == (32, 32)
        assert explanation.attributions.min() >= 0 and explanation.attributions.max() > 0
        assert explanation.image.shape == (32, 32, 3) and explanation.image.dtype == np.uint8
        pixel_values = processor(images=image(), return_tensors="pt")["pixel_values"]
        assert find_target_layer(candidate, pixel_values)[0] == explanation.target_layer


@pytest.mark.parametrize("arch", IMAGE_ARCHS)
def test_image_integrated_gradients_completeness(arch, processor):
    model = hf_bigmodel.create_model(tiny_preset(arch), task="image-classification").eval()
    explanation = explain(model, image(), method="integrated_gradients", target=2, image_processor=processor)
    pixel_values = processor(images=image(), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        change = (model(pixel_values=pixel_values).logits - model(pixel_values=torch.zeros_like(pixel_values)).logits)[
            0, 2
        ]
    assert explanation.attributions.shape == (32, 32)
    assert explanation.attributions.sum().item() == pytest.approx(change.item(), abs=0.01 * abs(change.item()) + 1e-5)
    assert explanation.convergence_delta <= 0.01 * abs(change.item()) + 1e-5


def test_integrated_gradients_warns_when_not_converged(processor):
    """Past the 1024-step cap with the delta still above the tolerance, explain warns with the numbers instead of
    returning the attributions as complete (found on MNIST, where a digit's logit moved by only 0.023 from the
    baseline and 1024 steps left a 2% gap). A fixed n_steps reports the delta without enforcing it, and a
    converged explanation warns nothing."""
    import warnings

    torch.manual_seed(0)
    model = hf_bigmodel.create_model("resnet-tiny", task="image-classification").eval()
    with torch.no_grad():  # biases away from zero: a bias-free ReLU network is linear along the path, IG exact
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    with pytest.warns(UserWarning, match=r"did not converge in 1024 steps: .* convergence delta .* tolerance=1e-12"):
        explanation = explain(model, image(), method="integrated_gradients", image_processor=processor,
                              tolerance=1e-12)  # fmt: skip
    assert explanation.n_steps == 1024 and explanation.convergence_delta > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fixed = explain(model, image(), method="integrated_gradients", image_processor=processor, n_steps=64,
                        tolerance=1e-12)  # fmt: skip
        assert fixed.n_steps == 64 and fixed.convergence_delta > 0
        explain(model, image(), method="integrated_gradients", image_processor=processor, tolerance=0.5)


# ------------------------------------------------------------------------------------------------------ outputs


def test_save_writes_json_tensors_png_and_offline_html(trained, tokenizer, processor, tmp_path):
    explanation = explain(trained[TEXT_ARCHS[0]], "the film was great", tokenizer=tokenizer)
    paths = explanation.save(tmp_path / "text")
    data = json.loads(paths["json"].read_text())
    assert data["tokens"] == explanation.tokens and data["target_label"] == "positive"
    assert data["attributions"] == pytest.approx(explanation.attributions.tolist())
    assert torch.equal(load_file(paths["tensors"])["attributions"], explanation.attributions)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths["html"].read_text()
    for token in explanation.tokens:
        assert f">{token}</span>" in page
    assert "data:image/png;base64," in page
    # Self-contained: nothing to fetch (no scripts, stylesheets, fonts or images from a network or CDN).
    assert "http://" not in page and "https://" not in page and "<script" not in page and "<link" not in page

    model = hf_bigmodel.create_model("resnet-tiny", task="image-classification").eval()
    paths = explain(model, image(), image_processor=processor).save(tmp_path / "image")
    page = paths["html"].read_text()
    assert "data:image/png;base64," in page and "https://" not in page and "<script" not in page
    assert json.loads(paths["json"].read_text())["target_layer"] == "resnet.stages.1.layers.1"


# --------------------------------------------------------------------------------------------------- bad input


def test_unknown_target_label(trained, tokenizer):
    model = trained[TEXT_ARCHS[0]]
    with pytest.raises(ExplainError, match=r"Target label 'neutral' does not exist.*0=negative, 1=positive"):
        explain(model, "the film was great", target="neutral", tokenizer=tokenizer)
    with pytest.raises(ExplainError, match="Target label 5 does not exist"):
        explain(model, "the film was great", target=5, tokenizer=tokenizer)
    assert explain(model, "the film was great", target="negative", tokenizer=tokenizer).target == 0


def test_method_that_does_not_fit_the_model(trained, tokenizer, processor):
    with pytest.raises(
        ExplainError, match=r"'grad_cam' does not fit a text-classification model.*integrated_gradients"
    ):
        explain(trained[TEXT_ARCHS[0]], "the film", method="grad_cam", tokenizer=tokenizer)
    model = hf_bigmodel.create_model("resnet-tiny", task="image-classification")
    with pytest.raises(ExplainError, match="'gradient_x_input' does not fit an image-classification model"):
        explain(model, image(), method="gradient_x_input", image_processor=processor)
    with pytest.raises(
        ExplainError,
        match="Unknown method 'shapley'; an image-classification model takes one of: grad_cam, integrated_gradients",
    ):
        explain(model, image(), method="shapley", image_processor=processor)


def test_input_longer_than_the_model_allows(tokenizer):
    model = fresh_classifier(TEXT_ARCHS[0])
    with pytest.raises(ExplainError, match=r"The input is 42 tokens long but this model takes at most 32; shorten"):
        explain(model, " ".join(["film"] * 40), tokenizer=tokenizer)


def test_odd_or_empty_images(processor, tmp_path):
    model = hf_bigmodel.create_model("resnet-tiny", task="image-classification")
    with pytest.raises(ExplainError, match=r"zero size \(0x0\)"):
        explain(model, Image.new("RGB", (0, 0)), image_processor=processor)
    with pytest.raises(ExplainError, match=r"Image mode 'HSV' cannot be explained: convert it to RGB"):
        explain(model, image().convert("HSV"), image_processor=processor)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    with pytest.raises(ExplainError, match="is not an image Pillow can read"):
        explain(model, not_an_image, image_processor=processor)
    # Unusual but convertible modes are explained (the processor turns them into the model's channels).
    for mode in ("L", "RGBA", "P", "CMYK", "I;16"):
        assert explain(model, image(mode), image_processor=processor).attributions.shape == (32, 32)


# -------------------------------------------------------------------------------------------------------- CLI


def test_cli_text_and_image(trained, tokenizer, processor, tmp_path, capsys):
    folder = tmp_path / "sst"
    trained[TEXT_ARCHS[0]].save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out = tmp_path / "out"
    assert explain_main([str(folder), "--text", "the film was great", "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "integrated_gradients: class 1 (positive)" in printed and "convergence delta" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "attributions.safetensors", "explanation.html", "explanation.json", "explanation.png",
    ]  # fmt: skip

    resnet = tmp_path / "resnet"
    hf_bigmodel.create_model("resnet-tiny", task="image-classification").save_pretrained(resnet)
    processor.save_pretrained(resnet)
    picture = tmp_path / "picture.png"
    image().save(picture)
    assert explain_main([str(resnet), "--image", str(picture)]) == 0
    assert "target layer: resnet.stages.1.layers.1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--text", "the film", "--target", "neutral"], "Target label 'neutral' does not exist"),
        (["--text", "the film", "--method", "grad_cam"], "'grad_cam' does not fit a text-classification model"),
        (["--text", "film " * 40], "tokens long but this model takes at most 32"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(extra, message, trained, tokenizer, tmp_path, capsys):
    folder = tmp_path / "sst"
    trained[TEXT_ARCHS[0]].save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    capsys.readouterr()  # the progress bar of save_pretrained
    assert explain_main([str(folder), *extra]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "hf-bigmodel explain" in line]  # not the loading progress bar
    assert len(lines) == 1 and lines[0].startswith("hf-bigmodel explain: error: ") and message in lines[0]
    assert "Traceback" not in err


def test_cli_dispatch_lists_explain():
    from hf_bigmodel.cli import COMMANDS

    assert COMMANDS["explain"][0] == "hf_bigmodel.explanation.cli"


# ------------------------------------------------------------------------------------------- token classification

TOKEN_ARCHS = [name for name, arch in hf_bigmodel.ARCHITECTURES.items() if "token-classification" in arch.heads]
SENTIMENT = {"id2label": {0: "O", 1: "SENTIMENT"}, "label2id": {"O": 0, "SENTIMENT": 1}}


@pytest.fixture(scope="module")
def trained_taggers(tokenizer):
    """arch -> its token-classification head trained to tag the sentiment word (label 1) of each sentence."""
    sentiment_ids = torch.tensor(tokenizer.convert_tokens_to_ids(POSITIVE + NEGATIVE))
    out = {}
    for arch in TOKEN_ARCHS:
        torch.manual_seed(0)
        model = hf_bigmodel.create_model(
            tiny_preset(arch), task="token-classification", vocab_size=len(WORDS), num_labels=2, pad_token_id=0,
            **SENTIMENT,
        )  # fmt: skip
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for step in range(40):
            ids = tokenizer([s for s, _ in sentences(32, seed=step)], return_tensors="pt")["input_ids"]
            labels = torch.isin(ids, sentiment_ids).long()
            model(input_ids=ids, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        out[arch] = model.eval()
    return out


@pytest.mark.parametrize("arch", TOKEN_ARCHS)
def test_token_classification_attributes_the_tagged_token(arch, trained_taggers, tokenizer):
    """The label of the sentiment word is explained by that word above all, and completeness holds at the position
    (f = the position's target logit)."""
    model = trained_taggers[arch]
    hits = 0
    cases = sentences(6, seed=21)
    for text, _ in cases:
        tokens = tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])
        position = next(i for i, token in enumerate(tokens) if token in POSITIVE + NEGATIVE)
        explanation = explain(model, text, target="SENTIMENT", position=position, tokenizer=tokenizer)
        assert explanation.kind == "token-classification" and explanation.position == position
        assert explanation.probability > 0.9  # the tagger learned the task
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            change = (model(input_ids=ids).logits - model(input_ids=baseline_ids(tokenizer, ids)).logits)[
                0, position, 1
            ]
        assert explanation.attributions.sum().item() == pytest.approx(
            change.item(), abs=0.01 * abs(change.item()) + 1e-4
        )
        hits += int(explanation.attributions.abs().argmax()) == position
    assert hits >= 0.8 * len(cases), f"{hits}/{len(cases)}"


def test_token_classification_needs_a_position(trained_taggers, trained, tokenizer, tmp_path, capsys):
    model = trained_taggers[TOKEN_ARCHS[0]]
    with pytest.raises(
        ExplainError, match=r"pass position= \(--position\) with the index of one of the 5 tokens \(0=\[CLS\], 1=the"
    ):
        explain(model, "the film great", tokenizer=tokenizer)
    with pytest.raises(ExplainError, match="one of the 5 tokens"):
        explain(model, "the film great", tokenizer=tokenizer, position=5)
    assert explain(model, "the film great", tokenizer=tokenizer, position=-2).position == 3
    with pytest.raises(ExplainError, match="position= applies to token-classification models only"):
        explain(trained[TEXT_ARCHS[0]], "the film great", tokenizer=tokenizer, position=1)
    folder = tmp_path / "tagger"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    capsys.readouterr()
    assert explain_main([str(folder), "--text", "the film great", "--position", "3", "--target", "SENTIMENT"]) == 0
    assert "class 1 (SENTIMENT)" in capsys.readouterr().out


def test_stock_token_classification(tokenizer):
    from transformers import BertForTokenClassification

    model = BertForTokenClassification(
        BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, num_labels=3)
    ).eval()  # fmt: skip
    explanation = explain(model, "the movie was good", tokenizer=tokenizer, position=4, target=2)
    ids = tokenizer("the movie was good", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        change = (model(input_ids=ids).logits - model(input_ids=baseline_ids(tokenizer, ids)).logits)[0, 4, 2].item()
    assert explanation.attributions.sum().item() == pytest.approx(change, abs=0.01 * abs(change) + 1e-4)


# ------------------------------------------------------------------------------------------ LIME and Kernel SHAP


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
@pytest.mark.parametrize("arch", TEXT_ARCHS)
def test_lime_and_kernel_shap_find_the_sentiment_word(arch, method, trained, tokenizer):
    """Perturbation methods agree with the model: the word the model decides by gets the largest weight, on the
    sentences whose logit the words move (see the integrated-gradients check above)."""
    hits, moved = 0, 0
    for text, label in sentences(24, seed=11):
        gradients = explain(trained[arch], text, target=label, tokenizer=tokenizer, n_steps=64)
        if abs(gradients.attributions.sum().item()) <= 1.0:
            continue
        moved += 1
        explanation = explain(trained[arch], text, target=label, tokenizer=tokenizer, method=method)
        assert explanation.method == method and explanation.attributions.shape == gradients.attributions.shape
        hits += explanation.tokens[int(explanation.attributions.abs().argmax())] in POSITIVE + NEGATIVE
    assert moved >= 5 and hits >= 0.8 * moved, f"{hits}/{moved}"


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_perturbations_go_through_the_model_in_batches(method, trained, tokenizer):
    """200 perturbations in batches of 64 are a handful of forward passes (the cost bound of issue 17), and the
    batch size is what sets it: with batch_size=1 there is one pass per perturbation."""
    model = trained[TEXT_ARCHS[0]]
    calls = []
    handle = model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(next(v for v in kwargs.values() if torch.is_tensor(v)).shape[0]),
        with_kwargs=True,
    )
    try:
        explain(model, "the film was great", tokenizer=tokenizer, method=method, n_samples=200, batch_size=64)
        batched, calls[:] = list(calls), []
        explain(model, "the film was great", tokenizer=tokenizer, method=method, n_samples=200, batch_size=1)
        one_by_one = list(calls)
    finally:
        handle.remove()
    # +2: the prediction itself and captum's forward of the unperturbed input
    assert len(batched) <= -(-200 // 64) + 2 and max(batched) == 64, batched
    assert len(one_by_one) >= 200
    with pytest.raises(ExplainError, match="n_samples and batch_size must be positive"):
        explain(model, "the film", tokenizer=tokenizer, method=method, batch_size=0)


# ------------------------------------------------------------------------------------------ third-party tools


def test_lime_text_explainer_through_predict_proba(trained, tokenizer):
    """`lime`, unmodified, through our `list[str] -> probabilities` function: the sentiment word is the one that
    supports the label most. (LIME deletes words, shifting the rest, which these fixed-length models never saw, so
    other words may weigh against the label.)"""
    from lime.lime_text import LimeTextExplainer

    from hf_bigmodel.explanation import predict_proba

    model = trained[TEXT_ARCHS[0]]
    predict = predict_proba(model, tokenizer, batch_size=64)
    texts = [text for text, _ in sentences(3, seed=2)]
    with torch.no_grad():
        expected = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits.softmax(-1).numpy()
    np.testing.assert_allclose(predict(texts), expected, atol=1e-5)

    explainer = LimeTextExplainer(class_names=["negative", "positive"], random_state=0)
    for text, label in sentences(4, seed=9):
        result = explainer.explain_instance(text, predict, labels=(label,), num_features=3, num_samples=300)
        word, _ = max(result.as_list(label=label), key=lambda item: item[1])  # the word that supports it most
        assert word in POSITIVE + NEGATIVE, (text, result.as_list(label=label))


# ------------------------------------------------------------------------------- a trained image classifier

QUADRANTS = 4


def square_images(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise with one bright 8x8 square; the class is the quadrant it lies in."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(count, 3, 32, 32, generator=generator) * 0.3
    labels = torch.randint(0, QUADRANTS, (count,), generator=generator)
    for image, label in zip(images, labels):
        top = 16 * (int(label) // 2) + int(torch.randint(0, 9, (1,), generator=generator))
        left = 16 * (int(label) % 2) + int(torch.randint(0, 9, (1,), generator=generator))
        image[:, top : top + 8, left : left + 8] += 2.0
    return images, labels


@pytest.fixture(scope="module")
def trained_resnet():
    torch.manual_seed(0)
    model = hf_bigmodel.create_model("resnet-tiny", task="image-classification", num_labels=QUADRANTS)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(60):
        images, labels = square_images(32, seed=step)
        model(pixel_values=images, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    images, labels = square_images(64, seed=999)
    with torch.no_grad():
        accuracy = (model(pixel_values=images).logits.argmax(-1) == labels).float().mean().item()
    assert accuracy >= 0.9, f"the quadrant task was not learned (accuracy {accuracy:.2f})"
    return model


def patch_scores(attributions: torch.Tensor) -> torch.Tensor:
    return attributions.reshape(4, 8, 4, 8).sum(dim=(1, 3)).flatten()  # 16 patches of 8x8


def quadrant_of(patch: int) -> int:
    return (patch // 4) // 2 * 2 + (patch % 4) // 2


def test_attributions_on_a_trained_resnet_are_faithful(trained_resnet):
    """Integrated gradients point at the square's quadrant, and blanking their top 8x8 patch lowers the probability
    more than blanking a random one (the average over all 16 patches); the maps of a re-initialised model are
    unrelated to the trained model's (Adebayo et al.'s randomisation check). Grad-CAM is checked against its
    definition below: on this 4x4 final feature map it is too coarse to localise an 8x8 square reliably."""
    images, labels = square_images(12, seed=77)
    torch.manual_seed(123)
    randomised = hf_bigmodel.create_model("resnet-tiny", task="image-classification", num_labels=QUADRANTS).eval()
    in_quadrant, top_drops, random_drops, correlations = 0, [], [], []
    for image, label in zip(images, labels):
        explanation = explain(trained_resnet, image, method="integrated_gradients", n_steps=64, target=int(label))
        top = int(patch_scores(explanation.attributions).argmax())
        in_quadrant += quadrant_of(top) == int(label)
        blanked = image.unsqueeze(0).repeat(17, 1, 1, 1)
        for patch in range(16):
            row, column = divmod(patch, 4)
            blanked[patch + 1, :, 8 * row : 8 * row + 8, 8 * column : 8 * column + 8] = 0
        with torch.no_grad():
            probabilities = trained_resnet(pixel_values=blanked).logits.softmax(-1)[:, int(label)]
        drops = probabilities[0] - probabilities[1:]
        top_drops.append(drops[top].item())
        random_drops.append(drops.mean().item())
        other = explain(randomised, image, method="integrated_gradients", n_steps=64, target=int(label))
        trained_map, random_map = explanation.attributions.flatten(), other.attributions.flatten()
        correlations.append(abs(np.corrcoef(trained_map, random_map)[0, 1]))
    assert in_quadrant >= 0.75 * len(labels), in_quadrant
    assert np.mean(top_drops) > np.mean(random_drops) + 0.05, (np.mean(top_drops), np.mean(random_drops))
    assert np.mean(correlations) < 0.5, correlations


def test_grad_cam_equals_the_computation_by_hand(trained_resnet):
    """pytorch-grad-cam's Grad-CAM, written out: channel weights = spatial mean of the gradient of the target logit
    at the last block's output, ReLU of the weighted sum of the activations, bilinear upsampling to the input."""
    image, label = (t[0] for t in square_images(1, seed=80))
    layer = trained_resnet.resnet.stages[-1].layers[-1]
    saved = {}
    handle = layer.register_forward_hook(lambda module, args, output: saved.update(activations=output))
    try:
        logit = trained_resnet(pixel_values=image.unsqueeze(0)).logits[0, int(label)]
    finally:
        handle.remove()
    (gradients,) = torch.autograd.grad(logit, saved["activations"])
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * saved["activations"]).sum(1, keepdim=True))
    expected = torch.nn.functional.interpolate(cam, size=(32, 32), mode="bilinear")[0, 0]
    explanation = explain(trained_resnet, image, target=int(label))
    torch.testing.assert_close(explanation.attributions, expected.detach(), atol=1e-5, rtol=1e-4)


def test_integrated_gradients_completeness_on_a_trained_resnet(trained_resnet):
    images, labels = square_images(2, seed=78)
    for image, label in zip(images, labels):
        explanation = explain(trained_resnet, image, method="integrated_gradients", target=int(label))
        with torch.no_grad():
            logits = trained_resnet(pixel_values=torch.stack([image, torch.zeros_like(image)])).logits[:, int(label)]
        change = (logits[0] - logits[1]).item()
        assert explanation.attributions.sum().item() == pytest.approx(change, abs=0.01 * abs(change) + 1e-4)
        assert explanation.convergence_delta <= 0.01 * abs(change) + 1e-4


def test_cli_attention_files_and_html(trained, tokenizer, processor, tmp_path, capsys):
    folder = tmp_path / "sst"
    model = trained[TEXT_ARCHS[0]]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out = tmp_path / "out"
    assert explain_main([str(folder), "--text", "the film was great", "--attention", "--output_dir", str(out)]) == 0
    attention = json.loads((out / "attention.json").read_text())
    layers = model.config.num_hidden_layers
    heads = model.config.num_attention_heads
    assert np.asarray(attention["self_attentions"]).shape == (layers, heads, 6, 6)
    assert (out / "attention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "explanation.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<h2>Attention</h2>" in page and "https://" not in page

    resnet = hf_bigmodel.create_model("resnet-tiny", task="image-classification")
    with pytest.raises(ExplainError, match="applies to text models; ResNets have no attention"):
        explain(resnet, image(), image_processor=processor, attention=True)


# ------------------------------------------------------------------------------------------------- masked LM

MLM_ARCHS = [name for name, arch in hf_bigmodel.ARCHITECTURES.items() if "masked-lm" in arch.heads]


@pytest.mark.parametrize("arch", MLM_ARCHS)
def test_masked_lm_explains_the_filled_token(arch, tokenizer):
    model = hf_bigmodel.create_model(tiny_preset(arch), task="masked-lm", vocab_size=len(WORDS), pad_token_id=0).eval()
    text = "the movie was [MASK] fun"
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    position = int((ids[0] == tokenizer.mask_token_id).nonzero())
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, position]
    explanation = explain(model, text, tokenizer=tokenizer)  # the model's top fill
    assert explanation.kind == "masked-lm" and explanation.position == position
    assert explanation.target == int(logits.argmax())
    assert explanation.target_label == tokenizer.convert_ids_to_tokens(int(logits.argmax()))
    good = explain(model, text, tokenizer=tokenizer, target="good")
    assert good.target == tokenizer.convert_tokens_to_ids("good")
    with torch.no_grad():
        change = (model(input_ids=ids).logits - model(input_ids=baseline_ids(tokenizer, ids)).logits)[0, position]
    expected = change[good.target].item()
    assert good.attributions.sum().item() == pytest.approx(expected, abs=0.01 * abs(expected) + 1e-4)
    assert good.attributions[position] == 0  # the [MASK] itself is kept in the baseline

    with pytest.raises(ExplainError, match=r"put exactly one \[MASK\] in the text \(found 0\)"):
        explain(model, "the movie was good", tokenizer=tokenizer)
    with pytest.raises(ExplainError, match="Target token 'splendid' is not in the tokenizer's vocabulary"):
        explain(model, text, tokenizer=tokenizer, target="splendid")
    with pytest.raises(ExplainError, match="Target token id 999 does not exist"):
        explain(model, text, tokenizer=tokenizer, target=999)


def test_stock_masked_lm_from_the_cli(tokenizer, tmp_path, capsys):
    from transformers import BertForMaskedLM

    folder = tmp_path / "mlm"
    BertForMaskedLM(
        BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64)
    ).save_pretrained(folder)  # fmt: skip
    tokenizer.save_pretrained(folder)
    capsys.readouterr()
    assert explain_main([str(folder), "--text", "the film was [MASK]", "--target", "great"]) == 0
    assert "(great)" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- causal generation

CAUSAL_ARCHS = [name for name, arch in hf_bigmodel.ARCHITECTURES.items() if "causal-lm" in arch.heads]


def stock_gpt2():
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel(
        GPT2Config(vocab_size=len(WORDS), n_embd=32, n_layer=2, n_head=2, pad_token_id=0, bos_token_id=2,
                   eos_token_id=3)
    )  # fmt: skip


@pytest.mark.parametrize("arch", [*CAUSAL_ARCHS, "stock-gpt2"])
def test_each_generated_token_is_explained_by_its_context(arch, tokenizer):
    if arch == "stock-gpt2":
        model = stock_gpt2().eval()
    else:
        model = hf_bigmodel.create_model(tiny_preset(arch), task="causal-lm", vocab_size=len(WORDS), pad_token_id=0)
        model.eval()
    prompt = "the movie was"
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        generated = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False,
                                   pad_token_id=0)  # fmt: skip
    explanations = explain(model, prompt, tokenizer=tokenizer, max_new_tokens=4)
    assert len(explanations) == generated.shape[1] - ids.shape[1] >= 1
    for step, explanation in enumerate(explanations):
        context = generated[:, : ids.shape[1] + step]
        assert explanation.kind == "causal-lm" and explanation.target == int(generated[0, context.shape[1]])
        assert explanation.tokens == tokenizer.convert_ids_to_tokens(context[0].tolist())
        with torch.no_grad():
            change = (model(input_ids=context).logits - model(input_ids=baseline_ids(tokenizer, context)).logits)[
                0, -1, explanation.target
            ].item()
        assert explanation.attributions.sum().item() == pytest.approx(change, abs=0.01 * abs(change) + 1e-4)
    with pytest.raises(ExplainError, match="each generated token is the target of its explanation"):
        explain(model, prompt, tokenizer=tokenizer, target="good")


def test_cli_generation_writes_a_folder_per_token(tokenizer, tmp_path, capsys):
    folder = tmp_path / "gpt2"
    stock_gpt2().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out = tmp_path / "out"
    capsys.readouterr()
    assert (
        explain_main([str(folder), "--text", "the movie was", "--max_new_tokens", "2", "--output_dir", str(out)]) == 0
    )
    steps = capsys.readouterr().out.count("integrated_gradients: generated")
    assert 1 <= steps <= 2  # greedy generation may stop at the end-of-text token
    assert sorted(p.name for p in out.iterdir()) == [f"token_{step:02d}" for step in range(steps)]
    assert (out / f"token_{steps - 1:02d}" / "explanation.html").is_file()
