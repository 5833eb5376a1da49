"""`hf-bigmodel evaluate` beyond perplexity and text classification: image classification, extractive QA,
translation and token classification. Tiny models built from configs, references computed here from the model's
own outputs; each test takes a few seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hf_bigmodel import create_model
from hf_bigmodel.evaluation import main
from hf_bigmodel.metrics import confusion_matrix, confusion_matrix_text

MNIST = next(
    (
        p / "shared" / "data" / "mnist"
        for p in Path(__file__).resolve().parents[1:]
        if (p / "shared" / "data").is_dir()
    ),
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist",
)
needs_mnist = pytest.mark.skipif(not MNIST.is_dir(), reason="MNIST idx files not in ../shared/data/mnist")


def error_of(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line and "/s]" not in line]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("hf-bigmodel evaluate: error: ")
    return err


# ----------------------------------------------------------------------------------------------------------------
# Image classification


@pytest.fixture(scope="module")
def resnet(tmp_path_factory) -> Path:
    """A grayscale 10-digit ResNet (labels "0".."9") and its image processor, saved; 28x28 inputs as MNIST."""
    from hf_bigmodel.models.resnet.image_processing_resnet import BigModelResNetImageProcessor

    folder = tmp_path_factory.mktemp("resnet") / "model"
    torch.manual_seed(0)
    model = create_model("resnet-tiny", "image-classification", num_channels=1, num_labels=10,
                         id2label={i: str(i) for i in range(10)})  # fmt: skip
    model.save_pretrained(folder)
    BigModelResNetImageProcessor(num_channels=1, size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                 image_mean=[0.1307], image_std=[0.3081]).save_pretrained(folder)  # fmt: skip
    return folder


def reference_top(folder: Path, images: list) -> np.ndarray:
    """Top-5 class ids of each image, one image at a time through the saved processor and model."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    processor = AutoImageProcessor.from_pretrained(folder)
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    tops = []
    for image in images:
        with torch.no_grad():
            logits = model(**processor(image, return_tensors="pt")).logits[0]
        tops.append(logits.topk(5).indices.numpy())
    return np.stack(tops)


@needs_mnist
def test_image_classification_on_mnist_files(resnet, tmp_path, capsys):
    from hf_bigmodel.data.images import load_mnist_arrays

    out = tmp_path / "out"
    assert main([str(resnet), "--task", "image-classification", "--data", str(MNIST), "--max_samples", "40",
                 "--batch_size", "16", "--output_dir", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    entry = json.loads((out / "eval_results.json").read_text())["image-classification"]
    images, labels = load_mnist_arrays(MNIST, "test")
    top = reference_top(resnet, [Image.fromarray(a) for a in images[:40]])
    labels = labels[:40]
    assert entry["split"] == "test" and entry["examples"] == 40 and entry["task_type"] == "image-classification"
    assert entry["metrics"]["accuracy"] == pytest.approx(float((top[:, 0] == labels).mean()))
    assert entry["metrics"]["top5_accuracy"] == pytest.approx(float((top == labels[:, None]).any(1).mean()))
    assert entry["metrics"]["top5_accuracy"] >= entry["metrics"]["accuracy"]
    matrix = confusion_matrix(top[:, 0], labels, 10)
    assert entry["confusion_matrix"] == matrix.tolist() and entry["labels"] == [str(i) for i in range(10)]
    assert confusion_matrix_text(matrix, entry["labels"]) in printed and "| top5_accuracy" in printed
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def write_image_folder(root: Path, classes: dict[str, int]) -> tuple[Path, list[Image.Image], list[int]]:
    """root/<class>/<i>.png with random RGB images (the processor turns them grey); (root, images, class ids)."""
    rng = np.random.default_rng(0)
    images, ids = [], []
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            image = Image.fromarray(rng.integers(0, 256, (30, 26, 3), dtype=np.uint8))
            image.save(root / name / f"{i}.png")
            images.append(image)
            ids.append(int(name))
    return root, images, ids


def test_image_classification_on_an_image_folder_and_a_dataset(resnet, tmp_path):
    import datasets

    folder, images, ids = write_image_folder(tmp_path / "digits", {"3": 3, "7": 4})
    assert main([str(resnet), "--task", "image-classification", "--data", str(folder), "--output_dir",
                 str(tmp_path / "a")]) == 0  # fmt: skip
    entry = json.loads((tmp_path / "a" / "eval_results.json").read_text())["image-classification"]
    top, labels = reference_top(resnet, images), np.array(ids)  # folder names "3", "7" are the model's labels
    assert entry["metrics"]["accuracy"] == pytest.approx(float((top[:, 0] == labels).mean()))
    assert entry["confusion_matrix"] == confusion_matrix(top[:, 0], labels, 10).tolist()
    # The same images as a save_to_disk dataset with other column names and integer labels.
    data = datasets.Dataset.from_dict({"picture": images, "digit": ids},
                                      features=datasets.Features({"picture": datasets.Image(),
                                                                  "digit": datasets.Value("int64")}))  # fmt: skip
    data.save_to_disk(tmp_path / "saved")
    assert main([str(resnet), "--task", "image-classification", "--data", str(tmp_path / "saved"), "--image_column",
                 "picture", "--label_column", "digit", "--output_dir", str(tmp_path / "b")]) == 0  # fmt: skip
    again = json.loads((tmp_path / "b" / "eval_results.json").read_text())["image-classification"]
    assert again["metrics"] == entry["metrics"] and again["confusion_matrix"] == entry["confusion_matrix"]


def test_image_classification_bad_input(resnet, tmp_path, capsys):
    write_image_folder(tmp_path / "digits", {"1": 1, "2": 1})
    folder, _, _ = write_image_folder(tmp_path / "animals", {"3": 1})
    (folder / "cat").mkdir()
    Image.new("L", (28, 28)).save(folder / "cat" / "0.png")
    err = error_of(capsys, str(resnet), "--task", "image-classification", "--data", str(folder))
    assert "'cat'" in err and "neither a label of the model" in err
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": "x", "label": 1}) + "\n")
    err = error_of(capsys, str(resnet), "--task", "image-classification", "--data", str(rows))
    assert "no column 'image' (set it with --image_column)" in err
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    err = error_of(capsys, str(resnet), "--task", "image-classification", "--data", str(empty))
    assert "holds no image files" in err
    # A text model is not an image classifier, and a folder without its image processor says what to save.
    err = error_of(capsys, str(resnet), "--task", "perplexity", "--data", str(rows))
    assert "tasks that fit it: image-classification" in err
    bare = tmp_path / "bare"
    create_model("resnet-tiny", "image-classification", num_channels=1).save_pretrained(bare)
    err = error_of(capsys, str(bare), "--task", "image-classification", "--data", str(tmp_path / "digits"))
    assert "no image processor" in err and "preprocessor_config.json" in err
