"""Issue 17's faithfulness checks on models trained here on real data, not on a synthetic task: a tiny BERT and GPT
classifier trained on SST-2 sentences (with a WordPiece tokenizer trained on them by the package), and a tiny ResNet
trained on MNIST digits. On held-out examples the model gets right:

- completeness: integrated gradients sum to f(x) - f(baseline), with f recomputed here, within the 1% tolerance,
  and the reported convergence delta is that gap;
- model randomisation (Adebayo et al., 2018): the attributions of a re-initialised model have a low rank
  correlation with the trained model's;
- deletion: replacing the top-k attributed tokens (image patches) by the baseline lowers the predicted class's
  probability more than replacing k random ones.

Every threshold was set from five training seeds with margin (docs/explain.md, "Faithfulness checks" lists the values
observed); the tests run seed 0."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch

import hf_bigmodel
from hf_bigmodel.data.images import MNIST_MEAN, MNIST_STD, load_mnist_arrays
from hf_bigmodel.explanation import explain
from hf_bigmodel.testing import shared_data
from hf_bigmodel.tokenization import train_tokenizer

SST2, MNIST = shared_data("sst2"), shared_data("mnist")

pytestmark = pytest.mark.skipif(
    not (SST2 / "dev.tsv").is_file() or not MNIST.is_dir(), reason="needs SST-2 and MNIST in ../shared/data"
)

SEED = 0
TEXT_ARCHS = [name for name, arch in hf_bigmodel.ARCHITECTURES.items() if "sequence-classification" in arch.heads]


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest.py: tiny models, one thread


def ranks(values: torch.Tensor) -> np.ndarray:
    """Ranks from 0, ties sharing their average rank (Grad-CAM maps hold many exact zeros after the ReLU)."""
    _, inverse, counts = np.unique(values.flatten().numpy(), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends - 1) / 2)[inverse]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation: Pearson's of the ranks."""
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


# ------------------------------------------------------------------------------------------------------- SST-2


def read_sst2(split: str) -> list[tuple[str, int]]:
    lines = (SST2 / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]  # header: sentence<TAB>label
    return [(sentence.strip(), int(label)) for sentence, label in (line.split("\t") for line in lines)]


def train_sst2(arch: str, seed: int, train_size: int = 4000, epochs: int = 3):
    """(model, tokenizer, dev accuracy): a WordPiece tokenizer trained on `train_size` SST-2 training phrases of at
    least 5 words, and `arch`'s tiny sequence-classification head trained on them for `epochs` epochs."""
    import datasets

    rng = random.Random(seed)
    phrases = [(s, y) for s, y in read_sst2("train") if len(s.split()) >= 5]
    train = rng.sample(phrases, train_size)
    tokenizer = train_tokenizer(
        "wordpiece", dataset=datasets.Dataset.from_dict({"text": [s for s, _ in train]}), vocab_size=2000,
        show_progress=False, model_max_length=128,
    )  # fmt: skip
    torch.manual_seed(seed)
    preset = next(name for name in hf_bigmodel.ARCHITECTURES[arch].presets if name.endswith("-tiny"))
    model = hf_bigmodel.create_model(
        preset, task="sequence-classification", vocab_size=len(tokenizer), num_labels=2,
        pad_token_id=tokenizer.pad_token_id, id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    model.train()
    for _ in range(epochs):
        rng.shuffle(train)
        for start in range(0, len(train), 32):
            batch = train[start : start + 32]
            encoding = tokenizer(
                [s for s, _ in batch], return_tensors="pt", padding=True, truncation=True, max_length=64
            )
            loss = model(**encoding, labels=torch.tensor([y for _, y in batch])).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.eval()
    dev = read_sst2("dev")
    correct = 0
    with torch.no_grad():
        for start in range(0, len(dev), 128):
            batch = dev[start : start + 128]
            encoding = tokenizer([s for s, _ in batch], return_tensors="pt", padding=True)
            correct += (model(**encoding).logits.argmax(-1) == torch.tensor([y for _, y in batch])).sum().item()
    return model, tokenizer, correct / len(dev)


def fresh_like(model, seed: int):
    """The same architecture and config with newly initialised weights (the randomisation check's model)."""
    torch.manual_seed(seed)
    return type(model)(model.config).eval()


def dev_examples(model, tokenizer, count: int, seed: int) -> list[tuple[str, torch.Tensor, int]]:
    """`count` dev sentences the model classifies correctly, 8 to 40 tokens long, in a seeded random order, as
    (sentence, input_ids (1, seq), label)."""
    dev = read_sst2("dev")
    random.Random(seed).shuffle(dev)
    out = []
    for sentence, label in dev:
        ids = tokenizer(sentence, return_tensors="pt")["input_ids"]
        if not 8 <= ids.shape[1] <= 40:
            continue
        with torch.no_grad():
            predicted = int(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.argmax(-1))
        if predicted == label:
            out.append((sentence, ids, label))
        if len(out) == count:
            return out
    raise AssertionError(f"only {len(out)} dev sentences of 8-40 tokens are classified correctly")


def class_probability(model, ids: torch.Tensor, target: int) -> torch.Tensor:
    """The target's probability for each row of `ids` (batch, seq), every token attended (padding included, as
    the deletion check replaces tokens by padding in place)."""
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.softmax(-1)[:, target]


def text_checks(model, tokenizer, seed: int, count: int = 24, k: int = 3, draws: int = 10) -> dict:
    """The three checks on `count` correctly classified dev sentences; returns the numbers the tests assert on.

    - gaps: |sum(attributions) - (f(x) - f(baseline))| / |f(x) - f(baseline)|, f the target's logit recomputed
      here; deltas: the reported convergence delta minus that gap (should be ~0);
    - spearman_signed / spearman_abs: per sentence, between the trained and a re-initialised model's attributions
      of the words ([CLS] and [SEP] left out: they are kept in the baseline, so their attribution is 0);
    - top_drop / random_drop: per sentence, the fall of the predicted class's probability when its k most
      positively attributed tokens are replaced by padding, and the mean fall over `draws` draws of k random
      tokens."""
    randomised = fresh_like(model, seed + 1000)
    rng = np.random.default_rng(seed)
    pad = tokenizer.pad_token_id
    out = {key: [] for key in ("gaps", "deltas", "n_steps", "spearman_signed", "spearman_abs", "top_drop",
                               "random_drop")}  # fmt: skip
    for sentence, ids, label in dev_examples(model, tokenizer, count, seed):
        explanation = explain(model, sentence, tokenizer=tokenizer)  # adaptive steps, 1% tolerance
        assert explanation.target == label
        special = torch.tensor(tokenizer.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True))
        baseline = torch.where(special.bool(), ids[0], torch.full_like(ids[0], pad)).unsqueeze(0)
        with torch.no_grad():
            logits = model(input_ids=torch.cat([ids, baseline]), attention_mask=torch.ones(2, ids.shape[1])).logits
        change = (logits[0, label] - logits[1, label]).item()
        gap = abs(explanation.attributions.sum().item() - change)
        out["gaps"].append(gap / abs(change))
        out["deltas"].append(explanation.convergence_delta - gap)
        out["n_steps"].append(explanation.n_steps)

        words = (~special.bool()).nonzero().flatten()
        other = explain(randomised, sentence, target=label, tokenizer=tokenizer, n_steps=64)
        a, b = explanation.attributions[words], other.attributions[words]
        out["spearman_signed"].append(spearman(a, b))
        out["spearman_abs"].append(spearman(a.abs(), b.abs()))

        top = words[a.argsort(descending=True)[:k]]
        edits = [ids[0].clone() for _ in range(1 + 1 + draws)]  # the sentence, top-k removed, `draws` random
        edits[1][top] = pad
        for edit in edits[2:]:
            edit[words[torch.from_numpy(rng.choice(len(words), size=k, replace=False))]] = pad
        probabilities = class_probability(model, torch.stack(edits), label)
        out["top_drop"].append((probabilities[0] - probabilities[1]).item())
        out["random_drop"].append((probabilities[0] - probabilities[2:]).mean().item())
    return out


# ------------------------------------------------------------------------------------------------------- MNIST

PATCH = 4  # 28x28 digits: a 7x7 grid of 4x4 patches


def mnist_tensors(split: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` images of a split as normalised (count, 1, 28, 28) pixel values (the pretrainer's MNIST
    mean and std, so zero, the integrated-gradients baseline, is the mean grey) and their labels."""
    images, labels = load_mnist_arrays(MNIST, split)
    pixels = (torch.tensor(images[:count], dtype=torch.float32) / 255 - MNIST_MEAN) / MNIST_STD
    return pixels.unsqueeze(1), torch.from_numpy(labels[:count])


def train_mnist(seed: int, train_size: int = 4000, epochs: int = 3):
    """(model, test accuracy on the first 1000 test digits): `resnet-tiny` for one channel and ten classes,
    trained on `train_size` MNIST training digits."""
    images, labels = mnist_tensors("train", train_size)
    torch.manual_seed(seed)
    # resnet-tiny's shape, wider (16/32/64 channels, basic blocks; 148k parameters): in a trial the 4k-parameter
    # preset reached 0.76-0.88 test accuracy after 150 steps, this one 0.92 after 60 and 0.96 after 120.
    model = hf_bigmodel.create_model(
        "resnet-tiny", task="image-classification", embedding_size=16, hidden_sizes=[32, 64], layer_type="basic",
        num_channels=1, num_labels=10,
    )  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(train_size)
        for start in range(0, train_size, 64):
            batch = order[start : start + 64]
            model(pixel_values=images[batch], labels=labels[batch]).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.eval()
    test_images, test_labels = mnist_tensors("test", 1000)
    with torch.no_grad():
        accuracy = (model(pixel_values=test_images).logits.argmax(-1) == test_labels).float().mean().item()
    return model, accuracy


def patch_scores(attributions: torch.Tensor) -> torch.Tensor:
    """(28, 28) map -> (49,) sums over the 4x4 patches, row by row."""
    side = attributions.shape[-1] // PATCH
    return attributions.reshape(side, PATCH, side, PATCH).sum(dim=(1, 3)).flatten()


def blank(image: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """`image` (1, 28, 28) with the given patches set to the baseline value, zero."""
    out = image.clone()
    side = image.shape[-1] // PATCH
    for patch in patches.tolist():
        row, column = divmod(patch, side)
        out[:, PATCH * row : PATCH * (row + 1), PATCH * column : PATCH * (column + 1)] = 0
    return out


def image_checks(model, seed: int, count: int = 12, k: int = 5, draws: int = 10) -> dict:
    """The three checks on `count` correctly classified test digits (from the second thousand, unseen by the
    accuracy check too), for integrated gradients (ig_*) and Grad-CAM (cam_*); the keys as in `text_checks`. The
    randomisation correlations are over the 784 pixels; a re-initialised model whose Grad-CAM map is all zero
    (ReLU of a negative sum) counts as correlation 0, as a constant map ranks nothing."""
    images, labels = mnist_tensors("test", 2000)
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(seed)) + 1000
    with torch.no_grad():
        predicted = model(pixel_values=images[order]).logits.argmax(-1)
    chosen = order[predicted == labels[order]][:count]
    randomised = fresh_like(model, seed + 1000)
    rng = np.random.default_rng(seed)
    out = {}

    def add(key, value):
        out.setdefault(key, []).append(value)

    for index in chosen.tolist():
        image, label = images[index], int(labels[index])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ig = explain(model, image, method="integrated_gradients", target=label)  # adaptive steps, 1% tolerance
        add("warned", any("did not converge" in str(warning.message) for warning in caught))
        with torch.no_grad():
            logits = model(pixel_values=torch.stack([image, torch.zeros_like(image)])).logits[:, label]
        change = (logits[0] - logits[1]).item()
        gap = abs(ig.attributions.sum().item() - change)
        add("gaps", gap / abs(change))
        add("deltas", ig.convergence_delta - gap)
        add("n_steps", ig.n_steps)
        cam = explain(model, image, method="grad_cam", target=label)
        for name, explanation in (("ig", ig), ("cam", cam)):
            method = explanation.method
            other = explain(randomised, image, method=method, target=label, n_steps=64 if name == "ig" else None)
            if other.attributions.max() == other.attributions.min():
                add(f"{name}_spearman_signed", 0.0)
                add(f"{name}_spearman_abs", 0.0)
                add(f"{name}_constant_random_maps", 1)
            else:
                add(f"{name}_spearman_signed", spearman(explanation.attributions, other.attributions))
                add(f"{name}_spearman_abs", spearman(explanation.attributions.abs(), other.attributions.abs()))
                add(f"{name}_constant_random_maps", 0)
            patches = patch_scores(explanation.attributions)
            edits = [image, blank(image, patches.argsort(descending=True)[:k])]
            edits += [blank(image, torch.from_numpy(rng.choice(len(patches), k, replace=False))) for _ in range(draws)]
            with torch.no_grad():
                probabilities = model(pixel_values=torch.stack(edits)).logits.softmax(-1)[:, label]
            add(f"{name}_top_drop", (probabilities[0] - probabilities[1]).item())
            add(f"{name}_random_drop", (probabilities[0] - probabilities[2:]).mean().item())
    return out


# -------------------------------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def sst2():
    """arch -> (dev accuracy, text_checks numbers) for each sequence-classification head trained on SST-2 (about
    20 s each on a quiet 2-core machine)."""
    out = {}
    for arch in TEXT_ARCHS:
        model, tokenizer, accuracy = train_sst2(arch, SEED)
        out[arch] = accuracy, text_checks(model, tokenizer, SEED)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("arch", TEXT_ARCHS)
def test_sst2_classifier_learned(arch, sst2):
    """Above chance (0.5; the dev set is balanced) by a clear margin; seeds 0-4 gave 0.692-0.742."""
    accuracy, _ = sst2[arch]
    assert accuracy >= 0.65, f"{arch}: dev accuracy {accuracy:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("arch", TEXT_ARCHS)
def test_sst2_integrated_gradients_completeness(arch, sst2):
    """On 24 dev sentences: the attributions sum to f(x) - f(baseline) within explain's default tolerance (1% of
    the change), and the reported convergence delta is that gap."""
    _, checks = sst2[arch]
    assert max(checks["gaps"]) <= 0.01, checks["gaps"]
    assert max(abs(d) for d in checks["deltas"]) <= 1e-4, checks["deltas"]


@pytest.mark.slow
@pytest.mark.parametrize("arch", TEXT_ARCHS)
def test_sst2_randomisation_changes_attributions(arch, sst2):
    """The word attributions of a re-initialised model are unrelated to the trained model's: the mean Spearman
    correlation over 24 sentences, of the signed values and of their magnitudes, is below 0.3 in absolute value
    (seeds 0-4: means between -0.07 and 0.18, single sentences from -0.71 to 0.89)."""
    _, checks = sst2[arch]
    for key in ("spearman_signed", "spearman_abs"):
        assert abs(np.mean(checks[key])) < 0.3, (key, checks[key])


@pytest.mark.slow
@pytest.mark.parametrize("arch", TEXT_ARCHS)
def test_sst2_deletion_of_top_tokens_lowers_probability_most(arch, sst2):
    """Replacing the 3 most positively attributed tokens by padding lowers the predicted class's probability by at
    least 0.1 more than replacing 3 random tokens (means over 24 sentences, 10 random draws each; seeds 0-4: 0.21
    to 0.51 more)."""
    _, checks = sst2[arch]
    top, random_ = np.mean(checks["top_drop"]), np.mean(checks["random_drop"])
    assert top > random_ + 0.1, (top, random_)


@pytest.fixture(scope="module")
def mnist():
    """(test accuracy, image_checks numbers) of the ResNet trained on MNIST (about 15 s on a quiet machine)."""
    model, accuracy = train_mnist(SEED)
    return accuracy, image_checks(model, SEED)


def test_mnist_resnet_learned(mnist):
    """Far above chance (0.1); seeds 0-4 gave 0.914-0.961 on the first 1000 test digits."""
    accuracy, _ = mnist
    assert accuracy >= 0.88, f"test accuracy {accuracy:.3f}"


def test_mnist_integrated_gradients_completeness(mnist):
    """On 12 test digits: the pixel attributions sum to f(x) - f(baseline) within the 1% tolerance, or explain
    warns that it did not converge in 1024 steps (seed 2 has one such digit: its logit moves by only 0.023 from
    the baseline, and the delta of 0.00046 is 2% of that); the reported convergence delta is the gap."""
    _, checks = mnist
    for gap, steps, warned in zip(checks["gaps"], checks["n_steps"], checks["warned"]):
        assert (gap <= 0.01 and not warned) or (steps == 1024 and warned), (gap, steps, warned)
    assert sum(checks["warned"]) <= 2, checks["gaps"]
    assert max(abs(d) for d in checks["deltas"]) <= 1e-4, checks["deltas"]


def test_mnist_randomisation_changes_attributions(mnist):
    """A re-initialised ResNet's maps are unrelated to the trained one's: mean Spearman over 12 digits below 0.3
    for the signed integrated gradients (seeds 0-4: -0.06 to 0.03) and below 0.5 for Grad-CAM (0.01 to 0.35;
    single digits from -0.69 to 0.90, the maps being 4x4 upsampled). The magnitudes of integrated gradients are
    not asked to differ: for any model they follow the digit (0.40-0.43), as Adebayo et al. found for
    gradient x input methods on images."""
    _, checks = mnist
    assert abs(np.mean(checks["ig_spearman_signed"])) < 0.3, checks["ig_spearman_signed"]
    assert np.mean(checks["cam_spearman_signed"]) < 0.5, checks["cam_spearman_signed"]


@pytest.mark.parametrize("method, margin", [("ig", 0.2), ("cam", 0.1)])
def test_mnist_deletion_of_top_patches_lowers_probability_most(method, margin, mnist):
    """Blanking (to the baseline, 0) the 5 4x4 patches with the largest attribution lowers the digit's probability
    more than blanking 5 random patches, by `margin` on the means over 12 digits and 10 draws (seeds 0-4: 0.44 to
    0.74 more for integrated gradients, 0.19 to 0.30 for Grad-CAM)."""
    _, checks = mnist
    top, random_ = np.mean(checks[f"{method}_top_drop"]), np.mean(checks[f"{method}_random_drop"])
    assert top > random_ + margin, (top, random_)
